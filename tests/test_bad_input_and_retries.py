"""Bad input is 400 at every layer, 5xx only for what a retry can fix; counters stay exact when the
SDK resends a write. Everything through the template's handler with API Gateway events."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.awsrequest import AWSResponse

from tests.conftest import CONTACT, EVENT, HISTORY, Webhook

INVALID_PARAMETERS = {"error": "Invalid parameters"}
SERVICE_UNAVAILABLE = {"error": "Service unavailable"}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def dynamodb_answer(status: int, code: str) -> AWSResponse:
    """What DynamoDB answers when it refuses a request, as it arrives over HTTP."""
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    return AWSResponse("http://dynamodb", status, headers, _Raw(body))


@pytest.fixture
def dynamodb_answers(aws: dict[str, str]) -> Iterator[Callable[[str, Callable[[Any], Any]], None]]:
    """Replace what the webhook's DynamoDB client receives for one operation: `answer(request)`
    returns an AWSResponse, or None to let the request through to moto."""
    from pbxbridge.storage.dynamodb import dynamodb_client

    hooks = dynamodb_client().meta.events
    registered: list[tuple[str, Callable[..., Any]]] = []

    def install(operation: str, answer: Callable[[Any], Any]) -> None:
        def handler(request: Any, **_: Any) -> Any:
            return answer(request)

        name = f"before-send.dynamodb.{operation}"
        hooks.register(name, handler)
        registered.append((name, handler))

    yield install
    for name, handler in registered:
        hooks.unregister(name, handler)


class TestPermanentErrorsAreBadInput:
    @pytest.mark.parametrize(
        "code", ["ValidationException", "SerializationException", "ItemCollectionSizeLimitExceededException"]
    )
    def test_a_write_dynamodb_refuses_for_its_content_is_400_and_logged(
        self, webhook: Webhook, dynamodb_answers: Any, log_output: io.StringIO, code: str
    ) -> None:
        dynamodb_answers("UpdateItem", lambda _: dynamodb_answer(400, code))
        answer = webhook.push(**HISTORY)
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)
        assert "push refused by DynamoDB" in log_output.getvalue()
        assert code in log_output.getvalue()

    def test_a_contact_read_refused_is_answered_as_unknown(self, webhook: Webhook, dynamodb_answers: Any) -> None:
        dynamodb_answers("GetItem", lambda _: dynamodb_answer(400, "ValidationException"))
        assert (webhook.push(**CONTACT).status, webhook.push(**CONTACT).body) == (200, b"{}")

    def test_an_event_refused_is_400(self, webhook: Webhook, dynamodb_answers: Any) -> None:
        dynamodb_answers("PutItem", lambda _: dynamodb_answer(400, "ValidationException"))
        assert webhook.push(**EVENT).status == 400


class TestWhatARetryCanFixIs503:
    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (400, "ThrottlingException"),
            (400, "ProvisionedThroughputExceededException"),
            (400, "RequestLimitExceeded"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            # Our own configuration, not the push: fixed by the operator, then the PBX's retry succeeds.
            (400, "ResourceNotFoundException"),
            (400, "AccessDeniedException"),
        ],
    )
    def test_a_write_that_fails_for_retryable_reasons_is_503(
        self, webhook: Webhook, dynamodb_answers: Any, status: int, code: str
    ) -> None:
        dynamodb_answers("UpdateItem", lambda _: dynamodb_answer(status, code))
        answer = webhook.push(**HISTORY)
        assert (answer.status, answer.json()) == (503, SERVICE_UNAVAILABLE)

    def test_an_unreachable_dynamodb_is_503(self, webhook: Webhook, dynamodb_answers: Any) -> None:
        from botocore.exceptions import EndpointConnectionError

        def refuse(request: Any) -> None:
            raise EndpointConnectionError(endpoint_url=request.url)

        dynamodb_answers("UpdateItem", refuse)
        assert webhook.push(**HISTORY).status == 503


class TestPhonesStoreOnlyAsciiDigits:
    @pytest.mark.parametrize(
        "phone",
        [
            "٧٩١٠١٢٣٤٥٦٧",  # Arabic-Indic
            "۷۹۱۰۱۲۳۴۵۶۷",  # Extended Arabic-Indic (Persian)
            "７９１０１２３４５６７",  # full-width
            "＋７ ９１０ １２３−４５−６７",  # full-width plus, a minus sign for dashes
            "७९१०१२३४५६७",  # Devanagari
            "+7\u00a0910\u00a0123\u201145\u201167",  # no-break spaces and hyphens from a word processor
        ],
    )
    def test_other_scripts_digits_are_read_as_their_values(
        self, webhook: Webhook, call_store: Any, contact_store: Any, phone: str
    ) -> None:
        from pbxbridge.domain.contacts import Contact

        contact_store.put_contacts([Contact(phone="+79101234567", contact_name="Client")])
        assert webhook.push(**{**CONTACT, "phone": phone}).json() == {"contact_name": "Client"}
        assert webhook.push_json(**{**HISTORY, "phone": phone, "telnum": phone}).status == 200
        call = call_store.get_call(HISTORY["callid"])
        assert (call["client"], call["telnum"]) == ("+79101234567", "+79101234567")

    def test_a_short_number_in_other_digits_is_stored_as_ascii_digits(self, webhook: Webhook, call_store: Any) -> None:
        assert webhook.push(**{**HISTORY, "phone": "٧٠٨"}).status == 200
        assert call_store.get_call(HISTORY["callid"])["client"] == "708"

    @pytest.mark.parametrize(
        "phone",
        [
            "7910123456\u00b2",  # a superscript two is not a digit of a number
            "\u2460\u2461\u2462",  # circled digits
            "79101234567\ud800",  # a lone surrogate
            "\udc00",
            "7910\x001234567",
            "79101234567\n",
            "7910\t1234567",
            "7910\u200b1234567",  # a zero-width space
            "\u202e79101234567",  # a bidirectional override
            "8-800-FLOWERS",
        ],
    )
    def test_anything_else_in_a_phone_is_400(self, webhook: Webhook, call_store: Any, phone: str) -> None:
        for field in ("phone", "telnum", "diversion"):
            answer = webhook.push_json(**{**HISTORY, field: phone})
            assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS), field
        assert webhook.push_json(**{**CONTACT, "phone": phone}).status == 400
        assert webhook.push_json(**{**EVENT, "phone": phone}).status == 400
        assert call_store.get_call(HISTORY["callid"]) is None


class TestTextFields:
    @pytest.mark.parametrize("field", ["user", "ext", "groupRealName", "link", "wait", "missedStatus", "callid"])
    @pytest.mark.parametrize("bad", ["\ud83d", "a\udfffb", "a\x00b", "a\x1bb", "a\x85b"])
    def test_lone_surrogates_and_control_characters_are_400(
        self, webhook: Webhook, call_store: Any, field: str, bad: str
    ) -> None:
        answer = webhook.push_json(**{**HISTORY, field: bad})
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)
        assert call_store.get_call(HISTORY["callid"]) is None

    def test_a_surrogate_pair_written_as_escapes_is_one_character_and_kept(
        self, webhook: Webhook, call_store: Any
    ) -> None:
        body = json.dumps({**HISTORY, "groupRealName": "Отдел 😀", "crm_token": "x"})
        assert "\\ud83d\\ude00" in body  # the JSON carries the pair as two escapes
        answer = webhook.push_json(**{**HISTORY, "groupRealName": "Отдел 😀"})
        assert answer.status == 200
        assert call_store.get_call(HISTORY["callid"])["group_name"] == "Отдел 😀"


class TestCountersWhenTheSdkRetries:
    def test_a_history_write_applied_but_unanswered_is_counted_once(
        self, webhook: Webhook, call_store: Any, dynamodb_answers: Any, log_output: io.StringIO
    ) -> None:
        """DynamoDB applies the first attempt, its answer is lost (a 500 here, a timeout in life), the
        SDK sends the same request again: the push is stored and counted once, and is no duplicate."""
        attempts: list[int] = []

        def apply_then_fail(request: Any) -> AWSResponse | None:
            attempts.append(1)
            if len(attempts) == 1:
                applied = requests.post(request.url, data=request.body, headers=dict(request.headers), timeout=5)
                assert applied.status_code == 200
                return dynamodb_answer(500, "InternalServerError")
            return None

        dynamodb_answers("UpdateItem", apply_then_fail)
        assert webhook.push(**HISTORY).status == 200
        assert len(attempts) == 2  # the write was really sent twice
        assert call_store.get_call(HISTORY["callid"])["history_pushes"] == 1
        assert '"duplicate":false' in log_output.getvalue().replace(" ", "")

    def test_a_duplicate_push_from_the_pbx_is_still_counted(self, webhook: Webhook, call_store: Any) -> None:
        assert webhook.push(**HISTORY).status == 200
        assert webhook.push(**HISTORY).status == 200
        call = call_store.get_call(HISTORY["callid"])
        assert call["history_pushes"] == 2
        assert "history_marks" not in call  # internal: never answered
