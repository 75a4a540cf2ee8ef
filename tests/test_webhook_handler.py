"""The webhook through the template's handler with real API Gateway HTTP API events, against moto."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from local.apigw import http_response
from local.lambdas import LocalFunction
from tests.conftest import CONTACT, CRM_TOKEN, EVENT, HISTORY, PREVIOUS_CRM_TOKEN, Webhook

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
INVALID_PARAMETERS = {"error": "Invalid parameters"}
INVALID_TOKEN = {"error": "Invalid token"}


def seed_contact(contact_store: Any, **fields: Any) -> None:
    from pbxbridge.domain.contacts import Contact

    contact_store.put_contacts([Contact(**fields)])


class TestAnswers:
    def test_history_is_stored_and_answered_with_an_empty_object(self, webhook: Webhook, call_store: Any) -> None:
        answer = webhook.push(**HISTORY)
        assert (answer.status, answer.json()) == (200, {})
        assert answer.headers["Content-Type"] == "application/json"
        call = call_store.get_call(HISTORY["callid"])
        assert call["client"] == "+79101234567"
        assert call["client_raw"] == "79101234567"
        assert call["outcome"] == "answered"
        assert call["started_at"] == "2017-07-03T12:11:10Z"
        assert call["duration"] == 124
        assert call["link"] == "https://link/file.mp3"

    def test_known_contact_answers_name_and_responsible(self, webhook: Webhook, contact_store: Any) -> None:
        seed_contact(contact_store, phone="+79101234567", contact_name="ЗАО Рога и копыта", responsible="andy")
        answer = webhook.push(**CONTACT)
        assert answer.status == 200
        assert answer.json() == {"contact_name": "ЗАО Рога и копыта", "responsible": "andy"}

    @pytest.mark.parametrize("phone", ["79101234567", "+7 910 123-45-67", "89101234567", "8 (910) 123-45-67"])
    def test_every_written_form_of_a_number_finds_the_same_contact(
        self, webhook: Webhook, contact_store: Any, phone: str
    ) -> None:
        seed_contact(contact_store, phone="+79101234567", contact_name="Client")
        assert webhook.push(**{**CONTACT, "phone": phone}).json() == {"contact_name": "Client"}

    def test_contact_without_responsible_leaves_it_out(self, webhook: Webhook, contact_store: Any) -> None:
        seed_contact(contact_store, phone="+79101234567", contact_name="No manager")
        answer = webhook.push(**CONTACT)
        assert answer.body == b'{"contact_name":"No manager"}'

    def test_unknown_number_answers_an_empty_object(self, webhook: Webhook) -> None:
        answer = webhook.push(**CONTACT)
        assert (answer.status, answer.body) == (200, b"{}")

    def test_a_badly_written_contact_row_is_answered_as_unknown(
        self, webhook: Webhook, aws: dict[str, str], log_output: io.StringIO
    ) -> None:
        from pbxbridge.storage.dynamodb import dynamodb_client

        dynamodb_client().put_item(
            TableName=aws["ContactsTable"], Item={"phone": {"S": "+79101234567"}, "contact_name": {"S": ""}}
        )
        assert webhook.push(**CONTACT).body == b"{}"

    def test_a_numeric_responsible_is_answered_as_text(self, webhook: Webhook, aws: dict[str, str]) -> None:
        from pbxbridge.storage.dynamodb import dynamodb_client

        item = {"phone": {"S": "+79101234567"}, "contact_name": {"S": "Ext"}, "responsible": {"N": "708"}}
        dynamodb_client().put_item(TableName=aws["ContactsTable"], Item=item)
        assert webhook.push(**CONTACT).json() == {"contact_name": "Ext", "responsible": "708"}

    def test_short_and_internal_numbers_are_stored(self, webhook: Webhook, call_store: Any) -> None:
        assert webhook.push(**{**HISTORY, "phone": "112", "callid": "short-1"}).status == 200
        assert call_store.get_call("short-1")["client"] == "112"
        assert webhook.push(**{**CONTACT, "phone": "708"}).json() == {}

    def test_event_and_rating_answer_an_empty_object(self, webhook: Webhook, call_store: Any) -> None:
        assert webhook.push(**EVENT).json() == {}
        rating = {"cmd": "rating", "callid": EVENT["callid"], "rating": "5", "phone": "79101234567", "user": "andy"}
        assert webhook.push(**rating).json() == {}
        call = call_store.get_call(EVENT["callid"])
        assert call["rating"] == 5
        assert call["live_state"] == "RINGING"


class TestBodies:
    def test_json_body(self, webhook: Webhook, call_store: Any) -> None:
        fields: dict[str, Any] = {**HISTORY, "duration": 124, "callid": "json-1"}
        assert webhook.push_json(**fields).status == 200
        assert call_store.get_call("json-1")["duration"] == 124

    def test_form_body_without_content_type_is_sniffed(self, webhook: Webhook, call_store: Any) -> None:
        body = urlencode({**HISTORY, "callid": "plain-1", "crm_token": CRM_TOKEN}).encode()
        assert webhook.raw(body, content_type=None).status == 200
        assert call_store.get_call("plain-1") is not None

    def test_json_body_with_an_odd_content_type_is_sniffed(self, webhook: Webhook) -> None:
        body = json.dumps({**CONTACT, "crm_token": CRM_TOKEN}).encode()
        assert webhook.raw(body, content_type="text/plain").status == 200

    def test_base64_form_body_as_api_gateway_sends_it(self, webhook: Webhook, webhook_function: LocalFunction) -> None:
        event = json.loads((EVENTS_DIR / "webhook-contact.json").read_text())
        assert event["isBase64Encoded"] is True
        # The sample carries the local stack's key; swap in this test's key, keeping the encoding.
        fields = dict(pair.split("=", 1) for pair in base64.b64decode(event["body"]).decode().split("&"))
        fields["crm_token"] = CRM_TOKEN
        event["body"] = base64.b64encode("&".join(f"{k}={v}" for k, v in fields.items()).encode()).decode()
        status, _, body = http_response(webhook_function.invoke(event))
        assert (status, body) == (200, b"{}")

    def test_unknown_fields_are_ignored(self, webhook: Webhook) -> None:
        assert webhook.push(**HISTORY, brand_new_field="x", wait="3", missedStatus="x").status == 200

    def test_enumerations_and_cmd_are_case_insensitive(self, webhook: Webhook, call_store: Any) -> None:
        answer = webhook.push(**{**HISTORY, "cmd": "HISTORY", "type": "IN", "status": "MISSED", "callid": "ci-1"})
        assert answer.status == 200
        assert call_store.get_call("ci-1")["outcome"] == "missed"
        assert webhook.push(**{**EVENT, "type": "accepted"}).status == 200

    def test_sample_events_are_accepted(self, webhook: Webhook, webhook_function: LocalFunction) -> None:
        """Every sample in events/ (the spec's example requests among them) is a valid push."""
        from pbxbridge.protocol.webhook import decode_body, read_push

        samples = sorted(EVENTS_DIR.glob("webhook-*.json"))
        assert len(samples) >= 8
        for path in samples:
            event = json.loads(path.read_text())
            fields = decode_body(event.get("body"), event["isBase64Encoded"], event["headers"].get("content-type"))
            assert fields["crm_token"] == "local-crm-token", path.name
            read_push(fields, "RU")  # raises on an invalid sample


class TestRejections:
    @pytest.mark.parametrize("token", [None, "", "wrong", CRM_TOKEN + "x", CRM_TOKEN[:-1]])
    def test_missing_or_wrong_key_is_401(self, webhook: Webhook, call_store: Any, token: str | None) -> None:
        answer = webhook.push(token=token, **HISTORY)
        assert (answer.status, answer.json()) == (401, INVALID_TOKEN)
        assert call_store.get_call(HISTORY["callid"]) is None

    def test_the_previous_key_is_accepted_during_a_rotation(self, webhook: Webhook) -> None:
        assert webhook.push(token=PREVIOUS_CRM_TOKEN, **HISTORY).status == 200

    def test_key_is_checked_before_the_command(self, webhook: Webhook) -> None:
        assert webhook.push(token="wrong", cmd="nonsense").status == 401

    @pytest.mark.parametrize("cmd", ["", "histories", "makeCall", "accounts"])
    def test_unknown_cmd_is_400(self, webhook: Webhook, cmd: str) -> None:
        answer = webhook.push(**{**HISTORY, "cmd": cmd})
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)

    @pytest.mark.parametrize(
        "change",
        [
            {"phone": "not a phone"},
            {"phone": ""},
            {"phone": "+7 910"},
            {"duration": "-1"},
            {"duration": "12s"},
            {"start": "2017-07-03 12:11:10"},
            {"start": "20171303T121110Z"},
            {"type": "sideways"},
            {"status": "Exploded"},
            {"user": ""},
            {"callid": "has space"},
            {"diversion": "abc"},
        ],
    )
    def test_malformed_field_is_400(self, webhook: Webhook, call_store: Any, change: dict[str, str]) -> None:
        answer = webhook.push(**{**HISTORY, **change})
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)
        assert call_store.get_call(HISTORY["callid"]) is None

    @pytest.mark.parametrize("missing", ["type", "status", "phone", "user", "start", "duration", "callid"])
    def test_missing_required_history_field_is_400(self, webhook: Webhook, missing: str) -> None:
        fields = {k: v for k, v in HISTORY.items() if k != missing}
        assert webhook.push(**fields).json() == INVALID_PARAMETERS

    @pytest.mark.parametrize("body", [b"\xff\xfe\x00garbage", b"cmd=x&" + b"&" * 300])
    def test_undecodable_body_is_400(self, webhook: Webhook, body: bytes) -> None:
        # Not text: API Gateway hands it over base64-encoded, and it is not UTF-8 underneath.
        answer = webhook.raw(body, content_type="application/octet-stream")
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)

    @pytest.mark.parametrize("body", [b"[1, 2]", b"{not json", b"hello"])
    def test_a_body_with_no_key_in_it_is_401(self, webhook: Webhook, body: bytes, log_output: io.StringIO) -> None:
        answer = webhook.raw(body, content_type="application/json")
        assert (answer.status, answer.json()) == (401, INVALID_TOKEN)
        # The spec's answer, but the log tells a broken body from a wrong key.
        assert "the body could not be read" in log_output.getvalue()

    def test_a_wrong_key_in_a_readable_body_is_logged_as_such(self, webhook: Webhook, log_output: io.StringIO) -> None:
        assert webhook.push(token="wrong", **CONTACT).status == 401
        logged = log_output.getvalue()
        assert '"reason":"invalid token"' in logged
        assert "could not be read" not in logged

    def test_null_is_no_value_of_a_known_field_and_ignored_in_an_unknown_one(self, webhook: Webhook) -> None:
        """The OpenAPI document has no null: a null ext is refused, a null in a field we do not know
        (the PBX adds fields over time) is ignored like the field itself."""
        base = {**HISTORY, "crm_token": CRM_TOKEN}
        refused = webhook.raw(json.dumps({**base, "ext": None}).encode(), content_type="application/json")
        assert (refused.status, refused.json()) == (400, INVALID_PARAMETERS)
        ignored = webhook.raw(json.dumps({**base, "brand_new": None}).encode(), content_type="application/json")
        assert (ignored.status, ignored.json()) == (200, {})

    @pytest.mark.parametrize(
        ("duration", "status"),
        [
            ("124", 200),
            (" 0124 ", 200),
            (124, 200),
            (124.0, 200),
            ("+124", 400),
            ("124.0", 400),
            ("1_24", 400),
            ("1000000001", 400),
        ],
    )
    def test_a_count_is_digits_or_a_json_number_and_nothing_else(
        self, webhook: Webhook, duration: object, status: int
    ) -> None:
        body = json.dumps({**HISTORY, "crm_token": CRM_TOKEN, "duration": duration}).encode()
        assert webhook.raw(body, content_type="application/json").status == status

    def test_a_mislabelled_form_is_read(self, webhook: Webhook) -> None:
        body = urlencode({**CONTACT, "crm_token": CRM_TOKEN}).encode()
        assert webhook.raw(body, content_type="application/json").status == 200

    def test_a_user_too_long_for_a_dynamodb_key_is_400_not_503(self, webhook: Webhook) -> None:
        answer = webhook.push(**{**EVENT, "user": "u" * 1015})
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)

    def test_body_over_64_kib_is_413_with_a_spec_body(self, webhook: Webhook) -> None:
        answer = webhook.push(**HISTORY, padding="x" * 70_000)
        assert (answer.status, answer.json()) == (413, INVALID_PARAMETERS)

    def test_invalid_base64_is_400(self, webhook_function: LocalFunction, webhook: Webhook) -> None:
        event = json.loads((EVENTS_DIR / "webhook-contact.json").read_text())
        event["body"] = "!!!not base64!!!"
        status, _, body = http_response(webhook_function.invoke(event))
        assert (status, json.loads(body)) == (400, INVALID_PARAMETERS)


class TestFailures:
    def test_a_push_that_cannot_be_stored_is_a_5xx(self, webhook: Webhook, aws: dict[str, str]) -> None:

        # Gone for this test only: the next test's fixture recreates the tables.
        boto3.client("dynamodb").delete_table(TableName=aws["CallsTable"])
        answer = webhook.push(**HISTORY)
        assert answer.status == 503
        assert answer.json() == {"error": "Service unavailable"}

    def test_an_unreachable_ssm_is_a_5xx(self, webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
        from pbxbridge.keys import ssm_client

        def refuse(**_: Any) -> None:
            raise ConnectionError("SSM is down")

        monkeypatch.setattr(ssm_client(), "get_parameters", refuse)
        assert webhook.push(**HISTORY).status == 503

    def test_a_contact_lookup_that_fails_is_answered_as_unknown(self, webhook: Webhook, aws: dict[str, str]) -> None:

        boto3.client("dynamodb").delete_table(TableName=aws["ContactsTable"])
        answer = webhook.push(**CONTACT)
        assert (answer.status, answer.body) == (200, b"{}")

    def test_an_unreadable_key_parameter_is_a_5xx_not_a_401(self, webhook: Webhook, moto_url: str) -> None:
        from local.aws import client

        client("ssm", moto_url).delete_parameter(Name="/pbxbridge/crm-token")
        assert webhook.push(**HISTORY).status == 503


class TestSecrets:
    """No key ever appears in a log line, an error body, a metric or a stored item."""

    def test_keys_never_leave_the_request(
        self,
        webhook: Webhook,
        call_store: Any,
        contact_store: Any,
        aws: dict[str, str],
        log_output: io.StringIO,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:

        tokens = [CRM_TOKEN, PREVIOUS_CRM_TOKEN, "attacker-guess-123"]
        seed_contact(contact_store, phone="+79101234567", contact_name="Known", responsible="andy")
        answers = [
            webhook.push(**HISTORY),
            webhook.push(**EVENT),
            webhook.push(**CONTACT),
            webhook.push(cmd="rating", callid=HISTORY["callid"], rating="5"),
            webhook.push(**{**CONTACT, "phone": "+7 999 000-00-00"}),
            webhook.push(token="attacker-guess-123", **HISTORY),
            webhook.push(token=PREVIOUS_CRM_TOKEN, **{**HISTORY, "phone": "bad"}),
            webhook.push(**{**HISTORY, "cmd": "what"}),
            webhook.push(**{**HISTORY, "duration": CRM_TOKEN}),  # a key in the wrong field
            webhook.push(**HISTORY, padding="y" * 70_000),
            webhook.push_json(**{**CONTACT, "phone": CRM_TOKEN}),
        ]
        stored = repr(call_store.get_call(HISTORY["callid"])) + repr(call_store.timeline(EVENT["callid"]))
        # The failure paths log tracebacks: those must not carry a key either.
        boto3.client("dynamodb").delete_table(TableName=aws["CallsTable"])
        boto3.client("dynamodb").delete_table(TableName=aws["ContactsTable"])
        answers += [webhook.push(**HISTORY), webhook.push(**CONTACT)]
        assert [answer.status for answer in answers[-2:]] == [503, 200]
        captured = capfd.readouterr()
        logs = log_output.getvalue()
        records = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
        bodies = b"".join(answer.body for answer in answers).decode()
        assert "push stored" in logs  # the logs were captured, not lost
        assert "push rejected" in logs
        assert "Traceback" in logs  # the failure paths were taken and logged
        assert '"Pushes"' in captured.out  # so were the metrics
        for token in tokens:
            for where, text in [
                ("logs", logs),
                ("stdout", captured.out),
                ("stderr", captured.err),
                ("records", records),
                ("stored", stored),
                ("bodies", bodies),
            ]:
                assert token not in text, f"a key leaked into {where}"


class TestLogs:
    def test_a_contact_is_named_by_its_metrics_line_and_logged_only_at_debug(
        self, webhook: Webhook, contact_store: Any, log_output: io.StringIO
    ) -> None:
        """`contact` is on the caller's critical path: its one line at INFO is the metrics line, which
        names the call; LogLevel=DEBUG adds the log line (with the call as its correlation id)."""
        import logging
        from contextlib import redirect_stdout

        seed_contact(contact_store, phone="+79101234567", contact_name="Known", responsible="andy")
        printed = io.StringIO()
        with redirect_stdout(printed):
            assert webhook.push(**CONTACT).status == 200
        blobs = [json.loads(line) for line in printed.getvalue().splitlines() if line.startswith('{"_aws"')]
        (blob,) = [blob for blob in blobs if "ContactHits" in blob]  # (a cold start's ColdStart has its own)
        assert blob["callid"] == CONTACT["callid"]
        dimensions = {name for d in blob["_aws"]["CloudWatchMetrics"] for names in d["Dimensions"] for name in names}
        assert "callid" not in dimensions
        assert "contact answered" not in log_output.getvalue()

        functions_logger = logging.getLogger("pbxbridge")
        level = functions_logger.level
        functions_logger.setLevel(logging.DEBUG)  # as POWERTOOLS_LOG_LEVEL=DEBUG would
        try:
            with redirect_stdout(io.StringIO()):
                assert webhook.push(**CONTACT).status == 200
        finally:
            functions_logger.setLevel(level)
        (line,) = [json.loads(line) for line in log_output.getvalue().splitlines() if "contact answered" in line]
        assert line["known"] is True
        assert line["correlation_id"] == CONTACT["callid"]
        assert line["level"] == "DEBUG"
