"""Call events from the tables' real change streams (moto's), through the stream function's logic."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local.aws import client
from pbxbridge.call_events import EVENT_TYPES, schemas
from tests.conftest import CRM_TOKEN, Webhook

REPO = Path(__file__).resolve().parent.parent
CALLID = "ev-1"


class Streams:
    """Reads a table's stream from where the last read ended, as Lambda's event source mapping does."""

    def __init__(self, moto_url: str) -> None:
        self._dynamodb = client("dynamodb", moto_url)
        self._streams = client("dynamodbstreams", moto_url)
        self._iterators: dict[str, str] = {}

    def records(self, table: str) -> list[dict[str, Any]]:
        arn = self._dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        if arn not in self._iterators:
            shard = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
            self._iterators[arn] = self._streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        answer = self._streams.get_records(ShardIterator=self._iterators[arn])
        self._iterators[arn] = answer["NextShardIterator"]
        return [{**record, "eventSourceARN": arn} for record in answer["Records"]]


@pytest.fixture
def streams(aws: dict[str, str], moto_url: str) -> Streams:
    return Streams(moto_url)


class Published:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.recordings: list[dict[str, Any]] = []
        self.fail = False

    def put_events(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.fail:
            return {"FailedEntryCount": len(entries), "Entries": [{"ErrorCode": "InternalFailure"}] * len(entries)}
        self.entries.extend(entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(entries))]}

    def types(self) -> list[str]:
        return [entry["DetailType"] for entry in self.entries]

    def details(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(e["Detail"]) for e in self.entries if e["DetailType"] == kind]


@pytest.fixture
def published(aws: dict[str, str], contact_store: Any) -> tuple[Published, Callable[[list[dict[str, Any]]], Any]]:
    from pbxbridge.stream import StreamDependencies, StreamSettings, handle_stream

    sink = Published()

    def contact(phone: str) -> tuple[str | None, str | None]:
        found = contact_store.get_contact(phone)
        return (found.contact_name, found.responsible) if found else (None, None)

    deps = StreamDependencies(
        settings=StreamSettings(
            CALLS_TABLE=aws["CallsTable"],
            CONTACTS_TABLE=aws["ContactsTable"],
            EVENT_BUS_NAME="calls",
            RECORDINGS_QUEUE_URL="queue",
        ),
        put_events=sink.put_events,
        send_recording=lambda body: sink.recordings.append(json.loads(body)),
        contact=contact,
    )
    return sink, lambda records: handle_stream({"Records": records}, None, deps)


def push_group_call(webhook: Webhook, *, answered: bool) -> None:
    common = {"phone": "79101234567", "callid": CALLID}
    for user in ("andy", "mike"):
        webhook.push(cmd="event", type="INCOMING", user=user, **common)
    if answered:
        webhook.push(cmd="event", type="ACCEPTED", user="andy", **common)
        webhook.push(cmd="event", type="INCOMING", user="andy", **common)  # late and duplicated
        webhook.push(cmd="event", type="CANCELLED", user="mike", **common)
        webhook.push(cmd="event", type="COMPLETED", user="andy", **common)
    else:
        for user in ("andy", "mike"):
            webhook.push(cmd="event", type="CANCELLED", user=user, **common)
    history = {
        "cmd": "history",
        "type": "in",
        "status": "Success" if answered else "missed",
        "user": "andy" if answered else "pbx",
        "start": "20261127T100000Z",
        "duration": "42",
        **common,
        **({"link": "https://tenant.example.ru/rec/ev-1.mp3"} if answered else {}),
    }
    webhook.push(**history)
    webhook.push(**history)  # the PBX says it twice


def test_an_answered_call_is_published_once_per_transition(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str], contact_store: Any
) -> None:
    from pbxbridge.domain.contacts import Contact

    contact_store.put_contacts([Contact(phone="+79101234567", contact_name="ЗАО Рога и копыта", responsible="andy")])
    sink, process = published
    push_group_call(webhook, answered=True)
    answer = process(streams.records(aws["CallsTable"]))
    assert answer == {"batchItemFailures": []}
    assert sorted(sink.types()) == ["CallAnswered", "CallEnded", "CallRinging"]
    ringing = sink.details("CallRinging")[0]
    assert (ringing["contact_name"], ringing["responsible"], ringing["client"]) == (
        "ЗАО Рога и копыта",
        "andy",
        "+79101234567",
    )
    assert sink.details("CallEnded")[0]["outcome"] == "answered"
    assert sink.recordings == [
        {"callid": CALLID, "link": "https://tenant.example.ru/rec/ev-1.mp3", "started_at": "2026-11-27T10:00:00Z"}
    ]
    assert all(entry["Source"] == "pbxbridge" and entry["EventBusName"] == "calls" for entry in sink.entries)
    assert CRM_TOKEN not in json.dumps(sink.entries, default=str)


def test_a_missed_call_is_decided_by_history_not_by_cancelled_legs(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str]
) -> None:
    sink, process = published
    common = {"phone": "79101234567", "callid": CALLID}
    for user in ("andy", "mike"):
        webhook.push(cmd="event", type="INCOMING", user=user, **common)
        webhook.push(cmd="event", type="CANCELLED", user=user, **common)
    process(streams.records(aws["CallsTable"]))
    assert sink.types() == ["CallRinging"]
    push_group_call(webhook, answered=False)
    process(streams.records(aws["CallsTable"]))
    assert sorted(sink.types()) == ["CallEnded", "CallMissed", "CallRinging"]
    assert sink.details("CallMissed")[0]["id"] == f"{CALLID}/CallMissed"
    assert sink.recordings == []


def test_redelivered_records_publish_the_same_ids(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str]
) -> None:
    sink, process = published
    push_group_call(webhook, answered=True)
    records = streams.records(aws["CallsTable"])
    process(records)
    first = [json.loads(entry["Detail"])["id"] for entry in sink.entries]
    sink.entries.clear()
    process(records)  # the stream hands the batch back (a retry): same events, same ids
    assert [json.loads(entry["Detail"])["id"] for entry in sink.entries] == first


def test_every_published_event_validates_against_its_schema(
    webhook: Webhook,
    streams: Streams,
    published: tuple[Published, Any],
    aws: dict[str, str],
    call_store: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pbxbridge.settings import webhook_settings
    from pbxbridge.webhook import default_dependencies

    sink, process = published
    monkeypatch.setenv("SCENARIO_MISSED_CALL_LEADS", "true")
    webhook_settings.cache_clear()
    default_dependencies.cache_clear()
    push_group_call(webhook, answered=False)
    call_store.recording_archived(CALLID, "recordings/2026/11/27/ev-1.mp3", 1234)
    process(streams.records(aws["CallsTable"]) + streams.records(aws["ContactsTable"]))
    assert set(sink.types()) == {"CallRinging", "CallEnded", "CallMissed", "CallRecorded", "LeadCreated"}
    import jsonschema

    kept = {path.stem: path.read_text() for path in (REPO / "schemas" / "events").glob("*.json")}
    assert kept == schemas(), "schemas/events is stale: run `make openapi`"
    for entry in sink.entries:
        # Against the documented schema files, with a validator that is not the models that made them.
        schema = json.loads(kept[entry["DetailType"]])
        jsonschema.validate(json.loads(entry["Detail"]), schema, format_checker=jsonschema.FormatChecker())
    assert set(EVENT_TYPES) == set(kept)
    lead = sink.details("LeadCreated")[0]
    assert (lead["phone"], lead["created_by"]) == ("+79101234567", "missed_call")


def test_a_publish_that_fails_is_retried_from_that_record(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str]
) -> None:
    sink, process = published
    webhook.push(cmd="event", type="INCOMING", user="andy", phone="79101234567", callid=CALLID)
    records = streams.records(aws["CallsTable"])
    sink.fail = True
    answer = process(records)
    ringing = next(r for r in records if "rang_at" in r["dynamodb"].get("NewImage", {}))
    # The record whose events could not be published is reported, so the stream retries from it.
    assert answer["batchItemFailures"] == [{"itemIdentifier": ringing["dynamodb"]["SequenceNumber"]}]
    sink.fail = False
    assert process(records) == {"batchItemFailures": []}
    assert sink.types() == ["CallRinging"]


def test_the_sample_stream_event_publishes_call_answered(published: tuple[Published, Any]) -> None:
    sink, process = published
    sample = json.loads((REPO / "events" / "stream-calls-answered.json").read_text())
    assert process(sample["Records"]) == {"batchItemFailures": []}
    assert sink.types() == ["CallAnswered"]
    assert sink.details("CallAnswered")[0]["answered_by"] == "andy"


@pytest.mark.parametrize(
    ("status", "outcome"), [("Cancel", "cancelled"), ("NotFound", "not_found"), ("missed", "missed")]
)
def test_an_inbound_call_nobody_answered_is_missed_whatever_the_history_calls_it(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str], status: str, outcome: str
) -> None:
    sink, process = published
    common = {"phone": "79101234567", "callid": CALLID}
    webhook.push(cmd="event", type="INCOMING", user="andy", **common)
    webhook.push(cmd="event", type="CANCELLED", user="andy", **common)
    history = {"cmd": "history", "type": "in", "status": status, "user": "andy", "start": "20261127T100000Z"}
    webhook.push(**history, duration="0", **common)
    webhook.push(**history, duration="0", **common)  # the PBX says it twice
    process(streams.records(aws["CallsTable"]))
    assert sorted(sink.types()) == ["CallEnded", "CallMissed", "CallRinging"]  # once each
    (missed,) = sink.details("CallMissed")
    assert (missed["outcome"], missed["schema_version"], missed["direction"]) == (outcome, 2, "in")
    assert sink.details("CallEnded")[0]["outcome"] == outcome


@pytest.mark.parametrize("status", ["Cancel", "NotFound", "Busy", "NotAvailable"])
def test_an_outbound_call_the_client_did_not_answer_is_not_a_missed_call(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str], status: str
) -> None:
    sink, process = published
    common = {"phone": "79101234567", "callid": CALLID}
    webhook.push(cmd="event", type="OUTGOING", user="andy", **common)
    webhook.push(
        cmd="history", type="out", status=status, user="andy", start="20261127T100000Z", duration="0", **common
    )
    process(streams.records(aws["CallsTable"]))
    assert sorted(sink.types()) == ["CallEnded", "CallRinging"]
    ringing = sink.details("CallRinging")[0]
    assert (ringing["rung_user"], ringing["rung_login"], ringing["rung_ext"]) == (None, None, None)  # the client rang


def test_call_ringing_says_who_is_rung_with_the_extension_from_the_push(
    webhook: Webhook, streams: Streams, published: tuple[Published, Any], aws: dict[str, str]
) -> None:
    sink, process = published
    common = {"phone": "79101234567", "callid": CALLID}
    # A group call: andy's leg starts ringing first (with his extension), mike's after, without one.
    webhook.push(cmd="event", type="INCOMING", user="andy@tenant.example.ru", ext="708", **common)
    webhook.push(cmd="event", type="INCOMING", user="mike@tenant.example.ru", **common)
    webhook.push(cmd="event", type="INCOMING", user="andy@tenant.example.ru", ext="708", **common)  # again
    process(streams.records(aws["CallsTable"]))
    assert sink.types() == ["CallRinging"]  # once per call, for the leg that started it
    ringing = sink.details("CallRinging")[0]
    assert (ringing["rung_user"], ringing["rung_login"], ringing["rung_ext"]) == (
        "andy@tenant.example.ru",
        "andy",
        "708",
    )
    assert ringing["schema_version"] == 1  # fields added: the meaning is the same


def test_a_call_stored_before_its_first_leg_was_kept_still_names_its_one_leg() -> None:
    from pbxbridge.call_events import call_events

    old = {"callid": "c", "legs_rang": ["andy@tenant.example.ru"], "direction": "in"}
    new = {**old, "rang_at": "2026-11-27T10:00:00Z"}
    (ringing,) = list(call_events(old, new))
    assert ringing.model_dump(include={"rung_user", "rung_login", "rung_ext"}) == {
        "rung_user": "andy@tenant.example.ru",
        "rung_login": "andy",
        "rung_ext": None,
    }
    both = {**new, "legs_rang": ["andy", "mike"]}  # which rang first is unknown: nobody named
    assert next(iter(call_events(old, both))).model_dump(include={"rung_user"}) == {"rung_user": None}
