"""A real HTTP server in front of the template's HTTP API routes, as API Gateway would be."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.apigw import http_api_event, http_response
from local.lambdas import LocalFunction

# API Gateway's own limit for HTTP APIs; the function enforces the webhook's far smaller one.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
log = logging.getLogger("local.apigw")


class ApiGatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], functions: list[LocalFunction]) -> None:
        self.routes: dict[tuple[str, str], tuple[LocalFunction, str]] = {}
        for function in functions:
            for method, path in function.spec.http_routes:
                self.routes[(method, path)] = (function, path)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ApiGatewayServer
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        route = self.server.routes.get((self.command, path))
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self.close_connection = True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Entity Too Large"})
            return
        body = self.rfile.read(length) if length else b""
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            return
        function, route_path = route
        event = http_api_event(
            self.command,
            path,
            route_path,
            body,
            headers=self.headers.items(),
            query=query,
            source_ip=self.client_address[0],
            host=self.headers.get("Host", "localhost"),
        )
        try:
            status, headers, payload = http_response(function.invoke(event))
        except Exception:
            log.exception("%s failed", function.spec.logical_id)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})
            return
        self._send(status, headers, payload)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)
