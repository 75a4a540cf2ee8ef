"""The widget's WebSocket API and its token authorizer.

One authorizer function serves both APIs: the WebSocket API's `$connect` (a REQUEST authorizer,
token in the query string: browsers cannot set headers on a WebSocket) answers an IAM policy; the
HTTP API (payload 2.0, simple responses, `Authorization: Bearer`) answers `isAuthorized`. The login
and expiry go on as the authorizer's context, so the functions behind need no key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from pbxbridge.keys import fetch_keys_from_ssm
from pbxbridge.widget.settings import socket_settings, token_key_settings
from pbxbridge.widget_tokens import InvalidWidgetTokenError, bearer, verify_token

if TYPE_CHECKING:  # the authorizer imports this module: phonenumbers (the directory's) only for $connect
    from pbxbridge.domain.directory import Directory

logger = Logger()


def widget_keys() -> tuple[str, ...]:
    """The current and (during a rotation) previous signing key, cached KEY_CACHE_SECONDS."""
    settings = token_key_settings()
    return fetch_keys_from_ssm(settings.key_parameter, settings.previous_key_parameter, settings.key_cache_seconds)


def authorize(event: dict[str, Any], keys: Callable[[], Sequence[str]] = widget_keys) -> dict[str, Any]:
    """A REQUEST authorizer's answer for either API. A missing or bad token is refused, never logged."""
    http_api = event.get("version") == "2.0"
    if http_api:
        token = bearer((event.get("headers") or {}).get("authorization"))
    else:
        token = (event.get("queryStringParameters") or {}).get("token")
    try:
        identity = verify_token(token, keys())
    except InvalidWidgetTokenError as exc:
        logger.info("widget token refused", extra={"reason": str(exc), "api": "http" if http_api else "websocket"})
        if http_api:
            return {"isAuthorized": False}
        return _policy("anonymous", "Deny", str(event.get("methodArn", "*")), {})
    context = {"login": identity.login, "expires_at": identity.expires_at}
    if http_api:
        return {"isAuthorized": True, "context": context}
    return _policy(identity.login, "Allow", str(event["methodArn"]), context)


def _policy(principal: str, effect: str, resource: str, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }


class ConnectionStore(Protocol):
    def connected(self, connection_id: str, login: str, token_expires_at: int) -> bool: ...
    def disconnected(self, connection_id: str) -> None: ...


@dataclass(frozen=True)
class SocketDependencies:
    connections: ConnectionStore
    directory: Callable[[], Directory]


@lru_cache(maxsize=1)
def default_dependencies() -> SocketDependencies:
    from pbxbridge.domain.directory import CachedDirectory
    from pbxbridge.storage.connections import DynamoConnectionStore
    from pbxbridge.storage.directory import users_directory
    from pbxbridge.storage.dynamodb import dynamodb_client

    settings = socket_settings()
    client = dynamodb_client()
    directory = CachedDirectory(
        lambda: users_directory(client, settings.directory_table, settings.phone_region),
        ttl=settings.directory_cache_seconds,
    )
    return SocketDependencies(
        connections=DynamoConnectionStore(client, settings.connections_table), directory=directory
    )


def handle_socket(event: dict[str, Any], deps: SocketDependencies | None = None) -> dict[str, Any]:
    """`$connect` (already authorized) stores the connection, `$disconnect` forgets it, `$default`
    (the widget's keep-alive ping) just answers. `$connect` refuses a user the directory no longer
    has as active (403, as the widget's API does) and a user whose every connection slot is taken
    (429: the widget tries again later)."""
    deps = deps or default_dependencies()
    context = event.get("requestContext") or {}
    route, connection_id = context.get("routeKey"), str(context.get("connectionId", ""))
    if route == "$connect":
        authorizer = context.get("authorizer") or {}
        login = authorizer.get("login")
        if not login:  # the route is always authorized; this is a misconfigured deployment
            return {"statusCode": 403}
        if not deps.directory().still_active(str(login)):
            # Deactivated since the token was issued: no more live cards for the rest of its life.
            logger.info("widget connection refused: not an active user", extra={"login": login})
            return {"statusCode": 403}
        if not deps.connections.connected(connection_id, str(login), int(authorizer.get("expires_at", 0))):
            logger.info("widget connection refused: too many connections", extra={"login": login})
            return {"statusCode": 429}
        logger.info("widget connected", extra={"login": login})
    elif route == "$disconnect":
        deps.connections.disconnected(connection_id)
    return {"statusCode": 200}
