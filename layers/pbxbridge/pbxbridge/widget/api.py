"""The widget's own API (HTTP API routes behind the widget token's authorizer).

Only the token's user's own actions and data: they call as themselves, switch their own DND, play
recordings of calls they may see (calls that rang them, theirs, their contacts'); another user's
call is `not_found`, exactly like a call that does not exist. The commands are the commands
function's own (same envelope, same `makeCall` idempotency), run with the user the token names.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from pbxbridge.domain.card import may_see, national, responsible_login
from pbxbridge.domain.contacts import Contact
from pbxbridge.domain.directory import Directory

logger = Logger()
app = APIGatewayHttpResolver()
# The list shows this many (its own and its departments' together); the rest wait their turn.
WIDGET_CALLBACKS = 50


@dataclass(frozen=True)
class WidgetApiDependencies:
    execute: Callable[[dict[str, Any], Any], dict[str, Any]]  # a command -> the commands' envelope
    get_call: Callable[[str], dict[str, Any] | None]
    contact: Callable[[str], Contact | None]
    directory: Callable[[], Directory]
    extra: dict[str, Callable[..., Any]]  # further listings (the call-backs) by name


@lru_cache(maxsize=1)
def default_dependencies() -> WidgetApiDependencies:
    from pbxbridge import commands
    from pbxbridge.domain.directory import CachedDirectory
    from pbxbridge.settings import commands_settings
    from pbxbridge.storage.dynamodb import DynamoCallStore, DynamoContactStore, DynamoDirectoryStore, dynamodb_client

    settings = commands_settings()
    client = dynamodb_client()
    calls = DynamoCallStore(client, settings.calls_table, settings.call_events_table)
    contacts = DynamoContactStore(client, settings.contacts_table)
    table = settings.directory_table
    directory = CachedDirectory(
        (lambda: DynamoDirectoryStore(client, table).snapshot(settings.phone_region, departments=False))
        if table
        else (lambda: Directory(region=settings.phone_region))
    )
    extra: dict[str, Callable[..., Any]] = {}
    if settings.callbacks_table:
        from pbxbridge.storage.callbacks import DynamoCallbackStore

        store = DynamoCallbackStore(client, settings.callbacks_table)
        extra["callbacks"] = functools.partial(
            callbacks_of, store=store, contact=contacts.get_contact, directory=directory, region=settings.phone_region
        )
    return WidgetApiDependencies(
        execute=commands.execute,
        get_call=calls.get_call,
        contact=contacts.get_contact,
        directory=directory,
        extra=extra,
    )


def callbacks_of(
    login: str,
    status: str,
    *,
    store: Any,
    contact: Callable[[str], Contact | None],
    directory: Callable[[], Directory],
    region: str,
    limit: int = WIDGET_CALLBACKS,
) -> dict[str, Any]:
    """The user's call-backs and their departments' (`g_<id>`), the most recently missed first, each
    with the number in national form and the contact's name for the list."""
    from pbxbridge.domain.callbacks import CallbackStatus, list_callbacks

    wanted = CallbackStatus(status) if status in ("open", "closed") else CallbackStatus.OPEN
    user = next((u for u in directory().users if u.login == login), None)
    owners = [login, *(f"g_{group}" for group in (user.groups if user else ()))]
    found = [c for owner in owners for c in list_callbacks(store, owner, wanted, limit).callbacks]
    found.sort(key=lambda c: c.last_missed_at, reverse=True)
    found = found[:limit]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one read per number, side by side
        contacts = list(pool.map(contact, [c.phone for c in found]))
    items = [
        {
            **c.model_dump(mode="json", exclude_none=True),
            "phone_national": national(c.phone, region),
            "contact_name": known.contact_name if known else None,
        }
        for c, known in zip(found, contacts, strict=True)
    ]
    return {"ok": True, "result": {"callbacks": items, "cursor": None}}


_deps: WidgetApiDependencies | None = None


def _dependencies() -> WidgetApiDependencies:
    return _deps or default_dependencies()


def _login() -> str:
    authorizer = app.current_event.request_context.authorizer.get_lambda or {}
    return str(authorizer["login"])


def _answer(envelope: dict[str, Any]) -> Response[Any]:
    from pbxbridge.commands import HTTP_STATUS

    status = 200 if envelope["ok"] else HTTP_STATUS.get(envelope["error"]["code"], 500)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=envelope)


def _run(command: dict[str, Any]) -> Response[Any]:
    return _answer(_dependencies().execute(command, app.lambda_context))


def _not_found() -> Response[Any]:
    return _answer({"ok": False, "error": {"code": "not_found", "message": "no such call"}})


def _body() -> dict[str, Any]:
    try:
        body = app.current_event.json_body
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


@app.get("/api/me")
def me() -> Response[Any]:
    authorizer = app.current_event.request_context.authorizer.get_lambda or {}
    return _answer({"ok": True, "result": {"login": _login(), "expires_at": authorizer.get("expires_at")}})


@app.post("/api/calls")
def make_call() -> Response[Any]:
    body = _body()
    command: dict[str, Any] = {"cmd": "makeCall", "user": _login(), "phone": body.get("phone")}
    request_id = body.get("requestId")
    if request_id is not None:
        # Namespaced by user: one user's request id can never replay another's call.
        command["requestId"] = f"widget:{_login()}:{request_id}" if isinstance(request_id, str) else request_id
    return _run(command)


@app.get("/api/dnd")
def get_dnd() -> Response[Any]:
    return _run({"cmd": "get_dnd", "user": _login()})


@app.put("/api/dnd")
def set_dnd() -> Response[Any]:
    return _run({"cmd": "set_dnd", "user": _login(), "state": _body().get("state")})


@app.get("/api/calls/<callid>/recording")
def recording(callid: str) -> Response[Any]:
    deps = _dependencies()
    call = deps.get_call(callid)
    if call is None:
        return _not_found()
    directory = deps.directory()
    client = call.get("client")
    responsible = responsible_login(deps.contact(str(client)) if client else None, directory)
    if not may_see(_login(), call, directory, responsible):
        return _not_found()  # never "forbidden": that would tell the call exists
    return _run({"cmd": "getRecordingUrl", "callid": callid})


@app.get("/api/callbacks")
def callbacks() -> Response[Any]:
    listing = _dependencies().extra.get("callbacks")
    if listing is None:
        return _answer({"ok": True, "result": {"callbacks": [], "cursor": None}})
    params = app.current_event.query_string_parameters or {}
    return _answer(listing(_login(), params.get("status") or "open"))


def handle_widget_api(event: dict[str, Any], context: Any, deps: WidgetApiDependencies | None = None) -> Any:
    global _deps
    authorizer = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    if not authorizer.get("login") or int(authorizer.get("expires_at") or 0) < time.time():
        # The authorizer's answer may be cached past the token's expiry: the expiry is checked here too.
        return {
            "statusCode": 401,
            "headers": {"Content-Type": "application/json"},
            "body": '{"message":"Unauthorized"}',
        }
    _deps = deps
    try:
        return app.resolve(event, context)
    finally:
        _deps = None
