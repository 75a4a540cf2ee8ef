"""A real HTTP server in front of the template's HTTP API routes, as API Gateway would be."""

from __future__ import annotations

import json
import logging
import re
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from botocore.credentials import Credentials

from local.apigw import http_api_event, http_response
from local.lambdas import LocalFunction
from local.sigv4 import signature_is_valid
from local.template import LOCAL_ACCOUNT, LOCAL_REGION, HttpAuthorizer

# API Gateway's own limit for HTTP APIs; the function enforces the webhook's far smaller one.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
log = logging.getLogger("local.apigw")


_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class ApiGatewayServer(ThreadingHTTPServer):
    """The template's HTTP API routes, and the Lambda Invoke API for every function (as
    `sam local start-lambda` offers), so `aws lambda invoke --endpoint-url ...` works locally."""

    daemon_threads = True
    # Off in the local stack's short log: each function logs one line per request of its own.
    access_log = True

    def __init__(
        self, address: tuple[str, int], functions: list[LocalFunction], credentials: Credentials | None = None
    ) -> None:
        self.routes: dict[tuple[str, str], tuple[LocalFunction, str]] = {}
        self.iam_routes: set[tuple[str, str]] = set()
        self.functions = {function.spec.logical_id: function for function in functions}
        self.credentials = credentials or Credentials("local", "local")
        for function in functions:
            for method, path in function.spec.http_routes:
                self.routes[(method, path)] = (function, path)
            self.iam_routes |= function.spec.iam_routes
        super().__init__(address, _Handler)

    def route_for(self, method: str, path: str) -> tuple[tuple[LocalFunction, str] | None, dict[str, str]]:
        """The route for a request, and its path parameters (`/api/calls/{callid}/recording`)."""
        exact = self.routes.get((method, path))
        if exact is not None:
            return exact, {}
        for (route_method, route_path), target in self.routes.items():
            if route_method != method or "{" not in route_path:
                continue
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route_path))
            match = re.fullmatch(pattern, path)
            if match:
                return target, {k: unquote(v) for k, v in match.groupdict().items()}
        return None, {}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ApiGatewayServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle and delayed ACKs add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _dispatch(self) -> None:
        self.by_function = False
        path, _, query = self.path.partition("?")
        route, path_parameters = self.server.route_for(self.command, path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self.close_connection = True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Entity Too Large"})
            return
        body = self.rfile.read(length) if length else b""
        invoke = _INVOKE_PATH.match(path) if self.command == "POST" else None
        if invoke:
            self._invoke(invoke["name"], body)
            return
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            return
        function, route_path = route
        if (self.command, route_path) in self.server.iam_routes and not signature_is_valid(
            self.command, self.server.url + self.path, dict(self.headers.items()), body, self.server.credentials
        ):
            self._json(HTTPStatus.FORBIDDEN, {"message": "Forbidden"})
            return
        self.by_function = True
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
        if path_parameters:
            event["pathParameters"] = path_parameters
        authorizer = function.spec.authorizers.get((self.command, route_path))
        if authorizer is not None and not self._authorize(authorizer, event):
            return
        try:
            status, headers, payload = http_response(function.invoke(event))
        except Exception:
            log.exception("%s failed", function.spec.logical_id)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})
            return
        self._send(status, headers, payload)

    def _authorize(self, authorizer: HttpAuthorizer, event: dict[str, Any]) -> bool:
        """A Lambda authorizer (payload 2.0, simple responses), as API Gateway runs it before the route."""
        identity = [event["headers"].get(name) for name in authorizer.headers]
        if not all(identity):
            self._json(HTTPStatus.UNAUTHORIZED, {"message": "Unauthorized"})
            return False
        request = {
            **{k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")},
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:{LOCAL_REGION}:{LOCAL_ACCOUNT}:local/$default/{event['routeKey']}",
            "identitySource": identity,
        }
        try:
            answer = self.server.functions[authorizer.function].invoke(request)
        except Exception:
            log.exception("%s failed", authorizer.function)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})
            return False
        if not (isinstance(answer, dict) and answer.get("isAuthorized") is True):
            self._json(HTTPStatus.FORBIDDEN, {"message": "Forbidden"})
            return False
        event["requestContext"]["authorizer"] = {"lambda": answer.get("context") or {}}
        return True

    def _invoke(self, name: str, body: bytes) -> None:
        function = self.server.functions.get(name)
        self.by_function = function is not None
        if function is None:
            message = f"Function not found: {name}"
            self._send(
                404,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "ResourceNotFoundException"},
                json.dumps({"Type": "User", "message": message}).encode(),
            )
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            self._send(400, {"x-amzn-ErrorType": "InvalidRequestContentException"}, b'{"message": "not JSON"}')
            return
        try:
            result = function.invoke(payload)
        except Exception as exc:
            log.exception("%s failed", name)
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            self._send(
                200,
                {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"},
                json.dumps(error).encode(),
            )
            return
        self._send(
            200,
            {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"},
            json.dumps(result, ensure_ascii=False, default=str).encode(),
        )

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _dispatch

    def __getattr__(self, name: str) -> Any:
        # Every other method (HEAD, OPTIONS, TRACE, QUERY, ...) as API Gateway answers it: 404 when
        # no route has it, never http.server's 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    by_function = False

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log or not self.by_function:
            log.info("%s %s", self.address_string(), format % args)
