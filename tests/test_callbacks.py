"""Call-backs end to end on the embedded AWS: webhook pushes and reconciliation-created calls, through
the tables' real change streams (moto's), the stream function's logic, the call-backs table and its
own stream, to the events on the bus and `listCallbacks` on the commands function."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from local.lambdas import LocalFunction
from local.template import Template
from pbxbridge.domain.calls import Outcome
from pbxbridge.domain.reconciliation import HistoryCall
from tests.conftest import Webhook
from tests.test_call_events import Published, Streams

REPO = Path(__file__).resolve().parent.parent
PHONE = "79101234567"
E164 = "+79101234567"


@pytest.fixture
def streams(aws: dict[str, str], moto_url: str) -> Streams:
    return Streams(moto_url)


@pytest.fixture
def callback_store(aws: dict[str, str]) -> Any:
    from pbxbridge.storage.callbacks import DynamoCallbackStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    return DynamoCallbackStore(dynamodb_client(), aws["CallbacksTable"])


@pytest.fixture
def directory(aws: dict[str, str]) -> Any:
    """andy (ext 101) is the CRM's user crm-7; mike is not mapped."""
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    store = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    store.save_user(PbxUser(login="andy", ext="101"))
    store.save_user(PbxUser(login="mike", ext="102"))
    assert store.map_user("andy", "crm-7")
    return store


class Pipeline:
    """The stream function over every table's stream, in the order Lambda's pollers would see them."""

    def __init__(self, streams: Streams, aws: dict[str, str], contact_store: Any) -> None:
        from pbxbridge.stream import StreamDependencies, StreamSettings, callback_recorder, handle_stream

        self.sink = Published()
        self._streams, self._aws = streams, aws
        settings = StreamSettings(
            CALLS_TABLE=aws["CallsTable"],
            CONTACTS_TABLE=aws["ContactsTable"],
            CALLBACKS_TABLE=aws["CallbacksTable"],
            DIRECTORY_TABLE=aws["DirectoryTable"],
            EVENT_BUS_NAME="calls",
            RECORDINGS_QUEUE_URL="queue",
        )
        self.deps = StreamDependencies(
            settings=settings,
            put_events=self.sink.put_events,
            send_recording=lambda body: None,
            contact=lambda phone: (None, None),
            record_call=callback_recorder(settings, contact_store),
        )
        self._handle: Callable[[list[dict[str, Any]]], Any] = lambda records: (
            handle_stream({"Records": records}, None, self.deps) if records else {"batchItemFailures": []}
        )
        self.call_records: list[dict[str, Any]] = []

    def run(self) -> None:
        """Calls first, then the call-backs they changed."""
        self.call_records = self._streams.records(self._aws["CallsTable"])
        assert self._handle(self.call_records) == {"batchItemFailures": []}
        assert self._handle(self._streams.records(self._aws["CallbacksTable"])) == {"batchItemFailures": []}

    def replay_calls(self) -> None:
        """The calls' stream hands the last batch back (at least once delivery)."""
        assert self._handle(self.call_records) == {"batchItemFailures": []}
        assert self._handle(self._streams.records(self._aws["CallbacksTable"])) == {"batchItemFailures": []}

    def callback_events(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (entry["DetailType"], json.loads(entry["Detail"]))
            for entry in self.sink.entries
            if entry["DetailType"].startswith("Callback")
        ]


@pytest.fixture
def pipeline(streams: Streams, aws: dict[str, str], contact_store: Any, directory: Any) -> Pipeline:
    return Pipeline(streams, aws, contact_store)


def missed_call(
    webhook: Webhook,
    callid: str,
    start: str,
    user: str = "g_sales@tenant.ru",
    *,
    legs: tuple[str, ...] = ("andy", "mike"),
    phone: str = PHONE,
    status: str = "missed",
) -> None:
    for leg in legs:
        webhook.push(cmd="event", type="INCOMING", user=leg, phone=phone, callid=callid)
    for leg in legs:
        webhook.push(cmd="event", type="CANCELLED", user=leg, phone=phone, callid=callid)
    history = {"cmd": "history", "type": "in", "status": status, "user": user, "start": start, "duration": "0"}
    webhook.push(phone=phone, callid=callid, **history)


def call_back(webhook: Webhook, callid: str, start: str, user: str = "mike", *, answered: bool = True) -> None:
    """An outbound call as its history tells it (its live events are in the test below)."""
    status = "Success" if answered else "Busy"
    webhook.push(
        cmd="history", type="out", status=status, user=user, phone=PHONE, callid=callid, start=start, duration="30"
    )


def validate(events: list[tuple[str, dict[str, Any]]]) -> None:
    for kind, detail in events:
        schema = json.loads((REPO / "schemas" / "events" / f"{kind}.json").read_text())
        jsonschema.validate(detail, schema, format_checker=jsonschema.FormatChecker())


def test_a_missed_call_opens_a_call_back_for_the_responsible_and_a_call_back_closes_it(
    webhook: Webhook, pipeline: Pipeline, contact_store: Any, callback_store: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus
    from pbxbridge.domain.contacts import Contact
    from pbxbridge.stream import metrics

    # The contact's responsible is a CRM user; the widget's token is for a PBX login: andy.
    metrics.clear_metrics()
    contact_store.put_contacts([Contact(phone=E164, contact_name="ЗАО Рога и копыта", responsible="crm-7")])
    missed_call(webhook, "cb-m1", "20261127T100000Z")
    missed_call(webhook, "cb-m2", "20261127T100500Z")
    pipeline.run()
    (callback,) = callback_store.list_callbacks("andy", CallbackStatus.OPEN).callbacks
    assert (callback.id, callback.missed_count, callback.missed_callids) == (f"{E164}/cb-m1", 2, ("cb-m1", "cb-m2"))
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened"]
    assert set(metrics.metric_set) >= {"CallbacksOpened"}

    call_back(webhook, "cb-o1", "20261127T101000Z", answered=False)  # busy: an attempt
    call_back(webhook, "cb-o2", "20261127T103000Z")
    pipeline.run()
    assert callback_store.list_callbacks("andy", CallbackStatus.OPEN).callbacks == []
    (closed,) = callback_store.list_callbacks("andy", CallbackStatus.CLOSED).callbacks
    assert (closed.closed_by, closed.closed_callid, closed.attempts) == ("mike", "cb-o2", 1)
    assert closed.seconds_to_call_back == 30 * 60
    events = pipeline.callback_events()
    assert [kind for kind, _ in events] == ["CallbackOpened", "CallbackClosed"]
    closing = events[1][1]
    assert closing["id"] == f"{E164}/cb-m1/CallbackClosed"
    assert (closing["owner"], closing["closed_by"], closing["seconds_to_call_back"]) == ("andy", "mike", 1800)
    assert metrics.metric_set["TimeToCallBack"]["Value"] == [1800]
    validate(events)


def test_without_a_contact_the_group_that_was_rung_owns_it_and_duplicates_change_nothing(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus

    missed_call(webhook, "cb-m1", "20261127T100000Z")
    missed_call(webhook, "cb-m1", "20261127T100000Z")  # the PBX says it all twice
    pipeline.run()
    pipeline.replay_calls()  # and the stream delivers it twice
    (callback,) = callback_store.list_callbacks("g_sales", CallbackStatus.OPEN).callbacks
    assert callback.missed_count == 1
    opened = [detail["id"] for kind, detail in pipeline.callback_events()]
    assert opened == [f"{E164}/cb-m1/CallbackOpened"]


def test_a_responsible_no_pbx_user_stands_for_leaves_it_to_whoever_was_rung(
    webhook: Webhook, pipeline: Pipeline, contact_store: Any, callback_store: Any
) -> None:
    from pbxbridge.domain.contacts import Contact

    contact_store.put_contacts([Contact(phone=E164, contact_name="ЗАО Рога и копыта", responsible="crm-left")])
    missed_call(webhook, "cb-m1", "20261127T100000Z", user="g_sales@tenant.ru")
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert callback.owner == "g_sales"
    contact_store.put_contacts([Contact(phone="+79101234568", contact_name="ИП Иванов", responsible="101")])
    webhook.push(
        cmd="history",
        type="in",
        status="missed",
        user="mike",
        phone="79101234568",
        callid="cb-m2",
        start="20261127T100000Z",
        duration="0",
    )
    pipeline.run()
    (callback,) = callback_store.callbacks_of("+79101234568")
    assert callback.owner == "andy"  # the responsible given as andy's extension


def test_a_missed_call_from_an_unknown_number_belongs_to_the_user_it_rang_and_shows_in_their_widget(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any, contact_store: Any, directory: Any, aws: dict[str, str]
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.widget.api import callbacks_of

    # Nobody knows the number; it rang mike alone (as the PBX names him, with the tenant), and the
    # PBX's history names nobody.
    missed_call(webhook, "cb-u1", "20261127T100000Z", user="pbx", legs=("mike@tenant.ru",))
    # A group call that rang two of the group's members: the group's.
    missed_call(webhook, "cb-g1", "20261127T100000Z", legs=("andy", "mike"), phone="79101234568")
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.owner, callback.status) == ("mike", CallbackStatus.OPEN)
    (group,) = callback_store.callbacks_of("+79101234568")
    assert group.owner == "g_sales"
    (opened,) = [d for kind, d in pipeline.callback_events() if d["phone"] == E164]
    assert opened["owner"] == "mike"
    # mike's widget lists his own call-backs and his departments'.
    directory.save_user(PbxUser(login="mike", ext="102", groups=("sales",)))
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    listed = callbacks_of(
        "mike",
        "open",
        store=callback_store,
        contacts=contact_store.get_contacts,
        directory=lambda: DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"]).snapshot("RU"),
        region="RU",
    )["result"]["callbacks"]
    assert sorted((c["phone"], c["owner"]) for c in listed) == [(E164, "mike"), ("+79101234568", "g_sales")]


def test_a_missed_call_whose_ringing_legs_come_after_its_history_goes_to_the_user_it_rang(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus

    history = {"cmd": "history", "type": "in", "status": "missed", "user": "pbx", "duration": "0"}
    webhook.push(phone=PHONE, callid="cb-l1", start="20261127T100000Z", **history)
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert callback.owner == "unassigned"
    webhook.push(cmd="event", type="INCOMING", user="mike@tenant.ru", phone=PHONE, callid="cb-l1")
    webhook.push(cmd="event", type="CANCELLED", user="mike@tenant.ru", phone=PHONE, callid="cb-l1")
    pipeline.run()
    (callback,) = callback_store.list_callbacks("mike", CallbackStatus.OPEN).callbacks
    assert (callback.id, callback.missed_count) == (f"{E164}/cb-l1", 1)
    assert callback_store.list_callbacks("unassigned", CallbackStatus.OPEN).callbacks == []
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened"]  # opened once


def test_a_call_back_placed_in_the_second_of_the_missed_call_closes_it(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any
) -> None:
    # Both start in the same second; the call-back's id sorts before the missed call's.
    missed_call(webhook, "cb-m1", "20261127T100000Z", user="mike", legs=("mike",))
    call_back(webhook, "cb-a0", "20261127T100000Z", user="andy")
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status.value, callback.closed_callid, callback.seconds_to_call_back) == ("closed", "cb-a0", 0)
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackClosed"]


@pytest.mark.parametrize("status", ["Cancel", "NotFound"])
def test_an_inbound_call_the_caller_gave_up_on_opens_a_call_back_and_is_a_missed_call(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any, status: str
) -> None:
    missed_call(webhook, "cb-c1", "20261127T100000Z", user="pbx", legs=("mike",), status=status)
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.owner, callback.status.value, callback.missed_callids) == ("mike", "open", ("cb-c1",))
    published = pipeline.sink.types()
    assert "CallbackOpened" in published
    # Nobody answered an inbound call: CallMissed (version 2) says so, once, with the history's word.
    assert published.count("CallMissed") == 1
    outcome = {"Cancel": "cancelled", "NotFound": "not_found"}[status]
    assert [(d["outcome"], d["schema_version"]) for d in pipeline.sink.details("CallMissed")] == [(outcome, 2)]
    call_back(webhook, "cb-o1", "20261127T101000Z", user="mike")
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status.value, callback.closed_by) == ("closed", "mike")


def test_a_call_answered_while_ringing_closes_it_and_its_history_gives_the_exact_start(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any
) -> None:
    missed_call(webhook, "cb-m1", "20261127T100000Z", user="mike")
    pipeline.run()
    # The client calls again and andy picks up: closed at once, the start estimated by the event's arrival.
    webhook.push(cmd="event", type="INCOMING", user="andy", phone=PHONE, callid="cb-in2")
    webhook.push(cmd="event", type="ACCEPTED", user="andy", phone=PHONE, callid="cb-in2")
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.owner, callback.status.value, callback.closed_by) == ("mike", "closed", "andy")
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackClosed"]
    history = {"cmd": "history", "type": "in", "status": "Success", "user": "andy", "duration": "60"}
    webhook.push(phone=PHONE, callid="cb-in2", start="20261127T102000Z", **history)
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.closed_callid, callback.seconds_to_call_back) == ("cb-in2", 1200)
    assert len(pipeline.callback_events()) == 2  # corrected, not closed again


def reconciled(callid: str, direction: str, outcome: Outcome, start: datetime, user: str = "mike") -> HistoryCall:
    return HistoryCall(
        callid=callid,
        direction=direction,
        status=None,
        outcome=outcome,
        client=E164,
        client_raw=PHONE,
        user=user,
        pbx_user=user,
        started_at=start,
        duration=30 if outcome is Outcome.ANSWERED else 0,
        wait=5,
        via=None,
        link=None,
        rating=None,
    )


@pytest.fixture
def reconciliation(aws: dict[str, str]) -> Any:
    from pbxbridge.storage.dynamodb import batch_dynamodb_client
    from pbxbridge.storage.watermark import DynamoLedger

    return DynamoLedger(batch_dynamodb_client(), aws["CallsTable"], aws["SyncStateTable"])


def test_calls_only_reconciliation_found_open_and_close_call_backs(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any, reconciliation: Any
) -> None:
    now = datetime.now(tz=UTC)
    start = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    # Every push of the missed call was lost; reconciliation creates it complete.
    assert reconciliation.create_calls([reconciled("cb-r1", "in", Outcome.MISSED, start)], now) == 1
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status.value, callback.owner) == ("open", "mike")
    # The call back was lost too, and found later (an outbound call the CSV says was answered).
    later = start.replace(minute=20)
    assert reconciliation.create_calls([reconciled("cb-r2", "out", Outcome.ANSWERED, later, "andy")], now) == 1
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status.value, callback.closed_by, callback.seconds_to_call_back) == ("closed", "andy", 1200)
    validate(pipeline.callback_events())


def test_a_missed_call_found_after_the_answered_call_that_returned_it_never_opens(
    webhook: Webhook, pipeline: Pipeline, callback_store: Any, reconciliation: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus

    call_back(webhook, "cb-o1", "20261127T103000Z", user="andy")
    pipeline.run()
    assert callback_store.callbacks_of(E164) == []
    start = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    reconciliation.create_calls([reconciled("cb-r1", "in", Outcome.MISSED, start, "andy")], datetime.now(tz=UTC))
    pipeline.run()
    assert callback_store.list_callbacks("andy", CallbackStatus.OPEN).callbacks == []
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status.value, callback.closed_callid, callback.seconds_to_call_back) == ("closed", "cb-o1", 1800)
    # The same events as if the calls had come in order: opened, then closed.
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackClosed"]


def test_concurrent_missed_calls_with_one_number_all_count(callback_store: Any, aws: dict[str, str]) -> None:
    from pbxbridge.domain.callbacks import CallFact, CallKind, owner_by, record_call

    start = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    facts = [CallFact(f"cb-c{i}", E164, CallKind.MISSED, start.replace(minute=i), "andy") for i in range(8)]
    owner = owner_by(lambda phone: None)
    errors: list[BaseException] = []

    def record(fact: CallFact) -> None:
        try:
            record_call(callback_store, fact, owner)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(fact,)) for fact in facts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (callback,) = callback_store.callbacks_of(E164)
    assert callback.missed_count == 8
    assert callback.missed_callids == tuple(fact.callid for fact in facts)  # in start order
    assert callback.first_missed_at == start
    assert callback_store.ledger(E164).version >= 8


def test_list_callbacks_through_the_commands_function(
    aws: dict[str, str], template: Template, callback_store: Any
) -> None:
    from pbxbridge.domain.callbacks import CallFact, CallKind, owner_by, record_call

    owner = owner_by(lambda phone: None)
    for i in range(5):
        phone = f"+7910123450{i}"
        record_call(
            callback_store,
            CallFact(f"l-{i}", phone, CallKind.MISSED, datetime(2026, 11, 27, 10, i, tzinfo=UTC), "andy"),
            owner,
        )
    record_call(
        callback_store,
        CallFact("l-x", "+79101234500", CallKind.ANSWERED, datetime(2026, 11, 27, 11, tzinfo=UTC), "andy"),
        owner,
    )
    commands = LocalFunction(template.functions()["CommandsFunction"])
    seen, cursor = [], None
    for _ in range(5):
        payload = {"cmd": "listCallbacks", "owner": "andy", "limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = commands.invoke(payload)
        assert answer["ok"], answer
        seen += [callback["missed_callids"][0] for callback in answer["result"]["callbacks"]]
        cursor = answer["result"]["cursor"]
        if not cursor:
            break
    assert seen == ["l-4", "l-3", "l-2", "l-1"]  # open ones, the most recently missed first, each once
    closed = commands.invoke({"cmd": "listCallbacks", "owner": "andy", "status": "closed"})["result"]["callbacks"]
    assert [(c["id"], c["closed_callid"], c["seconds_to_call_back"]) for c in closed] == [
        ("+79101234500/l-0", "l-x", 3600)
    ]
    assert commands.invoke({"cmd": "listCallbacks", "owner": "mike"})["result"] == {"callbacks": [], "cursor": None}
    for bad in (
        {"cmd": "listCallbacks"},
        {"cmd": "listCallbacks", "owner": "andy", "status": "pending"},
        {"cmd": "listCallbacks", "owner": "andy", "cursor": "%%%"},
        {
            "cmd": "listCallbacks",
            "owner": "mike",
            "cursor": commands.invoke({"cmd": "listCallbacks", "owner": "andy", "limit": 1})["result"]["cursor"],
        },
    ):
        assert commands.invoke(bad)["error"]["code"] == "invalid_request", bad


def test_list_callbacks_takes_any_form_of_a_user_the_directory_resolves(
    aws: dict[str, str], template: Template, callback_store: Any, directory: Any
) -> None:
    from pbxbridge.domain.callbacks import CallFact, CallKind, owner_by, record_call
    from pbxbridge.domain.directory import PbxUser

    directory.save_user(PbxUser(login="mike", ext="102", telnum="+79261234567"))
    owner = owner_by(lambda phone: None)
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    for callid, phone, rung in (
        ("f-1", "+79101234501", "mike"),
        ("f-2", "+79101234502", "g_sales"),
        ("f-3", E164, None),
    ):
        record_call(callback_store, CallFact(callid, phone, CallKind.MISSED, start, rung), owner)
    commands = LocalFunction(template.functions()["CommandsFunction"])

    def listed(owner: str) -> list[str]:
        answer = commands.invoke({"cmd": "listCallbacks", "owner": owner})
        assert answer["ok"], answer
        return [c["id"] for c in answer["result"]["callbacks"]]

    for form in ("mike", "mike@tenant.ru", "MIKE", "102", "+7 926 123-45-67", "89261234567"):
        assert listed(form) == ["+79101234501/f-1"], form
    for form in ("g_sales", "g_sales@tenant.ru"):
        assert listed(form) == ["+79101234502/f-2"], form
    assert listed("unassigned") == [f"{E164}/f-3"]
    assert listed("nobody") == []


def test_the_sample_stream_event_publishes_callback_closed() -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from pbxbridge.stream import StreamDependencies, StreamSettings, handle_stream, metrics

    sink = Published()
    deps = StreamDependencies(
        settings=StreamSettings(
            CALLS_TABLE="pbxbridge-CallsTable",
            CONTACTS_TABLE="pbxbridge-ContactsTable",
            CALLBACKS_TABLE="pbxbridge-CallbacksTable",
            EVENT_BUS_NAME="calls",
            RECORDINGS_QUEUE_URL="queue",
        ),
        put_events=sink.put_events,
        send_recording=lambda body: None,
        contact=lambda phone: (None, None),
    )
    metrics.clear_metrics()
    sample = json.loads((REPO / "events" / "stream-callbacks-closed.json").read_text())
    sink.fail = True  # the bus refuses: the record comes back, and nothing is counted yet
    with pytest.raises(BatchProcessingError):
        handle_stream(sample, None, deps)
    assert "CallbacksClosed" not in metrics.metric_set
    sink.fail = False
    assert handle_stream(sample, None, deps) == {"batchItemFailures": []}
    assert sink.types() == ["CallbackClosed"]
    closed = sink.details("CallbackClosed")[0]
    assert (closed["closed_by"], closed["seconds_to_call_back"], closed["attempts"]) == ("mike", 1800, 1)
    assert sink.entries[0]["Time"] == datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
    assert (metrics.metric_set["CallbacksClosed"]["Value"], metrics.metric_set["TimeToCallBack"]["Value"]) == (
        [1.0],
        [1800.0],
    )
    assert "CallbacksOpened" not in metrics.metric_set
    validate([("CallbackClosed", closed)])


@pytest.mark.parametrize(
    ("reasons", "lost_the_race"),
    [
        (["ConditionalCheckFailed", "None"], True),
        (["None", "TransactionConflict"], True),
        (["None", "ValidationError"], False),  # an item too large: rereading cannot fix it
        (["ThrottlingError"], False),
    ],
)
def test_only_a_lost_race_is_retried_any_other_cancelled_transaction_is_an_error(
    reasons: list[str], lost_the_race: bool
) -> None:
    from botocore.exceptions import ClientError

    from pbxbridge.domain.callbacks import Ledger
    from pbxbridge.storage.callbacks import DynamoCallbackStore
    from pbxbridge.storage.dynamodb import StoreUnavailableError

    class Cancelling:
        def transact_write_items(self, **request: Any) -> None:
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}}
            raise ClientError({**error, "CancellationReasons": [{"Code": c} for c in reasons]}, "TransactWriteItems")

    store = DynamoCallbackStore(Cancelling(), "CallbacksTable")
    if lost_the_race:
        assert store.save(Ledger(phone=E164, version=2), 1, []) is False
    else:
        with pytest.raises(StoreUnavailableError, match="TransactionCanceledException"):
            store.save(Ledger(phone=E164, version=2), 1, [])


# The PBX's own verdict on a missed call (crmapi/v1's `missed_status`), through reconciliation on v1.

SIM_KEY = "callbacks-pbx-key"


@dataclass
class V1Pbx:
    sim: Any
    history: Any  # the v1 client reconciliation reads

    def reconcile(self, ledger: Any, start: datetime, end: datetime) -> dict[str, Any]:
        """A backfill run of the real entry point over [start, end), as the daily re-read is."""
        from pbxbridge.domain.reconciliation import Reconciler
        from pbxbridge.history_sync import run_sync

        reconciler = Reconciler(history=self.history, ledger=ledger, region="RU")
        return run_sync({"start": start.isoformat(), "end": end.isoformat()}, reconciler=reconciler)


@pytest.fixture
def pbx_v1(aws: dict[str, str], webhook_function: LocalFunction) -> Iterator[V1Pbx]:
    """The simulator pushing to the webhook through a real HTTP server, and a v1 client to it."""
    from local.aws import LOOPBACK
    from local.pbx_simulator import PbxSimulator
    from local.server import ApiGatewayServer
    from pbxbridge.pbx import V1PbxClient
    from tests.conftest import CRM_TOKEN

    api = ApiGatewayServer((LOOPBACK, 0), [webhook_function])
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    sim = PbxSimulator(token=SIM_KEY, crm_url=api.url + "/pbx", crm_token=CRM_TOKEN, seed=3)
    server = sim.serve()
    with V1PbxClient(server.v1_url, SIM_KEY, read_timeout=5, backoff=0.01) as history:
        yield V1Pbx(sim, history)
    server.stop()
    api.shutdown()
    api.server_close()


def stored(calls: Any, callid: str) -> dict[str, Any]:
    call = calls.get_call(callid)
    assert call is not None
    return dict(call)


def closings(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [detail for kind, detail in pipeline.callback_events() if kind == "CallbackClosed"]


def test_the_pbx_saying_a_missed_call_was_called_back_closes_its_call_back_once(
    pbx_v1: V1Pbx, pipeline: Pipeline, callback_store: Any, reconciliation: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus, CloseReason
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.stream import metrics

    calls = DynamoCallStore(dynamodb_client(), pipeline.deps.settings.calls_table, "unused")
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=3)
    missed = pbx_v1.sim.play_inbound(PHONE, answered_by=None, start=start)
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert callback.status is CallbackStatus.OPEN

    # Reconciliation asks v1 for its verdict: nobody has called back yet.
    window = (start - timedelta(minutes=1), start + timedelta(minutes=1))
    report = pbx_v1.reconcile(reconciliation, *window)
    assert (report["merged"], report["verdicts_updated"]) == (1, 0)
    reads = [r for r in pbx_v1.sim.v1_requests_seen if r["route"] == "/history/json"]
    assert reads
    assert all(r["query"].get("process_missed") == "1" for r in reads)
    assert stored(calls, missed)["missed_status"] == "3"
    pipeline.run()
    assert callback_store.callbacks_of(E164)[0].status is CallbackStatus.OPEN

    # A manager called back; every push of that call was lost. The daily re-read of the missed
    # call's window brings the PBX's new verdict: 2, we called back.
    pbx_v1.sim.drop_rate = 1.0
    our_call = pbx_v1.sim.play_outbound("mike", PHONE, start=start + timedelta(minutes=30))
    pbx_v1.sim.drop_rate = 0.0
    metrics.clear_metrics()
    report = pbx_v1.reconcile(reconciliation, *window)
    assert (report["already_reconciled"], report["verdicts_updated"]) == (1, 1)
    assert stored(calls, missed)["missed_status"] == "2"
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status, callback.closed_reason, callback.pbx_missed_status) == (
        CallbackStatus.CLOSED,
        CloseReason.PBX_CALLED_BACK,
        2,
    )
    assert callback.closed_callid == missed
    (closed,) = closings(pipeline)
    assert (closed["reason"], closed["pbx_missed_status"], closed["closed_callid"]) == ("pbx_called_back", 2, missed)
    assert "TimeToCallBack" not in metrics.metric_set  # the PBX does not say when: no time to call back
    validate(pipeline.callback_events())

    # Redelivered, read again: nothing more.
    pipeline.replay_calls()
    assert pbx_v1.reconcile(reconciliation, *window)["verdicts_updated"] == 0
    pipeline.run()
    assert len(closings(pipeline)) == 1

    # Reconciliation then finds the call-back itself: the answered call is the better evidence and
    # the record says so, but the call-back was closed once.
    pbx_v1.reconcile(reconciliation, start + timedelta(minutes=29), start + timedelta(minutes=31))
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.closed_reason, callback.closed_callid, callback.closed_by) == (
        CloseReason.ANSWERED,
        our_call,
        "mike",
    )
    assert len(closings(pipeline)) == 1
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackClosed"]


def test_a_call_back_an_answered_call_closed_stays_closed_whatever_the_pbx_says(
    pbx_v1: V1Pbx, webhook: Webhook, pipeline: Pipeline, callback_store: Any, reconciliation: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus, CloseReason

    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=3)
    pbx_v1.sim.play_inbound(PHONE, answered_by=None, start=start)
    # Our answered call-back reached us; the PBX's verdict does not count it (3: nobody called back).
    call_back(webhook, "cb-ours", (start + timedelta(minutes=10)).strftime("%Y%m%dT%H%M%SZ"), user="andy")
    pipeline.run()
    pbx_v1.reconcile(reconciliation, start - timedelta(minutes=1), start + timedelta(minutes=1))
    pipeline.run()
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status, callback.closed_reason, callback.closed_callid) == (
        CallbackStatus.CLOSED,
        CloseReason.ANSWERED,
        "cb-ours",
    )
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackClosed"]
    assert closings(pipeline)[0]["reason"] == "answered"


def test_an_outbound_push_with_missed_status_2_counts_as_a_call_back_attempt(
    pbx_v1: V1Pbx, pipeline: Pipeline, callback_store: Any
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=1)
    pbx_v1.sim.play_inbound(PHONE, answered_by=None, start=start)
    attempt = pbx_v1.sim.play_outbound("mike", PHONE, answered=False, start=start + timedelta(minutes=5))
    pipeline.run()
    calls = DynamoCallStore(dynamodb_client(), pipeline.deps.settings.calls_table, "unused")
    assert stored(calls, attempt)["missed_status"] == "2"  # the simulator pushed it, as live PBXs do
    (callback,) = callback_store.callbacks_of(E164)
    assert (callback.status, callback.attempts) == (CallbackStatus.OPEN, 1)
