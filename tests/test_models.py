"""Units: phone rules, body decoding, push models, key comparison."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbxbridge.domain.calls import LiveState, Milestone, live_state
from pbxbridge.domain.directory import pbx_login
from pbxbridge.keys import key_matches
from pbxbridge.phones import InvalidPhoneError, ascii_phone_text, normalize_phone
from pbxbridge.protocol.webhook import (
    COMPACT_UTC_PATTERN,
    MAX_BODY_BYTES,
    PHONE_PATTERN,
    BodyTooLargeError,
    EventPush,
    HistoryPush,
    InvalidPushError,
    MalformedBodyError,
    decode_body,
    is_compact_utc,
    read_push,
)
from tests.conftest import HISTORY


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("79101234567", "RU", "+79101234567"),
        ("+7 910 123-45-67", "RU", "+79101234567"),
        ("89101234567", "RU", "+79101234567"),
        ("8 (910) 123-45-67", "RU", "+79101234567"),
        ("+79101234567", "KZ", "+79101234567"),
        ("74996861574", "RU", "+74996861574"),
        ("16502530000", "RU", "+16502530000"),  # digits that only work as an international number
        ("022 123 456", "MD", "+37322123456"),  # a Moldovan national form
    ],
)
def test_phone_forms_read_into_e164(raw: str, region: str, e164: str) -> None:
    phone = normalize_phone(raw, region)
    assert (phone.e164, phone.raw, phone.digits) == (e164, raw, e164[1:])


@pytest.mark.parametrize(
    ("raw", "key"),
    [("708", "708"), ("112", "112"), ("0611", "0611"), ("1234567", "1234567"), ("8-800", "8800")],
)
def test_short_numbers_are_kept_as_digits(raw: str, key: str) -> None:
    """Service numbers and internal extensions have no E.164 form; they are still numbers."""
    phone = normalize_phone(raw, "RU")
    assert (phone.e164, phone.digits, phone.is_short) == (key, key, True)


def test_a_valid_number_wins_over_a_merely_possible_one() -> None:
    assert normalize_phone("16502530000", "RU").e164 == "+16502530000"
    assert normalize_phone("79101234567", "RU").is_short is False


@pytest.mark.parametrize("raw", ["", "   ", "abc", "+", "1" * 80, "+7 910", "+12"])
def test_non_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneError):
        normalize_phone(raw, "RU")


@given(st.text(max_size=100))
def test_phone_reading_never_crashes(raw: str) -> None:
    try:
        phone = normalize_phone(raw, "RU")
    except InvalidPhoneError:
        return
    assert phone.digits.isascii()
    assert phone.digits.isdigit()
    assert phone.e164.startswith("+") or 2 <= len(phone.e164) <= 8


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.from_regex(PHONE_PATTERN, fullmatch=True))
def test_what_the_server_reads_as_a_phone_has_the_documented_shape(raw: str) -> None:
    """PHONE_PATTERN (reused by the OpenAPI document) holds for every phone the server accepts,
    once other scripts' digits are read as theirs."""
    try:
        normalize_phone(raw, "RU")
    except InvalidPhoneError:
        return
    assert re.fullmatch(PHONE_PATTERN, ascii_phone_text(raw))


@pytest.mark.parametrize(
    ("start", "ok"),
    [
        ("20170703T121110Z", True),
        ("20170703t121110z", True),
        (" 20170703T121110Z ", True),
        ("20240229T000000Z", True),
        ("20230229T000000Z", False),  # no 29 February that year
        ("20170230T121110Z", False),
        ("20171303T121110Z", False),
        ("20170703T241110Z", False),
        ("20170703T126110Z", False),
        ("2017-07-03T12:11:10Z", False),
        ("٢٠١٧٠٧٠٣T121110Z", False),
    ],
)
def test_start_is_a_compact_utc_time_that_exists(start: str, ok: bool) -> None:
    assert is_compact_utc(start) is ok
    assert (re.fullmatch(COMPACT_UTC_PATTERN, start) is not None) >= ok  # the pattern never refuses a valid one
    fields = {**HISTORY, "start": start}
    if ok:
        assert read_push(fields, "RU")
    else:
        with pytest.raises(InvalidPushError):
            read_push(fields, "RU")


def test_a_mislabelled_body_is_sniffed() -> None:
    assert decode_body("cmd=contact&crm_token=k", False, "application/json") == {"cmd": "contact", "crm_token": "k"}
    assert decode_body('{"cmd": "contact"}', False, "application/x-www-form-urlencoded") == {"cmd": "contact"}


def test_user_and_callid_are_capped_in_bytes_for_dynamodb_keys() -> None:
    base = {"cmd": "event", "type": "TRANSFERRED", "phone": "79101234567", "callid": "c"}
    read_push({**base, "user": "я" * 128, "second_callid": "x" * 200}, "RU")
    for too_long in ({"user": "я" * 129}, {"user": "a" * 257}, {"user": "u", "second_callid": "ж" * 101}):
        with pytest.raises(InvalidPushError):
            read_push({**base, "user": "u", **too_long}, "RU")


def test_decode_form_json_base64_and_sniffing() -> None:
    assert decode_body("a=1&b=&a=2", False, "application/x-www-form-urlencoded") == {"a": "2", "b": ""}
    assert decode_body('{"a": 1, "b": true, "c": null}', False, "application/json") == {"a": 1, "b": "true", "c": None}
    assert decode_body(base64.b64encode(b"cmd=contact").decode(), True, None) == {"cmd": "contact"}
    assert decode_body(' {"cmd": "x"}', False, None) == {"cmd": "x"}
    assert decode_body("cmd=x", False, "text/html") == {"cmd": "x"}
    assert decode_body(None, False, None) == {}


@pytest.mark.parametrize(
    ("body", "is_base64", "content_type"),
    [("%%%", True, None), ("&" * 1000, False, None), ("&" * 1000, False, "application/json")],
)
def test_malformed_bodies(body: str, is_base64: bool, content_type: str | None) -> None:
    with pytest.raises(MalformedBodyError):
        decode_body(body, is_base64, content_type)


def test_body_limit_is_64_kib_after_decoding() -> None:
    just_fits = "a=" + "x" * (MAX_BODY_BYTES - 2)
    assert len(decode_body(just_fits, False, None)["a"]) == MAX_BODY_BYTES - 2
    with pytest.raises(BodyTooLargeError):
        decode_body(just_fits + "x", False, None)
    with pytest.raises(BodyTooLargeError):
        decode_body(base64.b64encode(just_fits.encode() + b"x").decode(), True, None)


def test_history_model_reads_the_spec_example() -> None:
    push = read_push(
        {**HISTORY, "crm_token": "x", "ext": 708},
        "RU",
    )
    assert isinstance(push, HistoryPush)
    assert push.start == datetime(2017, 7, 3, 12, 11, 10, tzinfo=UTC)
    assert push.duration == 124
    assert push.ext == "708"
    assert push.phone.e164 == "+79101234567"
    assert not hasattr(push, "crm_token")


def test_event_model_and_optional_blanks() -> None:
    push = read_push(
        {
            "cmd": "event",
            "type": "transferred",
            "phone": "79101234567",
            "user": "andy",
            "callid": "c",
            "second_callid": "c2",
            "diversion": "",
            "direction": "IN",
        },
        "RU",
    )
    assert isinstance(push, EventPush)
    assert (push.type.value, push.second_callid, push.diversion, push.direction) == (
        "TRANSFERRED",
        "c2",
        None,
        push.direction,
    )


def test_invalid_push_names_fields_not_values() -> None:
    with pytest.raises(InvalidPushError) as raised:
        read_push({"cmd": "contact", "callid": "c", "phone": "secret-value"}, "RU")
    assert "phone" in str(raised.value)
    assert "secret-value" not in str(raised.value)


def test_key_comparison() -> None:
    assert key_matches("k1", ("k1",))
    assert key_matches("old", ("new", "old"))
    assert not key_matches("", ("k1",))
    assert not key_matches(None, ("k1",))
    assert not key_matches(["k1"], ("k1",))
    assert not key_matches("k1", ("",))
    assert not key_matches("k", ("k1",))
    assert not key_matches("ключ\udcff", ("k1",))


@pytest.mark.parametrize(
    ("user", "login"),
    [
        ("andy", "andy"),
        ("andy@tenant.example.ru", "andy"),
        ("g_5f3c@tenant", None),
        ("pbx", None),
        ("ivr", None),
        ("", None),
    ],
)
def test_pbx_login(user: str, login: str | None) -> None:
    assert pbx_login(user) == login


def test_live_state_is_the_furthest_milestone() -> None:
    assert live_state(set()) is None
    assert live_state({Milestone.RANG.value}) is LiveState.RINGING
    assert live_state({Milestone.RANG.value, Milestone.ACCEPTED.value}) is LiveState.ACCEPTED
    assert live_state({Milestone.COMPLETED.value, Milestone.DIALLED.value}) is LiveState.COMPLETED
