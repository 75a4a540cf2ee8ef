"""The widget, locally: its WebSocket API on a real WebSocket server, the functions pointed at it,
the signing key in the embedded SSM, the directory synced, and a demo user's widget URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from local.aws import client
from local.lambdas import LocalFunction
from local.template import Template
from local.websocket import LocalWebSocketApi, start_websocket_apis

DEFAULT_WIDGET_KEY = "local-widget-token-key-0123456789abcdef"
DEMO_USER = "andy"


@dataclass
class LocalWidget:
    socket: LocalWebSocketApi
    page_url: str
    key: str

    def url_for(self, token: str) -> str:
        # The token rides in the fragment: browsers never send it to a server, so no log ever has it.
        return f"{self.page_url}#token={token}"


def store_widget_key(template: Template, endpoint: str, key: str) -> None:
    client("ssm", endpoint).put_parameter(
        Name=template.parameter("WidgetTokenKeyParameterName"), Value=key, Type="SecureString", Overwrite=True
    )


def start_widget(
    template: Template,
    functions: list[LocalFunction],
    endpoint: str,
    api_url: str,
    key: str | None = None,
    socket_port: int = 0,
) -> LocalWidget:
    key = key or os.environ.get("WIDGET_TOKEN_KEY") or DEFAULT_WIDGET_KEY
    store_widget_key(template, endpoint, key)
    (socket,) = start_websocket_apis(template.websocket_apis(), functions, socket_port).values()
    # What the template points at the deployed API, pointed at the local one (functions read their
    # settings on first use, so this is in time).
    os.environ["WIDGET_SOCKET_ENDPOINT"] = socket.management_url
    os.environ["WIDGET_SOCKET_URL"] = socket.url
    os.environ["WIDGET_MEDIA_ORIGIN"] = endpoint
    page_path = next(path for _, path in template.functions()["WidgetPageFunction"].http_routes if "{" not in path)
    return LocalWidget(socket=socket, page_url=api_url + page_path, key=key)


def issue_token(commands: LocalFunction, user: str = DEMO_USER, ttl: int | None = None) -> dict[str, Any]:
    """`issueWidgetToken` through the commands function, as a CRM's backend asks for one."""
    payload: dict[str, Any] = {"cmd": "issueWidgetToken", "user": user, **({"ttl": ttl} if ttl else {})}
    answer = commands.invoke(payload)
    if not answer.get("ok"):
        raise RuntimeError(f"issueWidgetToken: {answer['error']}")
    result: dict[str, Any] = answer["result"]
    return result
