"""`cmd=webhook` pushes (newer tenants): through the template's handler with real API Gateway events,
the table's real change stream (moto's) into the stream function's logic, and the local stack's HTTP
server. `sipregs_error` is kept once and published as SipRegistrationFailed; any other type is kept
raw and logged; neither is ever refused for its type."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
import requests

from local.apigw import http_response
from local.event_schemas import registry_document
from local.lambdas import LocalFunction
from local.stack import LocalStack
from local.template import Template
from tests.conftest import CRM_TOKEN, Answer, Webhook, running_stack
from tests.test_call_events import Published, Streams

REPO = Path(__file__).resolve().parent.parent
SIPREGS: dict[str, Any] = {
    "cmd": "webhook",
    "type": "sipregs_error",
    "id": "sipregs-1",
    "data": {"user": "andy", "ext": "708", "reason": "registration expired"},
}
INVALID_PARAMETERS = {"error": "Invalid parameters"}
INVALID_TOKEN = {"error": "Invalid token"}


def kept(aws: dict[str, str]) -> list[dict[str, Any]]:
    """Every record in the table, as plain Python (a scan with a plain client: the test's view)."""
    from pbxbridge.storage.dynamodb import plain_item

    items = boto3.client("dynamodb").scan(TableName=aws["WebhookPushesTable"])["Items"]
    return sorted((plain_item(item) for item in items), key=lambda item: (item["push_type"], item["push_id"]))


def emf_blobs(printed: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in printed.splitlines() if line.startswith('{"_aws"')]


def metrics_of(blob: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def pushed(webhook: Webhook, *, as_json: bool = True, **fields: Any) -> tuple[Answer, dict[str, Any]]:
    """The answer, and the metrics line the invocation printed."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        answer = webhook.push_json(**fields) if as_json else webhook.push(**fields)
    # The push's own line (a cold start prints ColdStart on a line of its own).
    (blob,) = [blob for blob in emf_blobs(printed.getvalue()) if "Pushes" in metrics_of(blob)]
    return answer, blob


class TestSipregsError:
    def test_answered_with_an_empty_object_and_kept_once_whatever_the_repeats(
        self, webhook: Webhook, aws: dict[str, str]
    ) -> None:
        first, blob = pushed(webhook, **SIPREGS)
        assert (first.status, first.json(), first.headers["Content-Type"]) == (200, {}, "application/json")
        assert (blob["cmd"], blob["outcome"]) == ("webhook", "stored")
        assert {"Pushes", "SipRegistrationErrors"} <= metrics_of(blob)
        again, blob = pushed(webhook, **{**SIPREGS, "type": "SIPREGS_ERROR"})  # the same push, any case
        assert (again.status, again.json()) == (200, {})
        assert "DuplicatePushes" in metrics_of(blob)
        assert "SipRegistrationErrors" not in metrics_of(blob)  # one alarm per registration lost
        (record,) = kept(aws)
        assert (record["push_type"], record["push_id"]) == ("type#sipregs_error", "id#sipregs-1")
        assert (record["type"], record["id"]) == ("sipregs_error", "sipregs-1")
        assert json.loads(record["data"]) == SIPREGS["data"]
        assert "fields" not in record
        assert record["expires_at"] > 0
        assert CRM_TOKEN not in json.dumps(record)

    def test_a_form_push_keeps_its_data_fields_as_one_object(self, webhook: Webhook, aws: dict[str, str]) -> None:
        answer = webhook.push(
            cmd="webhook", type="sipregs_error", id="form-1", **{"data[user]": "mike", "data[ext]": "709"}
        )
        assert (answer.status, answer.json()) == (200, {})
        (record,) = kept(aws)
        assert json.loads(record["data"]) == {"user": "mike", "ext": "709"}

    def test_data_sent_as_json_text_in_a_form_is_read_as_the_object(
        self, webhook: Webhook, aws: dict[str, str]
    ) -> None:
        assert webhook.push(cmd="webhook", type="sipregs_error", id="form-2", data='{"user": "andy"}').status == 200
        assert json.loads(kept(aws)[0]["data"]) == {"user": "andy"}

    def test_the_sample_event_is_kept(self, webhook_function: LocalFunction, aws: dict[str, str]) -> None:
        event = json.loads((REPO / "events" / "webhook-sipregs-error.json").read_text())
        # The sample carries the local stack's key; this test's key is another.
        event["body"] = json.dumps({**json.loads(event["body"]), "crm_token": CRM_TOKEN})
        status, _, body = http_response(webhook_function.invoke(event))
        assert (status, json.loads(body)) == (200, {})
        assert [record["type"] for record in kept(aws)] == ["sipregs_error"]

    @pytest.mark.parametrize("token", [None, "", "wrong", CRM_TOKEN + "x"])
    def test_a_missing_or_wrong_key_is_401_and_nothing_is_kept(
        self, webhook: Webhook, aws: dict[str, str], token: str | None
    ) -> None:
        answer = webhook.push_json(token=token, **SIPREGS)
        assert (answer.status, answer.json()) == (401, INVALID_TOKEN)
        assert kept(aws) == []


class TestOtherTypes:
    def test_an_unknown_type_is_kept_raw_logged_and_answered_200(
        self, webhook: Webhook, aws: dict[str, str], log_output: io.StringIO
    ) -> None:
        push: dict[str, Any] = {
            "cmd": "webhook",
            "type": "trunk_down",
            "id": "t-1",
            "data": [1, 2],
            "trunk": {"name": "sip-1"},
        }
        answer, blob = pushed(webhook, **push)
        assert (answer.status, answer.json()) == (200, {})
        assert "UnknownWebhookPushes" in metrics_of(blob)
        (record,) = kept(aws)
        assert (record["push_type"], record["type"], record["id"]) == ("type#trunk_down", "trunk_down", "t-1")
        assert json.loads(record["data"]) == [1, 2]
        assert json.loads(record["fields"]) == {"trunk": {"name": "sip-1"}}  # no key, no cmd
        (line,) = [json.loads(x) for x in log_output.getvalue().splitlines() if "unknown type" in x]
        assert (line["level"], line["type"], line["id"], line["fields"]) == (
            "WARNING",
            "trunk_down",
            "t-1",
            ["data", "trunk"],
        )
        assert CRM_TOKEN not in log_output.getvalue()

    def test_an_untyped_push_without_an_id_is_kept_once_by_its_content(
        self, webhook: Webhook, aws: dict[str, str]
    ) -> None:
        push = {"cmd": "webhook", "type": "  ", "note": "something happened"}  # a blank type is no type
        for _ in range(2):
            assert webhook.push(**push).json() == {}
        assert webhook.push(**{**push, "note": "something else"}).json() == {}
        records = kept(aws)
        assert [r["push_type"] for r in records] == ["untyped", "untyped"]
        assert all(r["push_id"].startswith("sha256#") and "type" not in r and "id" not in r for r in records)
        assert sorted(json.loads(r["fields"])["note"] for r in records) == ["something else", "something happened"]

    def test_whatever_data_and_other_fields_hold_is_kept_as_it_came(
        self, webhook: Webhook, aws: dict[str, str]
    ) -> None:
        """DynamoDB refuses lone surrogates, empty map keys and deep nesting: kept as JSON text, they are
        never a reason to refuse a push."""
        odd = {
            "": [],
            "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            "half": "\ud800",
            "n": None,
        }
        body = '{"cmd": "webhook", "type": "sipregs_error", "id": "odd-1", "crm_token": "%s", "data": %s, "more": %s}'
        answer = webhook.raw((body % (CRM_TOKEN, json.dumps(odd), json.dumps(odd))).encode(), "application/json")
        assert (answer.status, answer.json()) == (200, {})
        (record,) = kept(aws)
        assert json.loads(record["data"]) == odd
        assert json.loads(record["fields"]) == {"more": odd}

    def test_a_type_named_untyped_is_not_taken_for_no_type(self, webhook: Webhook, aws: dict[str, str]) -> None:
        assert webhook.push(cmd="webhook", id="x").status == 200
        assert webhook.push(cmd="webhook", type="untyped", id="x").status == 200
        assert [r["push_type"] for r in kept(aws)] == ["type#untyped", "untyped"]

    @pytest.mark.parametrize(
        "change",
        [
            {"type": "bad\x00type"},
            {"type": "t" * 129},
            {"id": "i" * 201},
            {"id": "\x07"},
            {"type": None},
            {"type": {"nested": "object"}},
            {"id": ["a"]},
        ],
    )
    def test_what_cannot_be_a_records_key_is_400(
        self, webhook: Webhook, aws: dict[str, str], change: dict[str, Any]
    ) -> None:
        answer = webhook.push_json(**{**SIPREGS, **change})
        assert (answer.status, answer.json()) == (400, INVALID_PARAMETERS)
        assert kept(aws) == []

    def test_a_webhook_that_cannot_be_kept_is_a_5xx(self, webhook: Webhook, aws: dict[str, str]) -> None:
        boto3.client("dynamodb").delete_table(TableName=aws["WebhookPushesTable"])  # the next test recreates it
        assert webhook.push_json(**SIPREGS).status == 503


@pytest.fixture
def published(aws: dict[str, str]) -> tuple[Published, Callable[[list[dict[str, Any]]], Any]]:
    from pbxbridge.stream import StreamDependencies, StreamSettings, handle_stream

    sink = Published()
    deps = StreamDependencies(
        settings=StreamSettings(
            CALLS_TABLE=aws["CallsTable"],
            CONTACTS_TABLE=aws["ContactsTable"],
            WEBHOOK_PUSHES_TABLE=aws["WebhookPushesTable"],
            EVENT_BUS_NAME="calls",
            RECORDINGS_QUEUE_URL="queue",
        ),
        put_events=sink.put_events,
        send_recording=lambda body: None,
        contact=lambda phone: (None, None),
    )
    return sink, lambda records: handle_stream({"Records": records}, None, deps)


class TestSipRegistrationFailed:
    def test_published_once_from_the_change_stream_and_valid_against_its_schemas(
        self, webhook: Webhook, aws: dict[str, str], moto_url: str, published: tuple[Published, Any]
    ) -> None:
        sink, process = published
        for push in (SIPREGS, SIPREGS, {**SIPREGS, "id": "sipregs-2", "data": "text"}, {"cmd": "webhook", "type": "x"}):
            assert webhook.push_json(**push).status == 200
        answer = process(Streams(moto_url).records(aws["WebhookPushesTable"]))
        assert answer == {"batchItemFailures": []}
        assert sink.types() == ["SipRegistrationFailed", "SipRegistrationFailed"]  # the repeat and `x`: none
        first, second = sink.details("SipRegistrationFailed")
        assert first["id"] == "id#sipregs-1/SipRegistrationFailed"
        assert (first["pbx_id"], first["data"]) == ("sipregs-1", SIPREGS["data"])
        assert (second["pbx_id"], second["data"]) == ("sipregs-2", "text")
        schema = json.loads((REPO / "schemas" / "events" / "SipRegistrationFailed.json").read_text())
        registered = json.loads(
            Template().resources("AWS::EventSchemas::Schema")["SipRegistrationFailedEventSchema"]["Properties"][
                "Content"
            ]
        )
        assert registered == registry_document("SipRegistrationFailed", schema)
        for entry in sink.entries:
            detail = json.loads(entry["Detail"])
            jsonschema.validate(detail, schema, format_checker=jsonschema.FormatChecker())
            assert (entry["Source"], entry["DetailType"]) == ("pbxbridge", "SipRegistrationFailed")
            assert entry["Time"].isoformat().startswith(detail["occurred_at"][:19])

    def test_a_redelivered_record_publishes_the_same_id(
        self, webhook: Webhook, aws: dict[str, str], moto_url: str, published: tuple[Published, Any]
    ) -> None:
        sink, process = published
        webhook.push_json(**SIPREGS)
        records = Streams(moto_url).records(aws["WebhookPushesTable"])
        process(records)
        process(records)
        assert [d["id"] for d in sink.details("SipRegistrationFailed")] == ["id#sipregs-1/SipRegistrationFailed"] * 2


def test_the_sample_stream_event_publishes_sip_registration_failed() -> None:
    from pbxbridge.stream import StreamDependencies, StreamSettings, handle_stream

    sink = Published()
    settings = StreamSettings(
        CALLS_TABLE="pbxbridge-CallsTable",
        CONTACTS_TABLE="pbxbridge-ContactsTable",
        WEBHOOK_PUSHES_TABLE="pbxbridge-WebhookPushesTable",  # as the sample's stream ARN names it
        EVENT_BUS_NAME="calls",
        RECORDINGS_QUEUE_URL="queue",
    )
    deps = StreamDependencies(settings, sink.put_events, lambda body: None, lambda phone: (None, None))
    sample = json.loads((REPO / "events" / "stream-webhook-pushes-sipregs-error.json").read_text())
    assert handle_stream(sample, None, deps) == {"batchItemFailures": []}
    (detail,) = sink.details("SipRegistrationFailed")
    assert (detail["pbx_id"], detail["data"]["reason"]) == ("sipregs-5f1c2a", "registration expired")
    assert detail["occurred_at"] == "2026-11-27T20:59:52.104000Z"


class TestTemplate:
    def test_the_alarm_watches_the_metric_a_push_prints(self, webhook: Webhook) -> None:
        template = Template()
        alarm = template.resolve(template.body["Resources"]["SipRegistrationErrorsAlarm"]["Properties"])
        _, blob = pushed(webhook, **SIPREGS)
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert alarm["Namespace"] == directive["Namespace"]
        assert alarm["MetricName"] in metrics_of(blob)
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert set(dimensions) in [set(names) for names in directive["Dimensions"]]
        assert all(blob[name] == value for name, value in dimensions.items())
        assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
            "Sum",
            0,
            "GreaterThanThreshold",
        )
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == ["AlarmTopic"]

    def test_the_stream_function_reads_the_tables_stream(self) -> None:
        template = Template()
        (mapping,) = [
            m for m in template.resources("AWS::Lambda::EventSourceMapping").values()
            if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["WebhookPushesTable", "StreamArn"]}
        ]  # fmt: skip
        assert mapping["Properties"]["FunctionName"] == {"Ref": "StreamFunction"}
        assert template.functions()["StreamFunction"].environment["WEBHOOK_PUSHES_TABLE"] == "WebhookPushesTable"


# Through the local stack's HTTP server, as a PBX reaches it.


@pytest.fixture(scope="module")
def local(moto_url: str) -> Iterator[LocalStack]:
    with running_stack(moto_url, "e2e-key") as stack:
        yield stack


def test_the_local_stack_keeps_answers_and_refuses_as_the_lambda_does(local: LocalStack) -> None:
    table = local.tables["WebhookPushesTable"]
    body = {**SIPREGS, "crm_token": local.crm_token, "id": "e2e-sip-1"}
    for _ in range(2):
        answer = requests.post(local.webhook_url, json=body, timeout=10)
        assert (answer.status_code, answer.json()) == (200, {})
    unknown = {"cmd": "webhook", "type": "brand_new", "id": "e2e-new-1", "crm_token": local.crm_token, "what": "?"}
    assert requests.post(local.webhook_url, data=unknown, timeout=10).json() == {}
    wrong = requests.post(local.webhook_url, json={**body, "crm_token": "wrong"}, timeout=10)
    assert (wrong.status_code, wrong.json()) == (401, INVALID_TOKEN)
    bad = requests.post(local.webhook_url, json={**body, "type": "x\x01"}, timeout=10)
    assert (bad.status_code, bad.json()) == (400, INVALID_PARAMETERS)
    dynamodb = boto3.client("dynamodb", endpoint_url=local.moto_url)
    items = dynamodb.scan(TableName=table)["Items"]
    assert sorted(item["push_id"]["S"] for item in items) == ["id#e2e-new-1", "id#e2e-sip-1"]
