"""The template's WebSocket API, locally: a real WebSocket server (the `websockets` package) whose
`$connect` runs the route's Lambda authorizer and handler, `$disconnect` and `$default` theirs, and
the management API's `@connections` endpoint (POST/GET/DELETE) on a second port, so a function's
boto3 `apigatewaymanagementapi` client posts to the open browsers exactly as on AWS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from local.lambdas import LocalFunction
from local.template import LOCAL_ACCOUNT, LOCAL_REGION, WebSocketApiSpec

log = logging.getLogger("local.websocket")


def _now_ms() -> int:
    return int(time.time() * 1000)


class LocalWebSocketApi:
    """One WEBSOCKET API of the template on loopback: `url` for browsers, `management_url` for posts."""

    def __init__(self, spec: WebSocketApiSpec, functions: dict[str, LocalFunction], host: str = "127.0.0.1") -> None:
        self.spec = spec
        self.functions = functions
        self.host = host
        self.connections: dict[str, ServerConnection] = {}
        self._connected_at: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._failed: OSError | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="local-websocket")
        self._management = ThreadingHTTPServer((host, 0), _ManagementHandler)
        self._management.daemon_threads = True
        self._management.api = self  # type: ignore[attr-defined]
        self._management_thread = threading.Thread(target=self._management.serve_forever, daemon=True)

    # Life cycle

    def start(self, port: int = 0) -> LocalWebSocketApi:
        self._port = port
        self._thread.start()
        self._ready.wait(10)
        if self._failed is not None:
            raise self._failed
        self._management_thread.start()
        return self

    def stop(self) -> None:
        self._management.shutdown()
        self._management.server_close()
        server = self._server
        if server is not None:

            async def close() -> None:
                server.close()
                await server.wait_closed()

            try:
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            except Exception:
                log.exception("the WebSocket server did not close cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await serve(
                self._session, self.host, self._port, process_request=self._connect, ping_interval=None
            )
            self._ready.set()

        try:
            self._loop.run_until_complete(start())
        except OSError as exc:  # the port is taken: start() raises it on the caller's thread
            self._failed = exc
            self._ready.set()
            return
        self._loop.run_forever()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://{self.host}:{port}/{self.spec.stage}"

    @property
    def management_url(self) -> str:
        """What WIDGET_SOCKET_ENDPOINT is on AWS: https://{api}.execute-api.{region}.amazonaws.com/{stage}."""
        return f"http://{self.host}:{self._management.server_address[1]}/{self.spec.stage}"

    # Routes

    def _event(self, route: str, connection_id: str, request: Request | None, **extra: Any) -> dict[str, Any]:
        kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
        event: dict[str, Any] = {
            "requestContext": {
                "routeKey": route,
                "eventType": kind,
                "messageDirection": "IN",
                "stage": self.spec.stage,
                "connectedAt": self._connected_at.get(connection_id, _now_ms()),
                "requestTimeEpoch": _now_ms(),
                "requestId": str(uuid.uuid4()),
                "domainName": self.host,
                "connectionId": connection_id,
                "apiId": self.spec.logical_id,
                "identity": {"sourceIp": self.host},
            },
            "isBase64Encoded": False,
            **extra,
        }
        if request is not None:
            event["headers"] = dict(request.headers.raw_items())
            query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
            if query:
                event["queryStringParameters"] = query
        return event

    def _invoke(self, route: str, event: dict[str, Any]) -> Any:
        function = self.spec.routes.get(route) or self.spec.routes.get("$default")
        if function is None:
            return None
        return self.functions[function].invoke(event)

    async def _connect(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake: the authorizer (401 without the identity, 403 on Deny), then `$connect`."""
        connection_id = uuid.uuid4().hex[:16]
        self._connected_at[connection_id] = _now_ms()
        event = self._event("$connect", connection_id, request)
        authorizer = self.spec.connect_authorizer
        if authorizer is not None:
            query = event.get("queryStringParameters") or {}
            if not all(query.get(name) for name in authorizer.query):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            arn = (
                f"arn:aws:execute-api:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{self.spec.logical_id}/{self.spec.stage}/$connect"
            )
            request_event = {**event, "type": "REQUEST", "methodArn": arn}
            try:
                policy = await asyncio.to_thread(self.functions[authorizer.function].invoke, request_event)
            except Exception:
                log.exception("%s failed", authorizer.function)
                return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            statements = (policy or {}).get("policyDocument", {}).get("Statement", [])
            if not statements or any(s.get("Effect") != "Allow" for s in statements):
                return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
            # API Gateway hands the authorizer's context on as strings, with the principal.
            context = {k: str(v) for k, v in (policy.get("context") or {}).items()}
            event["requestContext"]["authorizer"] = {"principalId": policy.get("principalId"), **context}
        try:
            answer = await asyncio.to_thread(self._invoke, "$connect", event)
        except Exception:
            log.exception("$connect failed")
            return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        status = int((answer or {}).get("statusCode", 200))
        if not 200 <= status < 300:
            return connection.respond(HTTPStatus(status), f"{HTTPStatus(status).phrase}\n")
        connection.local_connection_id = connection_id  # type: ignore[attr-defined]
        return None

    async def _session(self, connection: ServerConnection) -> None:
        connection_id: str = connection.local_connection_id  # type: ignore[attr-defined]
        self.connections[connection_id] = connection
        try:
            async for message in connection:
                body = message if isinstance(message, str) else message.decode("utf-8", "replace")
                route = "$default"
                try:
                    action = json.loads(body).get("action")
                    route = action if action in self.spec.routes else "$default"
                except (ValueError, AttributeError):
                    pass
                event = self._event(route, connection_id, None, body=body)
                try:
                    await asyncio.to_thread(self._invoke, route, event)
                except Exception:
                    log.exception("%s failed", route)
        except ConnectionClosed:
            pass
        finally:
            self.connections.pop(connection_id, None)
            event = self._event("$disconnect", connection_id, None)
            self._connected_at.pop(connection_id, None)
            try:
                await asyncio.to_thread(self._invoke, "$disconnect", event)
            except Exception:
                log.exception("$disconnect failed")

    # The management API

    def post(self, connection_id: str, data: bytes) -> bool:
        connection = self.connections.get(connection_id)
        if connection is None:
            return False
        # API Gateway sends what was posted as one text frame.
        future = asyncio.run_coroutine_threadsafe(connection.send(data.decode("utf-8", "replace")), self._loop)
        try:
            future.result(5)
        except ConnectionClosed:
            return False
        return True

    def close(self, connection_id: str) -> bool:
        connection = self.connections.get(connection_id)
        if connection is None:
            return False
        asyncio.run_coroutine_threadsafe(connection.close(), self._loop).result(5)
        return True


class _ManagementHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    protocol_version = "HTTP/1.1"

    def _connection_id(self) -> str | None:
        path = unquote(self.path.split("?", 1)[0])
        marker = "/@connections/"
        return path.split(marker, 1)[1] if marker in path else None

    def _answer(self, status: int, body: dict[str, Any] | None = None, error: str | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _gone(self) -> None:
        self._answer(HTTPStatus.GONE, {"message": None}, "GoneException")

    def do_POST(self) -> None:
        api: LocalWebSocketApi = self.server.api  # type: ignore[attr-defined]
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        connection_id = self._connection_id()
        if connection_id is None:
            self._answer(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
        elif api.post(connection_id, data):
            self._answer(HTTPStatus.OK)
        else:
            self._gone()

    def do_GET(self) -> None:
        api: LocalWebSocketApi = self.server.api  # type: ignore[attr-defined]
        connection_id = self._connection_id()
        if connection_id is None or connection_id not in api.connections:
            self._gone()
            return
        connected = datetime.fromtimestamp(api._connected_at.get(connection_id, _now_ms()) / 1000, tz=UTC)
        self._answer(
            HTTPStatus.OK,
            {"connectedAt": connected.isoformat(), "identity": {"sourceIp": api.host}, "lastActiveAt": None},
        )

    def do_DELETE(self) -> None:
        api: LocalWebSocketApi = self.server.api  # type: ignore[attr-defined]
        connection_id = self._connection_id()
        if connection_id is not None and api.close(connection_id):
            self._answer(HTTPStatus.NO_CONTENT)
        else:
            self._gone()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def start_websocket_apis(
    template_apis: dict[str, WebSocketApiSpec], functions: list[LocalFunction], port: int = 0
) -> dict[str, LocalWebSocketApi]:
    """Each WebSocket API of the template; the first on `port` (0: any free one), the others anywhere."""
    by_id = {function.spec.logical_id: function for function in functions}
    apis = {}
    for index, (name, spec) in enumerate(template_apis.items()):
        apis[name] = LocalWebSocketApi(spec, by_id).start(port if index == 0 else 0)
    return apis


__all__ = ["LocalWebSocketApi", "start_websocket_apis"]
