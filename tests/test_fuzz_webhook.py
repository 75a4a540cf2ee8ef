"""Property-based fuzzing of the webhook body: no input gives a 5xx, every 4xx is a spec body."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import CONTACT, CRM_TOKEN, EVENT, HISTORY, Webhook

SPEC_4XX = [{"error": "Invalid parameters"}, {"error": "Invalid token"}]
FIELDS = [
    "cmd",
    "type",
    "status",
    "phone",
    "user",
    "start",
    "duration",
    "callid",
    "link",
    "ext",
    "telnum",
    "diversion",
    "groupRealName",
    "rating",
    "second_callid",
    "direction",
    "wait",
]
PLAUSIBLE = {
    "cmd": st.sampled_from(["history", "event", "contact", "rating", "HISTORY", "Event", "makeCall", ""]),
    "type": st.sampled_from(["in", "out", "IN", "INCOMING", "accepted", "COMPLETED", "CANCELLED", "TRANSFERRED", "x"]),
    "status": st.sampled_from(["Success", "missed", "Busy", "NotAvailable", "NotAllowed", "Cancel", "NotFound", "?"]),
    "phone": st.one_of(
        st.sampled_from(["79101234567", "+7 910 123-45-67", "8 (910) 123-45-67", "0", "+", "++7", "112", "708"]),
        st.text(max_size=30),
    ),
    "user": st.one_of(
        st.sampled_from(["andy", "andy@t.example.ru", "g_1@t", "pbx"]),
        st.text(max_size=60),
        st.text(min_size=200, max_size=1100),
        st.text(alphabet="жЯ😀", min_size=100, max_size=700),
    ),
    "second_callid": st.one_of(st.text(max_size=60), st.text(alphabet="жЯ😀", min_size=40, max_size=300)),
    "start": st.one_of(
        st.sampled_from(["20170703T121110Z", "20171303T121110Z", "20170703T256110Z"]), st.text(max_size=20)
    ),
    "duration": st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=8)),
    "callid": st.one_of(st.text(min_size=1, max_size=40), st.just("fuzz-call")),
}
# Short, long (past DynamoDB's key limits) and multibyte text, and numbers.
value = st.one_of(
    st.text(max_size=60),
    st.text(min_size=200, max_size=1100),
    st.text(alphabet="жЯ😀", min_size=100, max_size=700),
    st.integers().map(str),
)
RATING = {"cmd": "rating", "callid": "fuzz-call", "rating": "5"}


@st.composite
def fields_strategy(draw: st.DrawFn) -> dict[str, str]:
    """A valid push of each command, with fields dropped, mutated and added: every answer is reachable."""
    fields: dict[str, str] = dict(draw(st.sampled_from([HISTORY, EVENT, CONTACT, RATING])))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
        fields.pop(name, None)
    fields.update(draw(st.fixed_dictionaries({}, optional=PLAUSIBLE)))
    fields.update(draw(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), value, max_size=4)))
    return fields


token = st.one_of(st.just(CRM_TOKEN), st.just(CRM_TOKEN), st.none(), st.text(max_size=20))


def check(answer: Any) -> None:
    event(f"status {answer.status}")  # --hypothesis-show-statistics shows the mix of answers
    assert answer.status < 500, (answer.status, answer.body)
    assert answer.status in (200, 400, 401, 413)
    payload = json.loads(answer.body)
    if answer.status >= 400:
        assert payload in SPEC_4XX
    else:
        assert isinstance(payload, dict)
    assert answer.headers["Content-Type"] == "application/json"


COMMON = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@COMMON
@given(fields=fields_strategy(), key=token, as_json=st.booleans())
@example(fields={**HISTORY, "junk": "\x00"}, key=CRM_TOKEN, as_json=False)
@example(fields={**HISTORY, "duration": "00124"}, key=CRM_TOKEN, as_json=True)
def test_structured_bodies(webhook: Webhook, fields: dict[str, str], key: str | None, as_json: bool) -> None:
    if key is not None:
        fields = {**fields, "crm_token": key}
    if as_json:
        check(webhook.raw(json.dumps(fields).encode(), "application/json"))
    else:
        check(webhook.raw(urlencode(fields).encode()))


@COMMON
@given(
    body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    content_type=st.one_of(
        st.none(),
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "application/json; charset=cp1251",
            ]
        ),
        st.text(max_size=20),
    ),
)
@example(
    body=b'{"cmd": "contact", "phone": {"nested": 1}, "crm_token": "' + CRM_TOKEN.encode() + b'"}', content_type=None
)
@example(body=b'{"cmd": "history", "duration": 1e400, "crm_token": "' + CRM_TOKEN.encode() + b'"}', content_type=None)
@example(body=b"[" * 5000, content_type="application/json")
@example(body=b"crm_token=" + CRM_TOKEN.encode() + b"&cmd=contact&callid=x&phone=%FF%FE", content_type=None)
def test_arbitrary_bytes(webhook: Webhook, body: bytes, content_type: str | None) -> None:
    check(webhook.raw(body, content_type))
