"""The commands function's wire format: what other services send it, and the envelope it answers.

{"cmd": "makeCall", "user": "andy", "phone": "+7 910 123-45-67", "requestId": "..."}
-> {"ok": true, "result": {...}}  or  {"ok": false, "error": {"code": "...", "message": "..."}}
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pbxbridge.pbx.models import HistoryPeriod, HistoryType
from pbxbridge.phones import InvalidPhoneError, Phone, normalize_phone

MAX_HISTORY_ROWS = 5000
MAX_CONTACTS_PER_UPSERT = 1000


def _moment(value: object) -> object:
    """ISO 8601 or the API's compact `YYYYmmddTHHMMSSZ`; a time without an offset is UTC."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{8}T\d{6}Z", text, flags=re.IGNORECASE):
            return datetime.strptime(text.upper(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("not an ISO 8601 time") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return value


def _switch(value: object) -> object:
    """`true`/`false`, or the PBX's own `on`/`off`."""
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    return value


Moment = Annotated[datetime, BeforeValidator(_moment)]
Switch = Annotated[bool, BeforeValidator(_switch)]
User = Annotated[str, Field(min_length=1, max_length=256)]
PhoneNumber = Annotated[Phone, WithJsonSchema({"type": "string", "examples": ["+7 910 123-45-67"]})]
GROUP_ID = AliasChoices("group_id", "group")


class _Command(BaseModel):
    # Unknown fields are refused: a typo in our own API should be an error, not a silent default.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, populate_by_name=True)

    @field_validator("phone", mode="before", check_fields=False)
    @classmethod
    def _read_phone(cls, value: object, info: ValidationInfo) -> object:
        """A number in any written form (`8 910 ...`, `+7 (910) ...`, digits), read into E.164 in the
        stack's `PhoneRegion`."""
        if value is None or isinstance(value, Phone):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("phone must be a string")
        try:
            return normalize_phone(value, (info.context or {}).get("region", "RU"))
        except InvalidPhoneError as exc:
            raise ValueError(str(exc)) from exc


class AccountsCommand(_Command):
    """The PBX's users. Answers a list of accounts (`ext` always a string)."""

    cmd: Literal["accounts"]


class GroupsCommand(_Command):
    """The PBX's departments, or one user's (`user`). Answers a list of groups."""

    cmd: Literal["groups"]
    user: User | None = None


class MakeCallCommand(_Command):
    """Click-to-call: the PBX rings `user` (a login, extension or number), then `phone`. Answers
    `{call_id, id_known}`. With a `requestId`, repeats within an hour get the first answer: it dials once."""

    cmd: Literal["makeCall"]
    user: User = Field(description="the PBX user whose phone rings first: login, extension or number")
    phone: PhoneNumber
    clid: str | None = Field(default=None, max_length=32)
    request_id: str | None = Field(default=None, alias="requestId", min_length=1, max_length=128)


class HistoryCommand(_Command):
    """The PBX's call history for `period`, or from `start` (to `end`). Answers `{rows, rejected,
    truncated}`; `truncated` means a full page: ask again from a later start."""

    cmd: Literal["history"]
    start: Moment | None = None
    end: Moment | None = None
    period: HistoryPeriod | None = None
    type: HistoryType = HistoryType.ALL
    limit: int = Field(default=500, ge=1, le=MAX_HISTORY_ROWS)

    @model_validator(mode="after")
    def _a_range(self) -> HistoryCommand:
        if self.period is None and self.start is None:
            raise ValueError("give period, or start (and end)")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SubscribeOnCallsCommand(_Command):
    """Switches `user`'s subscription to a group's calls on or off. Answers `{status}`."""

    cmd: Literal["subscribeOnCalls"]
    user: User
    status: Switch
    group_id: str | None = Field(default=None, validation_alias=GROUP_ID)


class SubscriptionStatusCommand(_Command):
    """Whether `user` is subscribed to the group's calls. Answers `{status}` (`on` or `off`)."""

    cmd: Literal["subscriptionStatus"]
    user: User
    group_id: str = Field(validation_alias=GROUP_ID, min_length=1)


class SetDndCommand(_Command):
    """Switches `user`'s do-not-disturb. Answers `{state}`."""

    cmd: Literal["set_dnd"]
    user: User
    state: Switch


class GetDndCommand(_Command):
    """`user`'s do-not-disturb. Answers `{state}`."""

    cmd: Literal["get_dnd"]
    user: User


class ContactInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(min_length=1, max_length=64)
    contact_name: str = Field(min_length=1, max_length=512)
    responsible: str | None = Field(default=None, max_length=256)
    crm_id: str | None = Field(default=None, max_length=256)


class ListCallerIdsCommand(_Command):
    """The numbers the PBX allows as a call's caller id (crmapi/v1 only)."""

    cmd: Literal["listCallerIds"]


class UpsertContactsCommand(_Command):
    """Adds or replaces contacts (the numbers `contact` answers for). Answers `{upserted, rejected}`,
    each rejected contact with its `index` and `reason`."""

    cmd: Literal["upsertContacts"]
    contacts: list[ContactInput] = Field(min_length=1, max_length=MAX_CONTACTS_PER_UPSERT)


class DeleteContactCommand(_Command):
    """Deletes the contact of a number. Answers `{phone, deleted}`."""

    cmd: Literal["deleteContact"]
    phone: PhoneNumber


class GetCallCommand(_Command):
    """One stored call and its timeline. Answers `{call, timeline}`."""

    cmd: Literal["getCall"]
    callid: str = Field(min_length=1, max_length=200)


class ListCallsCommand(_Command):
    """A client's calls (`phone`) or a PBX user's (`user`, in any form), newest first. Answers
    `{calls, cursor}`; pass `cursor` back for the next page."""

    cmd: Literal["listCalls"]
    phone: PhoneNumber | None = None
    user: User | None = Field(
        default=None, description="a PBX user in any form: login, `login@tenant`, extension or direct number"
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _one_key(self) -> ListCallsCommand:
        if (self.phone is None) == (self.user is None):
            raise ValueError("give exactly one of phone and user")
        return self


class SyncDirectoryCommand(_Command):
    """Copies the PBX's users and departments into the directory (also runs daily). Answers
    `{users, departments, deactivated}`."""

    cmd: Literal["syncDirectory"]
    # Scheduled runs ask for a failed invocation, so that the scheduler retries and the alarm sounds.
    raise_on_error: bool = Field(default=False, alias="raiseOnError")


class ListUsersCommand(_Command):
    """The directory: the PBX's users and departments, with their CRM users and roles. Answers
    `{users: [{login, real_name, ext, telnum, email, groups, crm_user, active, presence, role, role_source,
    departments, pbx_role}], departments}`: `role` is the one in force (`role_source`: `mapping`,
    `pbx` or `default`), `departments` the ones a supervisor sees."""

    cmd: Literal["listUsers"]


def _names(value: object) -> object:
    """Also written `sales,support` (as the console passes it) or as one id (`701`)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    return value


UserRole = Literal["manager", "supervisor", "admin"]
DepartmentIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=128)]], BeforeValidator(_names), Field(max_length=100)
]


class MapUserCommand(_Command):
    """Sets what the PBX does not say of a user: their CRM user, their role and (for a supervisor)
    the departments they see. Only the fields given change; `null` removes a field's setting (the
    PBX's role counts again). Answers `{login, ...the fields given}`."""

    cmd: Literal["mapUser"]
    login: User
    crm_user: str | None = Field(default=None, max_length=256, description="`null` removes the mapping")
    role: UserRole | None = Field(
        default=None,
        description="`manager` sees their own calls, `supervisor` their departments', `admin` everyone's; "
        "`null` removes the setting, so the PBX's role (v1's `admin`, `group_head`) or `manager` counts",
    )
    departments: DepartmentIds | None = Field(
        default=None,
        description="the department (group) ids a supervisor sees; `null`: the departments they are a member of",
    )

    @model_validator(mode="after")
    def _something(self) -> MapUserCommand:
        if not self.model_fields_set & {"crm_user", "role", "departments"}:
            raise ValueError("give crm_user, role or departments")
        return self


class WorkingHoursFields(BaseModel):
    """A working calendar as fields (`getWorkingHours` answers this shape)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    zone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Moscow")
    week: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(
        description='each weekday\'s hours, e.g. {"mon": ["09:00-13:00", "14:00-18:00"]}; a day not named is closed'
    )
    holidays: list[date] = Field(default_factory=list, max_length=2000, description="dates closed all day")
    workdays: dict[date, list[str]] = Field(
        default_factory=dict, max_length=2000, description="extra working dates with their hours"
    )


class SetWorkingHoursCommand(_Command):
    """Sets the tenant's working calendar: time to call back counts business time, and a call missed
    while closed is judged from the next opening. `calendar: null` removes it (the `WorkingHours`
    parameter's, if any, is back in force). Answers as `getWorkingHours` does."""

    cmd: Literal["setWorkingHours"]
    calendar: Annotated[str, Field(min_length=1, max_length=20000)] | WorkingHoursFields | None = Field(
        description="the compact form (`Europe/Moscow;mon-fri 09:00-18:00;holidays 2027-01-01`) or the "
        "fields; `null` removes the calendar"
    )


class GetWorkingHoursCommand(_Command):
    """The working calendar in force. Answers `{calendar, compact, source}`: `source` is `command`
    (set by `setWorkingHours`), `parameter` (the template's `WorkingHours`) or `none` (wall time:
    `calendar` and `compact` are null)."""

    cmd: Literal["getWorkingHours"]


class CrmUserInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    crm_user: str = Field(min_length=1, max_length=256)
    email: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)


class ProposeUserMappingsCommand(_Command):
    """Proposes PBX login -> CRM user mappings where emails or names match; `apply` stores them.
    Answers `{proposals: [{login, crm_user, reason}], applied}`."""

    cmd: Literal["proposeUserMappings"]
    crm_users: list[CrmUserInput] = Field(min_length=1, max_length=5000)
    apply: bool = False


class GetRecordingUrlCommand(_Command):
    """A presigned URL of a call's archived recording. Answers `{url, expires_in}`; `not_found` says
    why there is none (not archived yet, or the reason it was rejected)."""

    cmd: Literal["getRecordingUrl"]
    callid: str = Field(min_length=1, max_length=200)
    expires_in: int = Field(default=900, ge=60, le=12 * 3600)


class IssueWidgetTokenCommand(_Command):
    """A token for the widget of one PBX user (a CRM backend asks for it and puts it in its page).
    `user` in any form resolves through the directory to one active login. Answers `{login, token, expires_at}`."""

    cmd: Literal["issueWidgetToken"]
    user: User = Field(description="a PBX user in any form: login, `login@tenant`, extension or direct number")
    ttl: int = Field(default=8 * 3600, ge=60, le=24 * 3600)


class ListCallbacksCommand(_Command):
    """An owner's call-back list, the most recently missed first. Answers `{callbacks, cursor}`."""

    cmd: Literal["listCallbacks"]
    owner: User = Field(
        description="a PBX user as `listCalls` takes one (login, `login@tenant`, extension or direct number), "
        "a group (`g_<id>` or `g_<id>@tenant`), or `unassigned`"
    )
    status: Literal["open", "closed"] = "open"
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=2048)


class ReportCommand(_Command):
    """The team's figures for a period, per manager, per department, per day and in total, from the
    daily aggregates (never the calls). Answers `{from, to, zone, managers, departments, total, days}`:
    `managers` rows have `login` and `name` (the directory's real name, else the login), `departments`
    rows `department` and `name` (its real name, else its id), `days` one row per date of the period
    (`day`, every date, zeros included: the sum of the people the viewer sees); each row then has the
    same figures, which the docs' "Figures" define."""

    cmd: Literal["report"]
    period: Literal["today", "yesterday", "this_week", "last_week", "this_month", "last_month"] | None = Field(
        default=None, description="a period in the tenant's zone (weeks start on Monday); or `from` and `to`"
    )
    from_: date | None = Field(default=None, alias="from", description="the first date, inclusive")
    to: date | None = Field(default=None, description="the last date, inclusive (at most 366 days)")
    viewer: User | None = Field(
        default=None,
        description="the PBX user the report is for: a supervisor sees their departments, an admin "
        "everyone, a manager themself; absent: everyone (a service's view)",
    )


class RebuildReportsCommand(_Command):
    """Recomputes a period's figures from the calls and call-backs tables (after a calendar change, or
    to repair): each call and call-back's share is worked out again and the difference applied. It
    reads the whole tables, a part per request: answers `{calls, callbacks, changed, cursor}`; send
    the `cursor` back until it is null."""

    cmd: Literal["rebuildReports"]
    period: Literal["today", "yesterday", "this_week", "last_week", "this_month", "last_month"] | None = None
    from_: date | None = Field(default=None, alias="from", description="the first date, inclusive")
    to: date | None = Field(default=None, description="the last date, inclusive (at most 366 days)")
    limit: int = Field(default=2000, ge=100, le=20000, description="items read per request, about")
    cursor: str | None = Field(default=None, max_length=4096)


PBX_COMMANDS = (
    "accounts",
    "groups",
    "makeCall",
    "history",
    "subscribeOnCalls",
    "subscriptionStatus",
    "set_dnd",
    "get_dnd",
    "listCallerIds",
)

Command = Annotated[
    AccountsCommand
    | GroupsCommand
    | MakeCallCommand
    | HistoryCommand
    | SubscribeOnCallsCommand
    | SubscriptionStatusCommand
    | SetDndCommand
    | GetDndCommand
    | ListCallerIdsCommand
    | UpsertContactsCommand
    | DeleteContactCommand
    | GetCallCommand
    | ListCallsCommand
    | SyncDirectoryCommand
    | ListUsersCommand
    | MapUserCommand
    | ProposeUserMappingsCommand
    | GetRecordingUrlCommand
    | IssueWidgetTokenCommand
    | ListCallbacksCommand
    | SetWorkingHoursCommand
    | GetWorkingHoursCommand
    | ReportCommand
    | RebuildReportsCommand,
    Field(discriminator="cmd"),
]
_COMMAND = TypeAdapter(Command)
# Every command's name, read off the union itself so the two can never disagree.
COMMAND_NAMES = frozenset(
    name for model in get_args(get_args(Command)[0]) for name in get_args(model.model_fields["cmd"].annotation)
)


_MODELS: dict[str, type[BaseModel]] = {
    name: model for model in get_args(get_args(Command)[0]) for name in get_args(model.model_fields["cmd"].annotation)
}


def command_model(name: str) -> type[BaseModel] | None:
    """The model of the command called `name` (for tools that type a command's fields, like the console)."""
    return _MODELS.get(name)


class InvalidCommandError(ValueError):
    """The request is not a command we know, or its fields are wrong; the message says which."""


def read_command(payload: Any, region: str) -> Any:
    if not isinstance(payload, dict):
        raise InvalidCommandError("the request must be a JSON object")
    try:
        return _COMMAND.validate_python(payload, context={"region": region})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"][1:] if part != "function-after") or "request"
            problems.append(f"{where}: {error['msg']}")
        raise InvalidCommandError("; ".join(problems[:5])) from None


def success(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def failure(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message, **details}}
