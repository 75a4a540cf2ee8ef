"""A typed Python client for the commands function, for other services (and the console).

    from pbxbridge.client import CommandsClient, NotFoundError, PbxUnavailableError

    commands = CommandsClient("pbxbridge-CommandsFunction-AbC123")   # name or ARN; COMMANDS_FUNCTION
    dialled = commands.make_call(user="708", phone="+7 910 123-45-67")
    try:
        details = commands.get_call(callid)
        print(details.call.outcome, details.call.live_state, [e.type for e in details.timeline])
    except NotFoundError:
        ...
    for call in commands.iter_calls(user="andy"):       # every page, newest first
        ...

Each method is one Lambda Invoke (RequestResponse) of the function with `{"cmd": ..., ...}`; the
envelope it answers becomes a result model (`{"ok": true, "result": ...}`) or the exception of its
error code (`{"ok": false, "error": {"code": ..., "message": ...}}`): `InvalidRequestError`,
`NotFoundError`, `PbxUnavailableError`, ... all `CommandsError`s with `code`, `message` and
`details`. An invoke that did not run the command (no such function, no permission, the function
crashed) raises `InvokeError`.

`make_call` always sends a `requestId` (one is made when none is given): the function dials once per
id, so a retried invoke (botocore retries throttles and dropped connections) never rings twice.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pbxbridge.pbx.models import CallerId, PbxAccount, PbxGroup

# Errors: one class per code of the envelope.


class CommandsError(Exception):
    """The commands function answered `ok: false` (or could not be invoked: `InvokeError`)."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code or self.code}: {message}")
        self.code = code or self.code
        self.message = message
        self.details = dict(details or {})


class InvokeError(CommandsError):
    """The command did not run: no such function, no permission, a crash, or not an envelope."""

    code = "invoke_failed"


class InvalidRequestError(CommandsError):
    """Our own validation refused the request; the message names the field."""

    code = "invalid_request"


class InvalidParametersError(CommandsError):
    """The PBX refused a parameter (its 400), with its own message."""

    code = "invalid_parameters"


class NotFoundError(CommandsError):
    """No such call, PBX user or archived recording; the message says which (and why, for a recording)."""

    code = "not_found"


class NotConfiguredError(CommandsError):
    """The deployment lacks what the command needs: the directory, the call-backs table, the widget's key."""

    code = "not_configured"


class PbxRefusedError(CommandsError):
    """The PBX's key (`invalid_token`) or address (`wrong_tenant`) is wrong: a retry cannot help."""

    code = "invalid_token"


class PbxUnavailableError(CommandsError):
    """The PBX failed (5xx, timeout, not JSON; the message names the PBX's URL). After `makeCall`,
    `dialled` says whether it may have rung."""

    code = "pbx_unavailable"

    @property
    def dialled(self) -> str | None:
        value = self.details.get("dialled")
        return str(value) if value is not None else None


class UnavailableError(CommandsError):
    """DynamoDB (or another AWS part) failed; a retry may help."""

    code = "unavailable"


class RequestInProgressError(CommandsError):
    """A `makeCall` with this `requestId` is being placed right now; ask again for its answer."""

    code = "request_in_progress"


class RequestIdReusedError(CommandsError):
    """This `requestId` was used for another call (another user, phone or caller id)."""

    code = "request_id_reused"


_ERRORS: dict[str, type[CommandsError]] = {
    "invalid_request": InvalidRequestError,
    "invalid_parameters": InvalidParametersError,
    "not_found": NotFoundError,
    "not_configured": NotConfiguredError,
    "invalid_token": PbxRefusedError,
    "wrong_tenant": PbxRefusedError,
    "pbx_error": PbxUnavailableError,
    "pbx_unavailable": PbxUnavailableError,
    "unavailable": UnavailableError,
    "request_in_progress": RequestInProgressError,
    "request_id_reused": RequestIdReusedError,
}


def error_from_envelope(envelope: Mapping[str, Any]) -> CommandsError:
    """The exception for an `ok: false` envelope."""
    error = envelope.get("error")
    if not isinstance(error, Mapping):
        return InvokeError(f"not an envelope: {json.dumps(envelope, default=str)[:200]}")
    code = str(error.get("code", "error"))
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    return _ERRORS.get(code, CommandsError)(str(error.get("message", "")), code=code, details=details)


# Results. Fields the function adds later are kept (extra="allow"), so an older client still reads them.


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class DialResult(_Result):
    """`makeCall`: the PBX's id for the call (None when it gave none); it need not be the webhooks' callid."""

    call_id: str | None
    id_known: bool


class Call(_Result):
    """A stored call. `outcome` is the PBX's verdict once the call is over (from `history` or
    reconciliation); `live_state` the furthest point its events reached (RINGING, ACCEPTED,
    COMPLETED), COMPLETED as soon as the outcome is known."""

    callid: str
    direction: str | None = None
    status: str | None = None
    outcome: str | None = None
    live_state: str | None = None
    client: str | None = None
    user: str | None = None
    pbx_user: str | None = None
    crm_user: str | None = None
    started_at: str | None = None
    duration: int | None = None
    link: str | None = None
    recording_key: str | None = None


class TimelineEntry(_Result):
    type: str
    user: str | None = None
    received_at: str | None = None


class CallDetails(_Result):
    call: Call
    timeline: list[TimelineEntry]


class CallPage(_Result):
    calls: list[Call]
    cursor: str | None = None


class HistoryEntry(_Result):
    uid: str
    type: str
    client: str
    account: str
    via: str
    start: datetime
    wait: int
    duration: int
    record: str | None = None
    rating: str | None = None


class RejectedRow(_Result):
    line: int
    reason: str


class HistoryPage(_Result):
    rows: list[HistoryEntry]
    rejected: list[RejectedRow]
    truncated: bool = Field(description="a full page: ask again from the last row's start")


class RejectedContact(_Result):
    index: int
    reason: str


class UpsertReport(_Result):
    upserted: int
    rejected: list[RejectedContact]


class DirectorySyncReport(_Result):
    users: int
    departments: int
    deactivated: list[str]


UserRole = Literal["manager", "supervisor", "admin"]


class DirectoryUser(_Result):
    login: str
    real_name: str | None = None
    ext: str | None = None
    telnum: str | None = None
    email: str | None = None
    groups: list[str] = Field(default_factory=list)
    crm_user: str | None = None
    active: bool = True
    presence: str | None = None  # crmapi/v1 tenants: online, offline, ... as of the last sync
    role: UserRole = "manager"
    role_source: Literal["mapping", "pbx", "default"] = "default"
    departments: list[str] = Field(default_factory=list)
    pbx_role: str | None = None


class DirectoryDepartment(_Result):
    id: str
    real_name: str | None = None
    ext: str | None = None


class DirectoryListing(_Result):
    users: list[DirectoryUser]
    departments: list[DirectoryDepartment]


class MappingProposal(_Result):
    login: str
    crm_user: str
    reason: str


class MappingProposals(_Result):
    proposals: list[MappingProposal]
    applied: int


class RecordingUrl(_Result):
    url: str
    expires_in: int


class WorkingHours(_Result):
    """The working calendar in force: `source` `command`, `parameter`, or `none` (wall time)."""

    calendar: dict[str, Any] | None
    compact: str | None
    source: Literal["command", "parameter", "none"]


class CommandsClient:
    """The commands function, one typed method per command (see the module's docstring)."""

    def __init__(self, function: str | None = None, *, lambda_client: Any = None) -> None:
        function = function or os.environ.get("COMMANDS_FUNCTION")
        if not function:
            raise ValueError("the commands function: give its name or ARN, or set COMMANDS_FUNCTION")
        self.function = function
        self._lambda = lambda_client

    def _client(self) -> Any:
        if self._lambda is None:
            import boto3
            from botocore.config import Config

            # Longer than the function's own timeout (30 s), so its answer is always waited for.
            config = Config(read_timeout=70, connect_timeout=5, retries={"mode": "standard", "max_attempts": 3})
            self._lambda = boto3.client("lambda", config=config)
        return self._lambda

    def send(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """One invoke; the envelope as answered. Raises `InvokeError` only."""
        try:
            response = self._client().invoke(
                FunctionName=self.function,
                InvocationType="RequestResponse",
                Payload=json.dumps(dict(payload), ensure_ascii=False, default=str).encode(),
            )
        except Exception as exc:  # botocore's: no such function, no permission, connection
            raise InvokeError(f"cannot invoke {self.function}: {exc}") from exc
        raw = response["Payload"].read()
        try:
            answer = json.loads(raw or b"null")
        except ValueError:
            raise InvokeError(f"{self.function} answered something that is not JSON") from None
        if response.get("FunctionError"):
            what = answer.get("errorMessage") if isinstance(answer, dict) else None
            raise InvokeError(
                f"{self.function} failed: {what or response['FunctionError']}", details={"answer": answer}
            )
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise InvokeError(f"{self.function} did not answer an envelope", details={"answer": answer})
        return answer

    def invoke(self, cmd: str, **fields: Any) -> Any:
        """Any command by name; its `result` as plain JSON, or the error's exception."""
        envelope = self.send({"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}})
        if not envelope["ok"]:
            raise error_from_envelope(envelope)
        return envelope.get("result")

    # The PBX's commands

    def accounts(self) -> list[PbxAccount]:
        return [PbxAccount.model_validate(item) for item in self.invoke("accounts")]

    def groups(self, user: str | None = None) -> list[PbxGroup]:
        return [PbxGroup.model_validate(item) for item in self.invoke("groups", user=user)]

    def list_caller_ids(self) -> list[CallerId]:
        """The numbers the PBX allows as a call's caller id (a tenant on crmapi/v1)."""
        return [CallerId.model_validate(item) for item in self.invoke("listCallerIds")["caller_ids"]]

    def make_call(self, user: str, phone: str, *, clid: str | None = None, request_id: str | None = None) -> DialResult:
        """Ring `user` (login, extension or direct number), then `phone`. Dials once per `request_id`."""
        request_id = request_id or f"client-{uuid.uuid4()}"
        return DialResult.model_validate(
            self.invoke("makeCall", user=user, phone=phone, clid=clid, requestId=request_id)
        )

    def history(
        self,
        *,
        period: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        type: str = "all",
        limit: int = 500,
    ) -> HistoryPage:
        return HistoryPage.model_validate(
            self.invoke("history", period=period, start=_iso(start), end=_iso(end), type=type, limit=limit)
        )

    def subscribe_on_calls(self, user: str, on: bool, group_id: str | None = None) -> bool:
        answer = self.invoke("subscribeOnCalls", user=user, status="on" if on else "off", group_id=group_id)
        return bool(answer["status"] == "on")

    def subscription_status(self, user: str, group_id: str) -> bool:
        return bool(self.invoke("subscriptionStatus", user=user, group_id=group_id)["status"] == "on")

    def set_dnd(self, user: str, state: bool) -> bool:
        return bool(self.invoke("set_dnd", user=user, state=state)["state"])

    def get_dnd(self, user: str) -> bool:
        return bool(self.invoke("get_dnd", user=user)["state"])

    # The CRM's side

    def upsert_contacts(self, contacts: Iterable[Mapping[str, Any]]) -> UpsertReport:
        """Up to 1000 of `{phone, contact_name, responsible?, crm_id?}`."""
        return UpsertReport.model_validate(self.invoke("upsertContacts", contacts=[dict(c) for c in contacts]))

    def delete_contact(self, phone: str) -> bool:
        return bool(self.invoke("deleteContact", phone=phone)["deleted"])

    def get_call(self, callid: str) -> CallDetails:
        return CallDetails.model_validate(self.invoke("getCall", callid=callid))

    def list_calls(
        self, *, phone: str | None = None, user: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> CallPage:
        """A client's (`phone`) or a PBX user's (login, extension or direct number) calls, newest first."""
        return CallPage.model_validate(self.invoke("listCalls", phone=phone, user=user, limit=limit, cursor=cursor))

    def iter_calls(self, *, phone: str | None = None, user: str | None = None, page_size: int = 50) -> Iterator[Call]:
        cursor = None
        while True:
            page = self.list_calls(phone=phone, user=user, limit=page_size, cursor=cursor)
            yield from page.calls
            if not page.cursor:
                return
            cursor = page.cursor

    def recording_url(self, callid: str, expires_in: int = 900) -> RecordingUrl:
        return RecordingUrl.model_validate(self.invoke("getRecordingUrl", callid=callid, expires_in=expires_in))

    def sync_directory(self) -> DirectorySyncReport:
        return DirectorySyncReport.model_validate(self.invoke("syncDirectory"))

    def list_users(self) -> DirectoryListing:
        return DirectoryListing.model_validate(self.invoke("listUsers"))

    def map_user(self, login: str, crm_user: str | None) -> None:
        """Map a PBX login to a CRM user (None removes it); `NotFoundError` for an unknown login."""
        self.send_checked({"cmd": "mapUser", "login": login, "crm_user": crm_user})

    def set_role(
        self,
        login: str,
        role: Literal["manager", "supervisor", "admin"] | None,
        departments: Iterable[str] | None = None,
    ) -> None:
        """Set a user's role (None: the PBX's counts again) and a supervisor's departments (None: the
        ones they are a member of); `NotFoundError` for an unknown login."""
        listed = list(departments) if departments is not None else None
        self.send_checked({"cmd": "mapUser", "login": login, "role": role, "departments": listed})

    def working_hours(self) -> WorkingHours:
        return WorkingHours.model_validate(self.invoke("getWorkingHours"))

    def set_working_hours(self, calendar: str | Mapping[str, Any] | None) -> WorkingHours:
        """Set the working calendar, compact (`Europe/Moscow;mon-fri 09:00-18:00`) or as fields; None
        removes it. `InvalidRequestError` says what is wrong with a calendar."""
        given = calendar if calendar is None or isinstance(calendar, str) else dict(calendar)
        return WorkingHours.model_validate(self.send_checked({"cmd": "setWorkingHours", "calendar": given}))

    def propose_user_mappings(self, crm_users: Iterable[Mapping[str, Any]], *, apply: bool = False) -> MappingProposals:
        return MappingProposals.model_validate(
            self.invoke("proposeUserMappings", crm_users=[dict(u) for u in crm_users], apply=apply)
        )

    def send_checked(self, payload: Mapping[str, Any]) -> Any:
        """`send`, raising the error of an `ok: false` envelope (None values are sent as null)."""
        envelope = self.send(payload)
        if not envelope["ok"]:
            raise error_from_envelope(envelope)
        return envelope.get("result")


def _iso(moment: datetime | str | None) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else moment


# The console's `key=value` fields, typed by the command's own model.


@cache
def _field_kinds(cmd: str) -> dict[str, frozenset[str]]:
    """JSON types each field of a command accepts, by every name it can be given under."""
    from pbxbridge.protocol.commands import command_model

    model = command_model(cmd)
    if model is None:
        return {}
    schema = model.model_json_schema(mode="validation")
    definitions = schema.get("$defs", {})
    kinds: dict[str, frozenset[str]] = {}
    for name, prop in schema.get("properties", {}).items():
        kinds[name] = frozenset(_types(prop, definitions))
    for name, info in model.model_fields.items():  # the other names a field answers to
        alias_kinds = kinds.get(info.alias or name) or kinds.get(name)
        if alias_kinds is not None:
            kinds.setdefault(name, alias_kinds)
            for choice in getattr(info.validation_alias, "choices", ()):
                kinds.setdefault(str(choice), alias_kinds)
    return kinds


def _types(prop: Mapping[str, Any], definitions: Mapping[str, Any]) -> Iterator[str]:
    if "$ref" in prop:
        yield from _types(definitions.get(prop["$ref"].rsplit("/", 1)[-1], {}), definitions)
    kind = prop.get("type")
    if isinstance(kind, str):
        yield kind
    elif isinstance(kind, list):
        yield from (str(k) for k in kind)
    if "enum" in prop and "type" not in prop:
        yield "string"
    for option in [*prop.get("anyOf", ()), *prop.get("oneOf", ())]:
        yield from _types(option, definitions)


def command_fields(cmd: str, items: Iterable[str]) -> dict[str, Any]:
    """`["user=708", "limit=20", "crm_user=null"]` -> `{"user": "708", "limit": 20, "crm_user": None}`.

    A field the command types as text keeps its text (`user=708`, `callid=123`, `phone=0079...`);
    numbers, booleans, lists and objects are read as JSON; `null` clears a field that may be null.
    Fields the command does not know are read as JSON when they parse (the function refuses them).
    """
    kinds = _field_kinds(cmd)
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not key=value")
        accepted = kinds.get(key)
        if accepted is not None and value == "null" and "null" in accepted:
            fields[key] = None
        elif accepted is not None and accepted <= {"string", "null"}:
            fields[key] = value
        else:
            try:
                fields[key] = json.loads(value)
            except ValueError:
                fields[key] = value
    return fields


__all__ = [
    "Call",
    "CallDetails",
    "CallPage",
    "CommandsClient",
    "CommandsError",
    "DialResult",
    "DirectoryListing",
    "DirectorySyncReport",
    "HistoryPage",
    "InvalidParametersError",
    "InvalidRequestError",
    "InvokeError",
    "MappingProposals",
    "NotConfiguredError",
    "NotFoundError",
    "PbxRefusedError",
    "PbxUnavailableError",
    "RecordingUrl",
    "RequestIdReusedError",
    "RequestInProgressError",
    "UnavailableError",
    "UpsertReport",
    "WorkingHours",
    "command_fields",
    "error_from_envelope",
]
