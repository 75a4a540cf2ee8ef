"""The widget's own API (HTTP API routes behind the widget token's authorizer).

Only the token's user's own actions and data: they call as themselves, switch their own DND, play
recordings of calls they may see (calls that rang them, theirs, their contacts'); another user's
call is `not_found`, exactly like a call that does not exist. The commands are the commands
function's own (same envelope, same `makeCall` idempotency), run with the user the token names.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pbxbridge.domain.card import may_see, responsible_login
from pbxbridge.domain.contacts import Contact
from pbxbridge.domain.directory import Directory, PbxUser
from pbxbridge.phones import national

logger = Logger()
app = APIGatewayHttpResolver()
# The list shows this many (its own and its departments' together); the rest wait their turn.
WIDGET_CALLBACKS = 50
# The PBX's call ids are short; a longer one names no call (and would only make DynamoDB refuse the key).
MAX_CALLID = 128


class InvalidInputError(ValueError):
    """A request the widget never sends: answered 400, never 5xx."""


class _Input(BaseModel):
    # A field the widget never sends is refused, never ignored: `{"phone", "user": "boss"}` must not
    # read as if it did something (the user is always the token's).
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


InputT = TypeVar("InputT", bound=_Input)


class MakeCallInput(_Input):
    phone: str = Field(min_length=1, max_length=64)  # the commands' PhoneNumber parses it
    # Namespaced by user below (`widget:<login>:`), within makeCall's 128.
    request_id: str | None = Field(default=None, alias="requestId", min_length=1, max_length=64)


class DndInput(_Input):
    state: bool | str  # the commands' Switch says which words mean on and off


class CallbacksQuery(_Input):
    status: Literal["open", "closed"] = "open"


class NoQuery(_Input):
    """The routes that take no query string."""


class ReportQuery(_Input):
    """`?period=today`, or `?from=2026-12-01&to=2026-12-05`: the `report` command checks the values."""

    period: str | None = Field(default=None, min_length=1, max_length=32)
    from_: str | None = Field(default=None, alias="from", min_length=1, max_length=32)
    to: str | None = Field(default=None, min_length=1, max_length=32)


@dataclass(frozen=True)
class WidgetApiDependencies:
    execute: Callable[[dict[str, Any], Any], dict[str, Any]]  # a command -> the commands' envelope
    get_call: Callable[[str], dict[str, Any] | None]
    contact: Callable[[str], Contact | None]
    directory: Callable[[], Directory]
    # (login, status) -> the user's call-backs as an envelope; None where the stack keeps none.
    callbacks: Callable[[str, str], dict[str, Any]] | None = None
    # One makeCall of this login counted: None when within the limit, else seconds to wait.
    take_call: Callable[[str], int | None] | None = None
    # The team's live board for a viewer (a supervisor or an admin); None where the stack keeps none.
    board: Callable[[PbxUser, Directory], dict[str, Any]] | None = None


@lru_cache(maxsize=1)
def default_dependencies() -> WidgetApiDependencies:
    from pbxbridge import commands
    from pbxbridge.domain.directory import CachedDirectory
    from pbxbridge.settings import commands_settings
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.contacts import DynamoContactStore
    from pbxbridge.storage.directory import users_directory
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.widget.settings import widget_api_settings

    settings = commands_settings()
    client = dynamodb_client()
    calls = DynamoCallStore(client, settings.calls_table, settings.call_events_table)
    contacts = DynamoContactStore(client, settings.contacts_table)
    directory = CachedDirectory(lambda: users_directory(client, settings.directory_table, settings.phone_region))
    callbacks: Callable[[str, str], dict[str, Any]] | None = None
    if settings.callbacks_table:
        from pbxbridge.storage.callbacks import DynamoCallbackStore

        store = DynamoCallbackStore(client, settings.callbacks_table)
        callbacks = functools.partial(
            callbacks_of, store=store, contacts=contacts.get_contacts, directory=directory, region=settings.phone_region
        )
    take_call: Callable[[str], int | None] | None = None
    calls_per_minute = widget_api_settings().calls_per_minute
    if calls_per_minute:
        from pbxbridge.storage.rate_limits import DynamoRateLimiter

        limiter = DynamoRateLimiter(client, settings.idempotency_table)
        take_call = functools.partial(_take_call, limiter=limiter, limit=calls_per_minute)
    board: Callable[[PbxUser, Directory], dict[str, Any]] | None = None
    if settings.board_table:
        sla_minutes = widget_api_settings().callback_sla_minutes

        @functools.cache
        def reads() -> Any:
            from pbxbridge.widget.board import team_board  # paid by the team view only, not every cold start

            return team_board(client, settings, sla_minutes)

        def board(viewer: PbxUser, directory: Directory) -> dict[str, Any]:
            return reads().snapshot(viewer, directory)  # type: ignore[no-any-return]

    return WidgetApiDependencies(
        board=board,
        execute=commands.execute,
        get_call=calls.get_call,
        contact=contacts.get_contact,
        directory=directory,
        callbacks=callbacks,
        take_call=take_call,
    )


def _take_call(login: str, *, limiter: Any, limit: int) -> int | None:
    return limiter.take(f"makeCall#{login}", limit)  # type: ignore[no-any-return]


def callbacks_of(
    login: str,
    status: str,
    *,
    store: Any,
    contacts: Callable[[list[str]], Mapping[str, Contact]],
    directory: Callable[[], Directory],
    region: str,
    limit: int = WIDGET_CALLBACKS,
) -> dict[str, Any]:
    """The user's call-backs and their departments' (`g_<id>`), the most recently missed first, each
    with the number in national form and the contact's name for the list."""
    from pbxbridge.domain.callbacks import CallbackStatus, list_callbacks

    wanted = CallbackStatus(status)
    user = directory().user(login)
    owners = [login, *(f"g_{group}" for group in (user.groups if user else ()))]
    found = [c for owner in owners for c in list_callbacks(store, owner, wanted, limit).callbacks]
    found.sort(key=lambda c: c.last_missed_at, reverse=True)
    found = found[:limit]
    known = contacts([c.phone for c in found]) if found else {}  # one batch read, not one per number
    items = [
        {
            **c.model_dump(mode="json", exclude_none=True),
            "phone_national": national(c.phone, region),
            "contact_name": known[c.phone].contact_name if c.phone in known else None,
        }
        for c in found
    ]
    return {"ok": True, "result": {"callbacks": items, "cursor": None}}


def _dependencies() -> WidgetApiDependencies:
    deps: WidgetApiDependencies = app.context["deps"]  # set per request by handle_widget_api
    return deps


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


def _input(model: type[InputT], data: object, where: str = "body") -> InputT:
    if not isinstance(data, dict):
        raise InvalidInputError(f"the {where} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(_problems(exc, model, where)) from exc


def _problems(exc: ValidationError, model: type[_Input], where: str) -> str:
    known = ", ".join(sorted(field.alias or name for name, field in model.model_fields.items())) or "nothing"
    problems = []
    for error in exc.errors():
        field = ".".join(map(str, error["loc"])) or where
        if error["type"] == "extra_forbidden":
            problems.append(f"{field}: not a field of this {where} (it takes: {known})")
        else:
            problems.append(f"{field}: {error['msg']}")
    return "; ".join(problems)


def _query(model: type[InputT]) -> InputT:
    return _input(model, dict(app.current_event.query_string_parameters or {}), "query")


def _no_query() -> None:
    _query(NoQuery)


def _no_body() -> None:
    if app.current_event.body:
        raise InvalidInputError("this route takes no body")


def _body() -> object:
    try:
        return app.current_event.json_body
    except ValueError as exc:
        raise InvalidInputError("the body is not JSON") from exc


@app.exception_handler(InvalidInputError)  # type: ignore[untyped-decorator]
def _invalid_input(exc: InvalidInputError) -> Response[Any]:
    return _answer({"ok": False, "error": {"code": "invalid_request", "message": str(exc)}})


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def _failed(exc: Exception) -> Response[Any]:
    # DynamoDB unreachable, or anything else a retry may fix: the envelope, never Lambda's bare 500.
    from pbxbridge.storage.dynamodb import StoreRejectedError

    if isinstance(exc, StoreRejectedError):
        return _answer({"ok": False, "error": {"code": "invalid_request", "message": "the data store refused it"}})
    logger.exception("widget API request failed")
    return _answer({"ok": False, "error": {"code": "unavailable", "message": "try again"}})


def _forbidden() -> Response[Any]:
    message = "only a supervisor or an admin sees the team"
    return _answer({"ok": False, "error": {"code": "forbidden", "message": message}})


def _team_viewer() -> PbxUser | None:
    """The token's user when the directory says they lead a team (supervisor or admin); else None.
    Read from the directory on every request, never from anything the browser sends."""
    user = _dependencies().directory().user(_login())
    return user if user is not None and user.active and user.role != "manager" else None


@app.get("/api/me")
def me() -> Response[Any]:
    _no_query()
    _no_body()
    authorizer = app.current_event.request_context.authorizer.get_lambda or {}
    login = _login()
    user = _dependencies().directory().user(login)
    return _answer(
        {
            "ok": True,
            "result": {
                "login": login,
                "expires_at": authorizer.get("expires_at"),
                "name": user.real_name if user is not None and user.real_name else login,
                "role": user.role if user is not None else "manager",
                "departments": list(user.departments) if user is not None else [],
            },
        }
    )


@app.get("/api/team/report")
def team_report() -> Response[Any]:
    viewer = _team_viewer()
    if viewer is None:
        return _forbidden()
    query = _query(ReportQuery)
    _no_body()
    command: dict[str, Any] = {"cmd": "report", "viewer": viewer.login}
    command.update(query.model_dump(by_alias=True, exclude_none=True))
    return _run(command)


@app.post("/api/calls")
def make_call() -> Response[Any]:
    _no_query()
    body = _input(MakeCallInput, _body())
    login = _login()
    take_call = _dependencies().take_call
    if take_call is not None and (wait := take_call(login)) is not None:
        message = f"too many calls from this widget: try again in {wait} s"
        answer = _answer({"ok": False, "error": {"code": "rate_limited", "message": message}})
        answer.headers["Retry-After"] = str(wait)
        return answer
    command: dict[str, Any] = {"cmd": "makeCall", "user": login, "phone": body.phone}
    if body.request_id is not None:
        # Namespaced by user: one user's request id can never replay another's call.
        command["requestId"] = f"widget:{login}:{body.request_id}"
    return _run(command)


@app.get("/api/dnd")
def get_dnd() -> Response[Any]:
    _no_query()
    _no_body()
    return _run({"cmd": "get_dnd", "user": _login()})


@app.put("/api/dnd")
def set_dnd() -> Response[Any]:
    _no_query()
    return _run({"cmd": "set_dnd", "user": _login(), "state": _input(DndInput, _body()).state})


@app.get("/api/team/board")
def team_board() -> Response[Any]:
    viewer = _team_viewer()
    if viewer is None:
        return _forbidden()
    _no_query()
    _no_body()
    deps = _dependencies()
    if deps.board is None:
        return _answer({"ok": False, "error": {"code": "not_configured", "message": "no board table (BOARD_TABLE)"}})
    return _answer({"ok": True, "result": deps.board(viewer, deps.directory())})


@app.get("/api/calls/<callid>/recording")
def recording(callid: str) -> Response[Any]:
    _no_query()
    _no_body()
    deps = _dependencies()
    if not 0 < len(callid) <= MAX_CALLID:
        return _not_found()
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
    query = _query(CallbacksQuery)
    _no_body()
    listing = _dependencies().callbacks
    if listing is None:
        return _answer({"ok": True, "result": {"callbacks": [], "cursor": None}})
    return _answer(listing(_login(), query.status))


def handle_widget_api(event: dict[str, Any], context: Any, deps: WidgetApiDependencies | None = None) -> Any:
    authorizer = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    if not authorizer.get("login") or int(authorizer.get("expires_at") or 0) < time.time():
        # The authorizer's answer may be cached past the token's expiry: the expiry is checked here too.
        return _refused(401, "Unauthorized")
    deps = deps or default_dependencies()
    if not deps.directory().still_active(str(authorizer["login"])):
        # Deactivated (or gone from the PBX) since the token was issued: its hours are over.
        return _refused(403, "Forbidden")
    app.append_context(deps=deps)  # type: ignore[no-untyped-call]  # cleared by resolve() after each request
    return app.resolve(event, context)


def _refused(status: int, message: str) -> dict[str, Any]:
    """As API Gateway's own authorizer refusals read."""
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": f'{{"message":"{message}"}}'}
