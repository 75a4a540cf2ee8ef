"""The webhook's OpenAPI document, generated from the protocol's own rules (`make openapi`).

The document says exactly what the server reads, so that a client generated from it never sends
what the server then refuses, and the server refuses what it forbids (`make test` checks both ways
with schemathesis against the local stack). Every rule is derived from the protocol layer, never
restated: the character classes are computed from the functions the server reads fields with
(`is_clean_text`, `ascii_phone_text`, the enumerations' case-folding, whitespace as pydantic and the
blank check strip it), and the patterns are the protocol's constants. What a regular expression
cannot say is a named `format` with its rule in `x-pbxbridge-formats`:

- `pbx-phone`: the text is a telephone number (`phonenumbers` reads it, or 2-8 digits of a short one);
- `pbx-utc`: the date and time exist (no 30 February);
- `pbx-key-200`, `pbx-key-256`: at most that many bytes in UTF-8 once trimmed (DynamoDB key limits).

The character classes follow the Unicode tables of the Python that generates the document, as the
server's reading does: `make openapi` generates it with the Lambda runtime's Python (3.13), and the
document names its Unicode version (`x-pbxbridge-unicode`). It is kept in the repo
(openapi/webhook.json) and a test fails when it drifts.
"""

from __future__ import annotations

import json
import math
import sys
import unicodedata
from collections.abc import Callable, Iterable
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any

from pbxbridge import __version__
from pbxbridge.phones import InvalidPhoneError, ascii_phone_text
from pbxbridge.protocol.webhook import (
    COMPACT_UTC_PATTERN,
    INVALID_PARAMETERS,
    INVALID_TOKEN,
    MAX_BODY_BYTES,
    PHONE_PATTERN,
    RATING_PATTERN,
    SECONDS_PATTERN,
    CallDirection,
    Command,
    ContactAnswer,
    EventType,
    HistoryStatus,
    WebhookType,
    is_clean_text,
)

FORMATS = {
    "pbx-phone": "a telephone number: phonenumbers reads it in the tenant's region (PhoneRegion), or it is "
    "2 to 8 digits of a short number (112, 708); other scripts' decimal digits read as their values",
    "pbx-utc": "a date and time that exist (20170230T... does not)",
    "pbx-key-200": "at most 200 bytes in UTF-8 once trimmed (a DynamoDB key)",
    "pbx-key-256": "at most 256 bytes in UTF-8 once trimmed (a DynamoDB key)",
}
_BLANK_NOTE = "Empty or only whitespace: as if absent."


# Character classes, computed from the server's own functions.


@lru_cache(maxsize=1)
def _characters() -> dict[str, frozenset[str]]:
    every = [chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF]
    clean = frozenset(ch for ch in every if is_clean_text(ch))
    # The blank check (`not value.strip()`) strips what str.isspace calls whitespace; pydantic's
    # str_strip_whitespace and the callid pattern's \s use Unicode's White_Space, which is the same
    # set less \x1c-\x1f, control characters no field may hold anyway.
    python_space = frozenset(ch for ch in every if ch.isspace())
    space = frozenset(ch for ch in python_space if ch in clean)
    phone: dict[str, set[str]] = {"digit": set(), "separator": set(), "plus": set(), "space": set()}
    for ch in every:
        if not ch.isascii() and unicodedata.category(ch) != "Nd" and not unicodedata.normalize("NFKC", ch).isascii():
            continue
        for probe, strip in (("0" + ch, 1), (ch + "0", -1)):
            try:
                read = ascii_phone_text(probe)
            except InvalidPhoneError:
                continue
            read = read[1:] if strip == 1 else read[:-1]
            if read in "0123456789" and len(read) == 1:
                phone["digit"].add(ch)
            elif read == "+":
                phone["plus"].add(ch)
            elif read and set(read) <= set(" ().-"):
                phone["separator"].add(ch)
                if set(read) == {" "}:
                    phone["space"].add(ch)
    return {
        "clean": clean,
        "space": space,
        "python_space": python_space,
        "solid": clean - space,
        **{f"phone_{name}": frozenset(chars) for name, chars in phone.items()},
    }


def _class(chars: Iterable[str]) -> str:
    """A regular expression character class of `chars`, as ranges (literal characters, escaped
    where a class needs it; ASCII controls as \\xNN), readable by Python, Rust and ECMA-262 (u)."""
    return _class_of(frozenset(chars))


@lru_cache(maxsize=64)
def _class_of(chars: frozenset[str]) -> str:
    # A large set is written as what it leaves out (surrogates aside: no regex engine of a JSON
    # Schema validator in Rust can name them, and JSON text cannot carry them unescaped).
    if len(chars) < 0x80000:
        return "[" + _ranges(chars) + "]"
    outside = frozenset(chr(p) for p in range(sys.maxunicode + 1) if not 0xD800 <= p <= 0xDFFF) - chars
    return "[^" + _ranges(outside) + "]"


def _ranges(chars: frozenset[str]) -> str:
    points = sorted(ord(ch) for ch in chars)
    parts: list[str] = []
    start = prev = -2
    for point in [*points, -1]:
        if point == prev + 1:
            prev = point
            continue
        if start >= 0:
            parts.append(_literal(start) if start == prev else f"{_literal(start)}-{_literal(prev)}")
        start = prev = point
    return "".join(parts)


def _literal(point: int) -> str:
    ch = chr(point)
    if point < 0x20 or point == 0x7F or 0x80 <= point <= 0x9F:
        return f"\\x{point:02x}"
    if ch in "\\]^-[":
        return "\\" + ch
    if unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cf", "Co", "Cn", "Mn", "Me", "Mc"):
        return f"\\u{point:04x}" if point <= 0xFFFF else ch
    return ch


# Field schemas: each states one rule of the server.


def _blank() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{_class(_characters()['python_space'])}*$"}


def _text(max_length: int, at_least: int = 1) -> str:
    """Clean text (no control character), at_least..max_length characters once trimmed."""
    chars = _characters()
    space, solid, clean = _class(chars["space"]), _class(chars["solid"]), _class(chars["clean"])
    body = solid if max_length == 1 else f"{solid}(?:{clean}{{0,{max_length - 2}}}{solid})?"
    if at_least == 0:
        body = f"(?:{body})?"
    return f"^{space}*{body}{space}*$"


def _scalar_as_text(schema: dict[str, Any], max_length: int = 1024) -> dict[str, Any]:
    # JSON numbers are read as their text (a whole one as its digits), true/false as "true"/"false";
    # a form sends text anyway. A whole number's digits must fit the field's length.
    number: dict[str, Any] = {"type": "number"}
    if max_length < 300:  # longer fields take every number a JSON float can hold
        number |= {"minimum": _widest(max_length, -1.0), "maximum": _widest(max_length, 1.0)}
    return {"anyOf": [schema, number, {"type": "boolean"}]}


def _widest(max_length: int, sign: float) -> float:
    """The float farthest from zero whose whole-number text (as the server writes it) still fits."""
    value = 10.0 ** (max_length if sign > 0 else max_length - 1) * sign  # a minus sign takes a place
    while len(str(int(value))) > max_length:
        value = math.nextafter(value, 0.0)
    return value


def text_field(max_length: int) -> dict[str, Any]:
    return _scalar_as_text({"type": "string", "pattern": _text(max_length, at_least=0)}, max_length)


def callid_field() -> dict[str, Any]:
    chars = _characters()
    space, solid = _class(chars["space"]), _class(chars["solid"])
    pattern = f"^{space}*{solid}{{1,200}}{space}*$"
    return _scalar_as_text({"type": "string", "pattern": pattern, "format": "pbx-key-200"}, 200)


def user_field() -> dict[str, Any]:
    return _scalar_as_text({"type": "string", "pattern": _text(256), "format": "pbx-key-256"}, 256)


def webhook_id_field() -> dict[str, Any]:
    return _scalar_as_text({"type": "string", "pattern": _text(200), "format": "pbx-key-200"}, 200)


def webhook_type_field() -> dict[str, Any]:
    known = ", ".join(f"`{member.value}`" for member in WebhookType)
    return {
        **_scalar_as_text({"type": "string", "pattern": _text(128)}, 128),
        "description": f"What the push is about ({known}, compared case-insensitively); any other is kept as it came",
    }


def any_value() -> dict[str, Any]:
    return {"description": "anything: kept as it came (an object in JSON; text, or data[key] fields, in a form)"}


def phone_field() -> dict[str, Any]:
    chars = _characters()
    digit = chars["phone_digit"]
    # PHONE_PATTERN, with each ASCII class widened to every character the server reads as it.
    shape = (
        PHONE_PATTERN.replace("^ *", f"^{_class(chars['phone_space'] | {' '})}*")
        .replace("\\+?", f"{_class(chars['phone_plus'] | {'+'})}?")
        .replace("[0-9 ().\\-]", _class(digit | chars["phone_separator"] | set("0123456789 ().-")))
        .replace("[0-9]", _class(digit | set("0123456789")))
    )
    assert shape != PHONE_PATTERN, "PHONE_PATTERN changed shape: update phone_field"
    text = {"type": "string", "pattern": shape, "maxLength": 64, "format": "pbx-phone"}
    # A JSON integer is read as its digits: 2 to 8 of them are a short number.
    return {"anyOf": [text, {"type": "integer", "minimum": 10, "maximum": 99_999_999}]}


def utc_field() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": COMPACT_UTC_PATTERN,
        "format": "pbx-utc",
        "examples": ["20170703T121110Z"],
        "description": "UTC, YYYYmmddTHHMMSSZ",
    }


def count_field(pattern: str, maximum: int) -> dict[str, Any]:
    return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": maximum}, {"type": "string", "pattern": pattern}]}


def enum_field(members: Iterable[str]) -> dict[str, Any]:
    """Any case (compared case-folded, as the server does), spaces around allowed."""
    chars = _characters()
    space = _class(chars["space"])
    alternatives = "|".join(_folded(member) for member in members)
    return {
        "type": "string",
        "pattern": f"^{space}*(?:{alternatives}){space}*$",
        "examples": list(members),
    }


@lru_cache(maxsize=1)
def _folds() -> dict[str, frozenset[str]]:
    """Every character (or ligature) by the ASCII text it case-folds to."""
    folds: dict[str, set[str]] = {}
    for point in range(sys.maxunicode + 1):
        ch = chr(point)
        if 0xD800 <= point <= 0xDFFF:
            continue
        folded = ch.casefold()
        if folded.isascii() and folded.isalpha():
            folds.setdefault(folded, set()).add(ch)
    return {k: frozenset(v) for k, v in folds.items()}


def _folded(member: str) -> str:
    """A pattern for every text whose casefold() equals member's: letters and ligatures (ß, ﬆ)."""
    target = member.casefold()
    folds = _folds()

    @cache
    def from_(i: int) -> str:
        if i == len(target):
            return ""
        options = []
        for length in (3, 2):
            if target[i : i + length] in folds and i + length <= len(target):
                options.append(_class(folds[target[i : i + length]]) + from_(i + length))
        options.append(_class(folds[target[i]]) + from_(i + 1))
        return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"

    return from_(0)


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    if not set(schema) - {"description"}:
        return schema  # any value at all: a blank one too
    note = _BLANK_NOTE
    if "description" in schema:
        schema = dict(schema)
        note = f"{schema.pop('description')}. {_BLANK_NOTE}"
    branches = schema["anyOf"] if set(schema) == {"anyOf"} else [schema]
    return {"anyOf": [*branches, _blank()], "description": note}


# The pushes, field by field: (schema, required).

_Field = tuple[Callable[[], dict[str, Any]], bool]


def _enum(kind: type[StrEnum]) -> Callable[[], dict[str, Any]]:
    return lambda: enum_field([member.value for member in kind])


_TEXT = (lambda: text_field(1024), False)
_PHONE_OPTIONAL = (phone_field, False)

_PUSHES: dict[Command, tuple[str, str, dict[str, _Field]]] = {
    Command.HISTORY: (
        "HistoryPush",
        "A finished call, inbound or outbound, with its recording link.",
        {
            "callid": (callid_field, True),
            "type": (_enum(CallDirection), True),
            "status": (_enum(HistoryStatus), True),
            "phone": (phone_field, True),
            "user": (user_field, True),
            "start": (utc_field, True),
            "duration": (lambda: count_field(SECONDS_PATTERN, 10**9), True),
            "ext": _TEXT,
            "telnum": _PHONE_OPTIONAL,
            "groupRealName": _TEXT,
            "diversion": _PHONE_OPTIONAL,
            "link": (lambda: text_field(4096), False),
            "wait": _TEXT,
            "rating": _TEXT,
            "group": _TEXT,
            "missedStatus": _TEXT,
        },
    ),
    Command.EVENT: (
        "EventPush",
        "Live state of one leg of a call.",
        {
            "callid": (callid_field, True),
            "type": (_enum(EventType), True),
            "phone": (phone_field, True),
            "user": (user_field, True),
            "ext": _TEXT,
            "telnum": _PHONE_OPTIONAL,
            "groupRealName": _TEXT,
            "diversion": _PHONE_OPTIONAL,
            "direction": (_enum(CallDirection), False),
            "second_callid": (callid_field, False),
        },
    ),
    Command.CONTACT: (
        "ContactQuery",
        "Who is calling: asked while the phone rings.",
        {"callid": (callid_field, True), "phone": (phone_field, True), "diversion": _PHONE_OPTIONAL},
    ),
    Command.RATING: (
        "RatingPush",
        "A caller's quality score for a call (seen live, undocumented).",
        {
            "callid": (callid_field, True),
            "rating": (lambda: count_field(RATING_PATTERN, 1000), True),
            "phone": _PHONE_OPTIONAL,
            "user": (user_field, False),
            "ext": _TEXT,
        },
    ),
    Command.WEBHOOK: (
        "WebhookPush",
        "Newer tenants: the PBX about itself, not a call. `sipregs_error`: a desk phone or softphone lost "
        "its SIP registration. Every type is kept (one record per `type` and `id`; without an `id`, per "
        "content), none is refused, and other fields are kept with it.",
        {
            "type": (webhook_type_field, False),
            "id": (webhook_id_field, False),
            "data": (any_value, False),
        },
    ),
}


def _push_schema(cmd: Command, description: str, fields: dict[str, _Field]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "cmd": {**enum_field([cmd.value]), "description": "compared case-insensitively"},
        "crm_token": {"type": "string", "description": "the CRM key set in the PBX cabinet"},
    }
    for name, (build, required) in fields.items():
        properties[name] = build() if required else _optional(build())
    return {
        "type": "object",
        "description": description + ("" if cmd is Command.WEBHOOK else " Unknown fields are ignored."),
        "properties": properties,
        "required": ["cmd", "crm_token", *(name for name, (_, required) in fields.items() if required)],
        "additionalProperties": True,
    }


def _error(example: dict[str, str]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": example}}}


def _contact_answer() -> dict[str, Any]:
    # The server leaves `responsible` out rather than sending null.
    return {
        "type": "object",
        "description": ContactAnswer.__doc__,
        "properties": {"contact_name": {"type": "string"}, "responsible": {"type": "string"}},
        "required": ["contact_name"],
        "additionalProperties": False,
    }


def build_document() -> dict[str, Any]:
    schemas = {name: _push_schema(cmd, text, fields) for cmd, (name, text, fields) in _PUSHES.items()}
    schemas["ContactAnswer"] = _contact_answer()
    schemas["Empty"] = {"type": "object", "maxProperties": 0}
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    }
    push_ref = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name, _, _ in _PUSHES.values()]}
    operation = {
        "summary": "A push from the PBX: history, event, contact, rating or webhook",
        "description": "Form (plain or base64 from API Gateway) or JSON object; a missing Content-Type is "
        f"sniffed. Unknown fields are ignored. Bodies over {MAX_BODY_BYTES // 1024} KiB are refused with 413. "
        "Formats this document names are explained in x-pbxbridge-formats.",
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": push_ref},
                "application/json": {"schema": push_ref},
            },
        },
        "responses": {
            "200": {
                "description": "Stored (`{}`; a `webhook` push of any type too), or the contact for `contact` "
                "(`{}` when unknown)",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Empty"},
                                {"$ref": "#/components/schemas/ContactAnswer"},
                            ]
                        }
                    }
                },
            },
            "400": {"description": "Unknown cmd, missing or malformed field", **_error(INVALID_PARAMETERS)},
            "401": {"description": "Missing or wrong crm_token", **_error(INVALID_TOKEN)},
            "413": {"description": f"Body over {MAX_BODY_BYTES // 1024} KiB", **_error(INVALID_PARAMETERS)},
            "503": {
                "description": "Not stored; the PBX may retry, reconciliation will fetch it",
                **_error({"error": "Service unavailable"}),
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbxbridge webhook", "version": __version__},
        "x-pbxbridge-formats": FORMATS,
        "x-pbxbridge-unicode": unicodedata.unidata_version,
        "paths": {
            "/": {"post": {**operation, "operationId": "pushRoot"}},
            "/pbx": {"post": {**operation, "operationId": "push"}},
        },
        "components": {"schemas": schemas},
    }


def render() -> str:
    return json.dumps(build_document(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
