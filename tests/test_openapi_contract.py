"""The OpenAPI document against the real server: schemathesis drives the local stack's HTTP server.

Both ways: what the document allows is stored (2xx, never 5xx), what it forbids is refused (4xx),
and every answer matches the document. Cases are generated from openapi/webhook.json as committed,
in form and JSON bodies, on both routes. The rules a regular expression cannot state are the
document's named formats (`x-pbxbridge-formats`); their generators below produce what each format
describes, so the positive cases respect them too.

A negative case is judged by what went over the wire (`_read_as_the_document_allows`): a form is
text, read as the server reads one (a repeated field keeps its last value), and a mutation of one
branch of an anyOf may satisfy another. One reading of the server is wider than a JSON Schema can
say, and is allowed by name: a JSON integer in a phone field is read as its digits, so an integer
that spells a number is stored.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, unsupported_method

from local.stack import LocalStack
from pbxbridge.phones import InvalidPhoneError, normalize_phone
from pbxbridge.protocol.webhook import decode_body, is_clean_text

REPO = Path(__file__).resolve().parent.parent
DOCUMENT = REPO / "openapi" / "webhook.json"
# Cases per route, for each of the positive and negative modes (more with CONTRACT_EXAMPLES=...).
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "150"))
PHONE_FIELDS = ("phone", "telnum", "diversion")


def _is_phone(text: str) -> bool:
    try:
        normalize_phone(text, "RU")  # the local stack's PhoneRegion
    except InvalidPhoneError:
        return False
    return True


def _to_script(text: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(ch)) if ch.isdigit() else ch for ch in text)


_PHONES = ["79101234567", "+7 910 123-45-67", "8 (910) 123-45-67", "84951234567", "+16502530000", "+44 20 7946 0958"]
# pbx-phone: numbers in the forms the PBX and people write, other scripts' digits, short numbers.
_phone = st.one_of(
    st.sampled_from(_PHONES),
    st.builds(_to_script, st.sampled_from(_PHONES), st.sampled_from(["٠", "۰", "０", "०"])),
    st.from_regex(r"\A[0-9]{2,8}\Z"),
).filter(_is_phone)
# pbx-utc: a time that exists, in either case of T and Z.
_utc = st.builds(
    lambda when, t, z: when.strftime(f"%Y%m%d{t}%H%M%S{z}"),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)),
    st.sampled_from("Tt"),
    st.sampled_from("Zz"),
)


def _key(limit: int) -> st.SearchStrategy[str]:
    """pbx-key-N: clean text of at most `limit` bytes in UTF-8 once trimmed."""
    return st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(
        lambda text: is_clean_text(text) and 0 < len(text.strip().encode("utf-8")) <= limit
    )


schemathesis.openapi.format("pbx-phone", _phone)
schemathesis.openapi.format("pbx-utc", _utc)
schemathesis.openapi.format("pbx-key-200", _key(200))
schemathesis.openapi.format("pbx-key-256", _key(256))

schema = schemathesis.openapi.from_path(DOCUMENT)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES)
# The coverage phase mutates each property in turn (types, bounds, patterns, missing fields): the
# negative cases that matter. Its positive boundary strings ignore custom formats (a 64-digit
# "phone" is not a number), so it runs negative only; the fuzzing phase covers both.
schema.config.phases.coverage.generation.update(modes=[GenerationMode.NEGATIVE])

_DOCUMENT = json.loads(DOCUMENT.read_text())
_REQUEST = jsonschema.Draft202012Validator(
    {
        **_DOCUMENT["paths"]["/pbx"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        "components": _DOCUMENT["components"],
    }
)


def _read_as_the_document_allows(case: Any, response: Any) -> bool:
    """What reached the server, read as the server reads it, is a body the document allows.

    A negative case is judged by what went over the wire: a form is text (a repeated field keeps
    its last value, None is not sent), and a mutation of one branch of an anyOf may still satisfy
    another (a blank optional field is absent)."""
    sent = response.request.body
    text = sent.decode() if isinstance(sent, bytes) else str(sent or "")
    if case.media_type == "application/x-www-form-urlencoded":
        return bool(_REQUEST.is_valid(decode_body(text, False, case.media_type)))
    if case.media_type != "application/json":
        return False
    try:
        body = json.loads(text)
    except ValueError:
        return False
    if _REQUEST.is_valid(body):
        return True
    if not isinstance(body, dict):
        return False
    integers = {k for k in PHONE_FIELDS if isinstance(body.get(k), int) and not isinstance(body.get(k), bool)}
    return bool(integers) and bool(_REQUEST.is_valid({**body, **{k: str(body[k]) for k in integers}}))


@schemathesis.check
def forbidden_is_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """negative_data_rejection, but for the readings wider than the document can say."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AssertionError:
        if _read_as_the_document_allows(case, response):
            return None
        raise


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_the_server_keeps_to_the_document(case: Any, stack: LocalStack) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("crm_token"), str):
        case.body["crm_token"] = stack.crm_token  # the key is a secret: the document says only "a string"
    case.call_and_validate(
        base_url=stack.api.url,
        # API Gateway answers a method no route has with 404, not the 405 this check wants.
        excluded_checks=[unsupported_method, negative_data_rejection],
        additional_checks=[forbidden_is_refused],
    )
