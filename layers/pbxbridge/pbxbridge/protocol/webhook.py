"""The webhook's wire format: the PBX's pushes (`history`, `event`, `contact`, `rating`, `webhook`) and
our answers.

Models follow PROTOCOL.md, not the vendor document where the two disagree: unknown fields are
ignored, enumerations compare case-insensitively, and every phone field is read into E.164.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qsl

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pbxbridge.phones import PHONE_PATTERN as PHONE_PATTERN
from pbxbridge.phones import InvalidPhoneError, Phone, normalize_phone

MAX_BODY_BYTES = 64 * 1024
# A form with more fields than this is not a push; parse_qsl stops there instead of allocating.
_MAX_FORM_FIELDS = 200

INVALID_PARAMETERS: dict[str, str] = {"error": "Invalid parameters"}
INVALID_TOKEN: dict[str, str] = {"error": "Invalid token"}


class MalformedBodyError(ValueError):
    """The body is not a form or a JSON object we can read."""


class BodyTooLargeError(ValueError):
    """The body is over MAX_BODY_BYTES."""


class InvalidPushError(ValueError):
    """The push names an unknown command or fails its model; answered 400."""


class _CaseInsensitiveEnum(StrEnum):
    """An enumeration that accepts `missed`, `Missed` and `MISSED` alike."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            folded = value.strip().casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        return None


class Command(_CaseInsensitiveEnum):
    HISTORY = "history"
    EVENT = "event"
    CONTACT = "contact"
    RATING = "rating"
    # Newer tenants (crmapi/v1): a push about the PBX itself, not a call; its `type` says what.
    WEBHOOK = "webhook"


class WebhookType(_CaseInsensitiveEnum):
    """The `type`s of a `webhook` push pbxbridge acts on; any other is stored as it came."""

    SIPREGS_ERROR = "sipregs_error"


class CallDirection(_CaseInsensitiveEnum):
    IN = "in"
    OUT = "out"


class HistoryStatus(_CaseInsensitiveEnum):
    SUCCESS = "Success"
    MISSED = "missed"
    BUSY = "Busy"
    NOT_AVAILABLE = "NotAvailable"
    NOT_ALLOWED = "NotAllowed"
    CANCEL = "Cancel"
    NOT_FOUND = "NotFound"


class EventType(_CaseInsensitiveEnum):
    INCOMING = "INCOMING"
    OUTGOING = "OUTGOING"
    ACCEPTED = "ACCEPTED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    TRANSFERRED = "TRANSFERRED"


# The rules of the wire format, as constants and functions the OpenAPI document reuses, so that what
# the document allows is what the server reads (ECMA-262 regular expressions: ASCII classes only).
#
# A phone is text of PHONE_PATTERN's shape (other scripts' decimal digits are read as their values
# first) that is a number: see pbxbridge.phones.normalize_phone, the one reader of every phone field.
# `start`: UTC as YYYYmmddTHHMMSSZ (`T` and `Z` in either case), surrounding spaces ignored; the
# date must exist (no 30 February, no hour 24).
COMPACT_UTC_PATTERN = (
    r"^ *[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9][Zz] *$"
)
_COMPACT_UTC = re.compile(COMPACT_UTC_PATTERN)
# Text no field may hold: lone UTF-16 surrogates (DynamoDB cannot store them) and control characters
# other than tab and line breaks.
_UNCLEAN_TEXT = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def is_clean_text(value: str) -> bool:
    """False for text holding a lone surrogate or a control character (tab and line breaks allowed)."""
    return _UNCLEAN_TEXT.search(value) is None


def is_compact_utc(value: str) -> bool:
    """True for a `start` the server reads: COMPACT_UTC_PATTERN, and a date that exists."""
    try:
        _parse_compact_utc(value)
    except ValueError:
        return False
    return True


def _parse_compact_utc(value: object) -> object:
    """`20170703T121110Z` -> an aware UTC datetime; anything else is left for pydantic to reject."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _COMPACT_UTC.fullmatch(value):
        # strptime refuses dates that do not exist (20170230T...), which the pattern cannot see.
        return datetime.strptime(value.strip().upper(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    raise ValueError("start must be YYYYmmddTHHMMSSZ")


def _fits_in_bytes(limit: int) -> AfterValidator:
    # DynamoDB limits keys in bytes (1024 for a sort key, 2048 for an index key); a push whose
    # fields could never be stored is bad input (400), not a failure to retry forever (5xx).
    def check(value: str) -> str:
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise ValueError(f"longer than {limit} bytes")
        return value

    return AfterValidator(check)


CallId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f\x7f]+$"), _fits_in_bytes(200)]
Text = Annotated[str, Field(max_length=1024)]
# A PBX user is part of the timeline's key and of the by_user index key.
User = Annotated[str, Field(min_length=1), _fits_in_bytes(256)]
CompactUtc = Annotated[
    datetime,
    BeforeValidator(_parse_compact_utc),
    WithJsonSchema({"type": "string", "pattern": COMPACT_UTC_PATTERN, "examples": ["20170703T121110Z"]}),
]
# On the wire a phone is a string in any common form; the model holds it read into E.164.
PhoneNumber = Annotated[
    Phone,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PHONE_PATTERN,
            "examples": ["79101234567", "+7 910 123-45-67", "8 (910) 123-45-67"],
        }
    ),
]
# A count on the wire is a JSON number, or ASCII digits (spaces around them allowed) within range:
# nothing else pydantic would read as an int ("+5", "5.0", "1_000"), so that the OpenAPI document,
# which reuses these patterns, says exactly what is read.
SECONDS_PATTERN = r"^ *0*([0-9]{1,9}|1000000000) *$"
RATING_PATTERN = r"^ *0*([0-9]{1,3}|1000) *$"


def _whole_number(pattern: str) -> BeforeValidator:
    compiled = re.compile(pattern)

    def read(value: object) -> object:
        if isinstance(value, str):
            if not compiled.fullmatch(value):
                raise ValueError("not a whole number in range")
            return int(value)
        return value

    return BeforeValidator(read)


Seconds = Annotated[int, Field(ge=0, le=10**9), _whole_number(SECONDS_PATTERN)]
Rating = Annotated[int, Field(ge=0, le=1000), _whole_number(RATING_PATTERN)]


class _Push(BaseModel):
    """Fields common to every push; `crm_token` is checked before parsing and never modelled."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        str_strip_whitespace=True,
        coerce_numbers_to_str=True,
        populate_by_name=True,
        # Each model's validator is built on its first push, not at import: a container whose first
        # push is `contact` (the one a caller waits for) builds only that one during its cold start.
        defer_build=True,
    )
    _phone_fields: ClassVar[tuple[str, ...]] = ("phone", "telnum", "diversion")

    callid: CallId

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        # Forms send optional fields as empty strings; an empty required field is then "missing".
        # A JSON null is no value of any field (the OpenAPI document has no null): refused in a
        # field of the push, ignored in one we do not know.
        if isinstance(data, dict):
            if any(v is None for v in data.values()):  # only JSON has nulls: a form push skips this
                known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
                nulls = sorted(k for k, v in data.items() if v is None and k in known)
                if nulls:
                    raise ValueError(f"null is not a value: {', '.join(nulls)}")
            return {k: v for k, v in data.items() if v is not None and not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _clean_text(cls, value: object) -> object:
        # A lone surrogate reaches us only through JSON escapes; DynamoDB would refuse it, and a
        # refusal that only a changed push can fix is bad input (400), never "retry me".
        if isinstance(value, str) and not is_clean_text(value):
            raise ValueError("control character or lone surrogate")
        return value

    @field_validator("phone", "telnum", "diversion", mode="before", check_fields=False)
    @classmethod
    def _read_phone(cls, value: object, info: ValidationInfo) -> Phone:
        if isinstance(value, Phone):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("phone must be a string")
        region = (info.context or {}).get("region", "RU")
        try:
            return normalize_phone(value, region)
        except InvalidPhoneError as exc:
            raise ValueError(str(exc)) from exc


class HistoryPush(_Push):
    """A finished call, inbound or outbound, with its recording link."""

    type: CallDirection
    status: HistoryStatus
    phone: PhoneNumber
    user: User
    start: CompactUtc
    duration: Seconds
    ext: Text | None = None
    telnum: PhoneNumber | None = None
    group_real_name: Text | None = Field(default=None, alias="groupRealName")
    diversion: PhoneNumber | None = None
    link: Annotated[str, Field(max_length=4096)] | None = None
    # Seen live, undocumented: kept leniently, so an odd value never costs us the call.
    wait: Text | None = None
    rating: Text | None = None
    group: Text | None = None
    missed_status: Text | None = Field(default=None, alias="missedStatus")


class EventPush(_Push):
    """Live state of one leg of a call."""

    type: EventType
    phone: PhoneNumber
    user: User
    ext: Text | None = None
    telnum: PhoneNumber | None = None
    group_real_name: Text | None = Field(default=None, alias="groupRealName")
    diversion: PhoneNumber | None = None
    direction: CallDirection | None = None
    second_callid: CallId | None = None


class ContactQuery(_Push):
    """Who is calling: asked while the phone rings."""

    phone: PhoneNumber
    diversion: PhoneNumber | None = None


class RatingPush(_Push):
    """A caller's quality score for a call (seen live, undocumented)."""

    rating: Rating
    phone: PhoneNumber | None = None
    user: User | None = None
    ext: Text | None = None


# A `webhook` push's `type` and `id` become its record's key: clean text, `id` within a key's bytes.
WebhookTypeText = Annotated[str, Field(min_length=1, max_length=128)]
WebhookId = Annotated[str, Field(min_length=1), _fits_in_bytes(200)]
# Fields of a `webhook` push that are not kept with it: the key, and the command every one has.
_NOT_KEPT = frozenset({"crm_token", "cmd"})
_DATA_FIELD = re.compile(r"^data\[([^\[\]]*)\]$")


class WebhookPush(BaseModel):
    """A `cmd=webhook` push (newer tenants): `type` says what it is about, `id` names it, `data` holds
    the details. `type=sipregs_error`: a desk phone or softphone lost its SIP registration.

    Nothing here is about a call, and no `type` is refused: one we do not know (or none at all) is
    kept as it came, its other fields with it (`fields`). Only what cannot be a record's key is bad
    input: a `type` or `id` that is not clean text, or too long for one."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, coerce_numbers_to_str=True, defer_build=True
    )

    type: WebhookTypeText | None = None
    id: WebhookId | None = None
    # Whatever the PBX sent: an object in JSON bodies, text (or `data[key]` fields) in forms.
    data: Any = None
    # The push's other fields, raw (the key and `cmd` left out), for a `type` nobody knows yet.
    fields: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        nulls = sorted(k for k in ("type", "id") if k in data and data[k] is None)
        if nulls:
            raise ValueError(f"null is not a value: {', '.join(nulls)}")
        known: dict[str, Any] = {}
        for name in ("type", "id"):
            value = data.get(name)
            # Forms send absent fields as empty text: blank is absent.
            if value is not None and not (isinstance(value, str) and not value.strip()):
                known[name] = value
        extra = {k: v for k, v in data.items() if k not in _NOT_KEPT and k not in ("type", "id", "data")}
        value = data.get("data")
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            # A form's `data[login]=...&data[ip]=...` (PHP's way of sending an object) is one object.
            folded = {m.group(1): extra.pop(k) for k in list(extra) if (m := _DATA_FIELD.match(k))}
            value = folded or None
        elif isinstance(value, str) and value.lstrip().startswith(("{", "[")):
            # A form can only send text: an object written as JSON text is read as the object.
            with contextlib.suppress(ValueError, RecursionError):
                value = json.loads(value)
        return {**known, "data": value, "fields": extra}

    @field_validator("type", "id", mode="before")
    @classmethod
    def _clean_text(cls, value: object) -> object:
        if isinstance(value, str) and not is_clean_text(value):
            raise ValueError("control character or lone surrogate")
        return value

    @property
    def known_type(self) -> WebhookType | None:
        """The `type` when pbxbridge acts on it (compared case-insensitively), else None."""
        if self.type is None:
            return None
        try:
            return WebhookType(self.type)
        except ValueError:
            return None


Push = HistoryPush | EventPush | ContactQuery | RatingPush | WebhookPush
_MODELS: dict[Command, type[_Push] | type[WebhookPush]] = {
    Command.CONTACT: ContactQuery,
    Command.HISTORY: HistoryPush,
    Command.EVENT: EventPush,
    Command.RATING: RatingPush,
    Command.WEBHOOK: WebhookPush,
}
PUSH_MODELS: tuple[type[_Push] | type[WebhookPush], ...] = tuple(_MODELS.values())


class ContactAnswer(BaseModel):
    """The `contact` answer; `responsible` is left out when the client has no manager."""

    contact_name: str
    responsible: str | None = None

    def to_wire(self) -> dict[str, str]:
        return self.model_dump(exclude_none=True)


def decode_body(body: str | None, is_base64_encoded: bool, content_type: str | None) -> dict[str, Any]:
    """The push's fields from a form or JSON object body, whatever `Content-Type` claims.

    Raises BodyTooLargeError over MAX_BODY_BYTES and MalformedBodyError for anything unreadable.
    A repeated form field keeps its last value, as the PHP receivers the PBX was built against do.
    """
    if body is None:
        return {}
    # Reject before decoding: base64 is 4/3 the size, and decoding a huge body is the attack.
    if len(body) > (MAX_BODY_BYTES * 4 // 3 + 4 if is_base64_encoded else MAX_BODY_BYTES * 4):
        raise BodyTooLargeError
    if is_base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedBodyError("body is not valid base64") from exc
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLargeError
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError("body is not UTF-8") from exc

    kind = (content_type or "").split(";", 1)[0].strip().lower()
    looks_json = text.lstrip().startswith("{")
    if kind.endswith("json") or (kind != "application/x-www-form-urlencoded" and looks_json):
        first, second = _decode_json, _decode_form
    else:
        first, second = _decode_form, _decode_json
    # A declared type is a hint, not a promise: PBX cabinets mislabel bodies. What the label says
    # is tried first; when that fails or reads no push at all, the body is sniffed the other way.
    try:
        fields = first(text)
    except MalformedBodyError:
        return second(text)
    if "cmd" in fields or "crm_token" in fields:
        return fields
    try:
        other = second(text)
    except MalformedBodyError:
        return fields
    return other if ("cmd" in other or "crm_token" in other) else fields


def _decode_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedBodyError("body is not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedBodyError("body is not a JSON object")
    # null is kept: in a field we know it is refused (no field is nullable), elsewhere ignored.
    return {str(key): _scalar(value) for key, value in data.items()}


def _scalar(value: Any) -> Any:
    # JSON numbers arrive where forms send strings; booleans are not numbers here.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _decode_form(text: str) -> dict[str, Any]:
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="replace", max_num_fields=_MAX_FORM_FIELDS
        )
    except ValueError as exc:
        raise MalformedBodyError("body is not a form") from exc
    return dict(pairs)


def read_command(fields: dict[str, Any]) -> Command:
    value = fields.get("cmd")
    if not isinstance(value, str):
        raise InvalidPushError("unknown cmd")
    try:
        return Command(value.strip())
    except ValueError as exc:
        raise InvalidPushError("unknown cmd") from exc


def read_push(fields: dict[str, Any], region: str) -> Push:
    """The typed push for the fields' `cmd`; InvalidPushError names the offending fields only."""
    model = _MODELS[read_command(fields)]
    try:
        return model.model_validate(fields, context={"region": region})  # type: ignore[return-value]
    except ValidationError as exc:
        # The field names, never the values: a value may be a key sent in the wrong field.
        names = sorted({".".join(str(p) for p in err["loc"]) or "body" for err in exc.errors()})
        raise InvalidPushError("invalid fields: " + ", ".join(names)) from None
