"""A stand-in CRM: receives the forwarded call events, checks their auth, and prints what arrives.

    python -m local.crm_receiver --port 3200 --api-key KEY            # X-Api-Key: KEY
    python -m local.crm_receiver --basic user:password
    python -m local.crm_receiver --oauth client_id:client_secret      # token endpoint /oauth/token

`make run CRM_RECEIVER=1` starts one with the stack and points the forwarding at it. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from local.aws import LOOPBACK

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret


@dataclass
class ReceiverAuth:
    """What the receiver accepts: one of an API key header, basic credentials, OAuth client credentials."""

    api_key_header: str = "X-Api-Key"
    api_key: str | None = None
    basic: tuple[str, str] | None = None
    oauth_client: tuple[str, str] | None = None
    tokens: set[str] = field(default_factory=set)

    def allows(self, headers: Any) -> bool:
        if self.api_key is not None:
            return hmac.compare_digest(headers.get(self.api_key_header, ""), self.api_key)
        authorization = headers.get("Authorization", "")
        if self.basic is not None:
            return hmac.compare_digest(authorization, _basic(*self.basic))
        if self.oauth_client is not None:
            scheme, _, token = authorization.partition(" ")
            return scheme == "Bearer" and any(hmac.compare_digest(token, known) for known in list(self.tokens))
        return True

    def issue_token(self, headers: Any, form: dict[str, list[str]]) -> str | None:
        if self.oauth_client is None or form.get("grant_type") != ["client_credentials"]:
            return None
        given = headers.get("Authorization", "")
        in_body = (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
        if not (hmac.compare_digest(given, _basic(*self.oauth_client)) or in_body == self.oauth_client):
            return None
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 200  # what the receiver answered


class CrmReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, port: int, auth: ReceiverAuth, echo: Callable[[str], None] | None = None, keep: bool = True
    ) -> None:
        self.auth = auth
        # Keep what arrived (a test reads it back); `make run`'s receiver only prints, so that a day of
        # calls does not pile up in memory.
        self.keep = keep
        self.received: list[Received] = []  # accepted events, in arrival order
        self.attempts: list[Received] = []  # every authorised request with an event, accepted or not
        self.answers: list[int] = []  # statuses to answer next (a test's failing CRM), then 200
        # A CRM that keeps failing some events: their `detail.id` -> the status each attempt gets.
        self.failing: dict[str, int] = {}
        self.echo = echo
        self.lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)
        self.url = f"http://{LOOPBACK}:{self.server_port}"

    def start(self) -> CrmReceiver:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: CrmReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = self.server
        if self.path == TOKEN_PATH:
            token = server.auth.issue_token(self.headers, parse_qs(raw.decode(errors="replace")))
            if token is None:
                self._reply(401, {"error": "invalid_client"})
            else:
                self._reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            return
        if not server.auth.allows(self.headers):
            self._reply(401, {"error": "unauthorized"})
            if server.echo:
                server.echo(f"CRM receiver: refused a request to {self.path} (wrong or missing credentials)")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply(400, {"error": "not JSON"})
            return
        detail = body.get("detail", {}) if isinstance(body, dict) else {}
        event_id = detail.get("id") if isinstance(detail, dict) else None
        with server.lock:
            status = server.answers.pop(0) if server.answers else server.failing.get(str(event_id), 200)
            if server.keep:
                received = Received(self.path, dict(self.headers.items()), body, status)
                server.attempts.append(received)
                if status == 200:
                    server.received.append(received)
        if status != 200:
            self._reply(status, {"error": "the test asked for it"})
            return
        if server.echo:
            shown = json.dumps(body, indent=2, ensure_ascii=False)
            server.echo(f"CRM received {body.get('detail-type')} {event_id}\n{shown}")
        self._reply(200, {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.crm_receiver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3200)
    parser.add_argument("--api-key-header", default="X-Api-Key")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--api-key", help="accept requests carrying this key in --api-key-header")
    group.add_argument("--basic", metavar="USER:PASSWORD", help="accept these basic credentials")
    group.add_argument("--oauth", metavar="CLIENT_ID:SECRET", help=f"issue tokens at {TOKEN_PATH} to this client")
    args = parser.parse_args(argv)
    auth = ReceiverAuth(api_key_header=args.api_key_header, api_key=args.api_key)
    if args.basic:
        user, _, password = args.basic.partition(":")
        auth.basic = (user, password)
    if args.oauth:
        client_id, _, client_secret = args.oauth.partition(":")
        auth.oauth_client = (client_id, client_secret)
    receiver = CrmReceiver(args.port, auth, echo=lambda text: print(text, flush=True), keep=False)
    print(f"CRM receiver on {receiver.url} (Ctrl-C stops it)", flush=True)
    try:
        receiver.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
