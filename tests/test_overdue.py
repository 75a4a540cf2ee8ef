"""Overdue call-backs: when one is due (business time, night, weekend, no calendar), and the checker
through its Lambda handler against the embedded DynamoDB: once per call-back, whatever the runs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from local.aws import client
from local.lambdas import LocalFunction
from local.template import Template
from pbxbridge.domain.callbacks import Callback, CallbackStatus
from pbxbridge.domain.overdue import DEFAULT_SLA, Marked, due_at, escalate_overdue
from pbxbridge.domain.working_time import WorkingCalendar
from tests.conftest import Webhook
from tests.test_call_events import Streams
from tests.test_callbacks import E164, REPO, Pipeline, call_back, missed_call

MSK = timedelta(hours=3)
OFFICE = WorkingCalendar.parse("Europe/Moscow;mon-fri 09:00-18:00;holidays 2027-01-01")


def msk(text: str) -> datetime:
    """A Moscow wall time as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC) - MSK


class TestDueAt:
    def test_without_a_calendar_it_is_wall_time(self) -> None:
        assert due_at(msk("2026-12-05T03:00"), DEFAULT_SLA, None) == msk("2026-12-05T03:15")

    def test_within_working_hours_it_is_the_sla_later(self) -> None:
        assert due_at(msk("2026-12-01T12:00"), DEFAULT_SLA, OFFICE) == msk("2026-12-01T12:15")

    def test_a_call_missed_at_night_is_judged_from_the_next_opening(self) -> None:
        assert due_at(msk("2026-12-02T02:00"), DEFAULT_SLA, OFFICE) == msk("2026-12-02T09:15")

    def test_the_sla_runs_over_the_weekend_only_in_working_hours(self) -> None:
        # Friday 17:55: five minutes that day, ten on Monday.
        assert due_at(msk("2026-12-04T17:55"), DEFAULT_SLA, OFFICE) == msk("2026-12-07T09:10")
        assert due_at(msk("2026-12-05T11:00"), DEFAULT_SLA, OFFICE) == msk("2026-12-07T09:15")

    def test_a_holiday_counts_nothing(self) -> None:
        # Thursday 31 December 17:50: ten minutes; 1 January (Friday) is a holiday; then the weekend.
        assert due_at(msk("2026-12-31T17:50"), DEFAULT_SLA, OFFICE) == msk("2027-01-04T09:05")

    def test_business_time_is_never_shorter_than_wall_time(self) -> None:
        start = msk("2026-12-01T08:00")
        for minutes in range(0, 24 * 60 * 7, 97):
            moment = start + timedelta(minutes=minutes)
            due = due_at(moment, DEFAULT_SLA, OFFICE)
            assert due is not None
            assert due >= moment + DEFAULT_SLA
            assert OFFICE.business_time_between(moment, due) == DEFAULT_SLA


class _Store:
    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks
        self.asked: list[datetime] = []
        self.marked: list[tuple[str, datetime, bool]] = []

    def open_missed_since_before(self, moment: datetime) -> list[Callback]:
        self.asked.append(moment)
        return [c for c in self.callbacks if c.first_missed_at <= moment]

    def mark_overdue(self, callback: Callback, since: datetime, sla: timedelta, business_time: bool) -> Marked:
        self.marked.append((callback.id, since, business_time))
        return Marked.ESCALATED


def _callback(first: datetime) -> Callback:
    return Callback(
        id=f"{E164}/c-{first:%H%M}",
        phone=E164,
        owner="andy",
        status=CallbackStatus.OPEN,
        missed_count=1,
        missed_callids=(f"c-{first:%H%M}",),
        first_missed_at=first,
        last_missed_at=first,
    )


def test_the_checker_escalates_only_what_is_due_in_business_time() -> None:
    night, morning = _callback(msk("2026-12-02T02:00")), _callback(msk("2026-12-02T09:01"))
    store = _Store([night, morning])
    run = escalate_overdue(store, msk("2026-12-02T09:15"), DEFAULT_SLA, OFFICE)
    assert store.asked == [msk("2026-12-02T09:00")]  # the wall-time bound: never more than could be due
    assert store.marked == [(night.id, msk("2026-12-02T09:15"), True)]
    assert (run.checked, run.not_yet, run.outcomes) == (1, 0, {"escalated": 1})
    # Without a calendar the night's call-back was due at 02:15, the morning's at 09:16.
    store = _Store([night, morning])
    escalate_overdue(store, msk("2026-12-02T09:16"), DEFAULT_SLA, None)
    assert store.marked == [(night.id, msk("2026-12-02T02:15"), False), (morning.id, msk("2026-12-02T09:16"), False)]


# --- the checker through its handler, against the embedded DynamoDB -------------------------------


@pytest.fixture
def pipeline(aws: dict[str, str], moto_url: str, contact_store: Any) -> Pipeline:
    """The stream function over the tables' streams; andy and mike are the PBX's users."""
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    directory = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    directory.save_user(PbxUser(login="andy", ext="101"))
    directory.save_user(PbxUser(login="mike", ext="102"))
    return Pipeline(Streams(moto_url), aws, contact_store)


@pytest.fixture
def callback_store(aws: dict[str, str]) -> Any:
    from pbxbridge.storage.callbacks import DynamoCallbackStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    return DynamoCallbackStore(dynamodb_client(), aws["CallbacksTable"])


@pytest.fixture
def checker(moto_url: str, template: Template) -> LocalFunction:
    return LocalFunction(template.functions()["OverdueFunction"])


def _at(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _overdue(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [detail for kind, detail in pipeline.callback_events() if kind == "CallbackOverdue"]


def _escalations(aws: dict[str, str], moto_url: str) -> list[dict[str, Any]]:
    found = client("dynamodb", moto_url).scan(TableName=aws["CallbacksTable"])["Items"]
    return [item for item in found if item["sk"]["S"].startswith("overdue#")]


def test_an_open_call_back_past_its_sla_escalates_once_and_shows_as_overdue(
    webhook: Webhook,
    pipeline: Pipeline,
    checker: LocalFunction,
    callback_store: Any,
    aws: dict[str, str],
    moto_url: str,
) -> None:
    from pbxbridge.stream import metrics

    metrics.clear_metrics()
    now = datetime.now(tz=UTC).replace(microsecond=0)
    missed_call(webhook, "od-1", _at(now - timedelta(minutes=20)), user="andy@tenant.ru", legs=("andy",))
    missed_call(
        webhook, "od-fresh", _at(now - timedelta(minutes=5)), user="andy@tenant.ru", legs=("andy",), phone="79107654321"
    )
    pipeline.run()
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackOpened"]

    answer = checker.invoke({})
    assert (answer["checked"], answer.get("escalated")) == (1, 1), answer  # the fresh one is not even read
    pipeline.run()
    (event,) = _overdue(pipeline)
    assert event["id"] == f"{E164}/od-1/CallbackOverdue"
    assert (event["owner"], event["sla_minutes"], event["business_time"]) == ("andy", 15, False)
    first = datetime.fromisoformat(event["first_missed_at"])
    assert datetime.fromisoformat(event["occurred_at"]) == first + timedelta(minutes=15)
    schema = json.loads((REPO / "schemas" / "events" / "CallbackOverdue.json").read_text())
    jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())
    assert metrics.metric_set["CallbacksOverdue"]["Value"] == [1]

    # The widget's list item says since when.
    (listed, fresh) = callback_store.list_callbacks("andy", CallbackStatus.OPEN).callbacks[::-1]
    assert listed.overdue_since == first + timedelta(minutes=15)
    assert fresh.overdue_since is None

    # A second run, and the stream redelivering: nothing new.
    assert checker.invoke({})["checked"] == 0
    pipeline.run()
    pipeline.replay_calls()
    assert len(_overdue(pipeline)) == 1

    # A further missed call rewrites the call-back (its flag with it): the next run puts the flag back
    # and publishes nothing.
    missed_call(webhook, "od-2", _at(now - timedelta(minutes=1)), user="andy@tenant.ru", legs=("andy",))
    pipeline.run()
    (rewritten, _) = callback_store.list_callbacks("andy", CallbackStatus.OPEN).callbacks
    assert rewritten.missed_count == 2
    assert rewritten.overdue_since is None
    answer = checker.invoke({})
    assert (answer["checked"], answer.get("reflagged"), answer.get("escalated")) == (1, 1, None), answer
    pipeline.run()
    assert len(_overdue(pipeline)) == 1
    (flagged, _) = callback_store.list_callbacks("andy", CallbackStatus.OPEN).callbacks
    assert flagged.overdue_since == listed.overdue_since

    # Returned later: closed as usual, never escalated again.
    call_back(webhook, "od-back", _at(now), user="andy")
    pipeline.run()
    assert [kind for kind, _ in pipeline.callback_events()][-1] == "CallbackClosed"
    assert checker.invoke({})["checked"] == 0
    assert len(_escalations(aws, moto_url)) == 1


def test_a_call_back_returned_within_its_sla_never_escalates(
    webhook: Webhook, pipeline: Pipeline, checker: LocalFunction, aws: dict[str, str], moto_url: str
) -> None:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    missed_call(webhook, "od-c1", _at(now - timedelta(minutes=30)), user="andy@tenant.ru", legs=("andy",))
    call_back(webhook, "od-c2", _at(now - timedelta(minutes=25)), user="andy")
    pipeline.run()
    assert [kind for kind, _ in pipeline.callback_events()] == ["CallbackOpened", "CallbackClosed"]
    assert checker.invoke({})["checked"] == 0
    pipeline.run()
    assert _overdue(pipeline) == []
    assert _escalations(aws, moto_url) == []


def test_a_call_back_closed_between_the_read_and_the_write_is_not_escalated(
    webhook: Webhook, pipeline: Pipeline, aws: dict[str, str], moto_url: str
) -> None:
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.overdue import DynamoOverdueStore

    now = datetime.now(tz=UTC).replace(microsecond=0)
    missed_call(webhook, "od-r1", _at(now - timedelta(minutes=30)), user="andy@tenant.ru", legs=("andy",))
    pipeline.run()
    store = DynamoOverdueStore(dynamodb_client(), aws["CallbacksTable"])
    (candidate,) = store.open_missed_since_before(now - DEFAULT_SLA)
    call_back(webhook, "od-r2", _at(now - timedelta(minutes=2)), user="andy")
    pipeline.run()  # closed after the checker read it
    assert store.mark_overdue(candidate, now, DEFAULT_SLA, False) is Marked.CLOSED
    assert _escalations(aws, moto_url) == []


def test_concurrent_runs_escalate_each_call_back_once(
    webhook: Webhook, pipeline: Pipeline, checker: LocalFunction, aws: dict[str, str], moto_url: str
) -> None:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    phones = [f"7910555{n:04d}" for n in range(6)]
    for n, phone in enumerate(phones):
        missed_call(
            webhook,
            f"od-p{n}",
            _at(now - timedelta(minutes=16 + n)),
            user="andy@tenant.ru",
            legs=("andy",),
            phone=phone,
        )
    pipeline.run()
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(3)

    def run() -> None:
        start.wait()
        answers.append(checker.invoke({}))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(answer.get("escalated", 0) for answer in answers) == len(phones), answers
    checker.invoke({})  # whatever a raced run left, the next one settles
    # The embedded DynamoDB (moto) answers a cancelled transaction by restoring a copy of the table,
    # its stream included, which the stream reader it had handed out no longer sees: read it afresh,
    # from its start (the events seen before come again with their ids; the escalations are new).
    pipeline._streams = Streams(moto_url)
    pipeline.run()
    assert sorted(event["callback_id"] for event in _overdue(pipeline)) == sorted(
        f"+{phone}/od-p{n}" for n, phone in enumerate(phones)
    )
    assert len(_escalations(aws, moto_url)) == len(phones)


def test_with_a_calendar_a_call_missed_at_night_escalates_after_the_next_opening(
    webhook: Webhook, pipeline: Pipeline, aws: dict[str, str]
) -> None:
    from pbxbridge.function_settings import OverdueSettings
    from pbxbridge.overdue import OverdueDependencies, handle_check, working_calendar
    from pbxbridge.storage.calendar import DynamoCalendarStore
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.overdue import DynamoOverdueStore

    client = dynamodb_client()
    DynamoCalendarStore(client, aws["DirectoryTable"]).save_working_calendar(OFFICE)
    missed_call(webhook, "od-n1", _at(msk("2026-12-02T02:00")), user="andy@tenant.ru", legs=("andy",))
    pipeline.run()
    settings = OverdueSettings(
        CALLS_TABLE=aws["CallsTable"],
        CALL_EVENTS_TABLE=aws["CallEventsTable"],
        CONTACTS_TABLE=aws["ContactsTable"],
        DIRECTORY_TABLE=aws["DirectoryTable"],
        CALLBACKS_TABLE=aws["CallbacksTable"],
    )

    def check(now: datetime) -> dict[str, Any]:
        deps = OverdueDependencies(
            settings=settings,
            store=DynamoOverdueStore(client, aws["CallbacksTable"]),
            calendar=working_calendar(settings, client),
            now=lambda: now,
        )
        return handle_check({}, None, deps)

    assert check(msk("2026-12-02T09:14")) == {"checked": 1, "not_yet": 1, "business_time": True}
    assert check(msk("2026-12-02T09:15"))["escalated"] == 1
    pipeline.run()
    (event,) = _overdue(pipeline)
    assert datetime.fromisoformat(event["occurred_at"]) == msk("2026-12-02T09:15")
    assert event["business_time"] is True


def test_the_supervisors_and_admins_who_see_the_owner_are_told() -> None:
    from pbxbridge.domain.directory import Directory, PbxUser
    from pbxbridge.widget.push import overdue_notice, overdue_watchers

    directory = Directory(
        users=(
            PbxUser(login="serg", groups=("sales",)),
            PbxUser(login="mike", groups=("sales",)),
            PbxUser(login="daria", role_override="supervisor", departments_override=("sales",)),
            PbxUser(login="olga", role_override="supervisor", departments_override=("support",)),
            PbxUser(login="boss", role_override="admin"),
            PbxUser(login="gone", role_override="admin", active=False),
        )
    )
    assert overdue_watchers("serg", directory) == {"daria", "boss"}
    assert overdue_watchers("g_sales", directory) == {"daria", "boss"}
    assert overdue_watchers("g_support", directory) == {"olga", "boss"}
    assert overdue_watchers("daria", directory) == {"boss"}  # not told of their own: their list shows it
    assert overdue_watchers("unassigned", directory) == {"boss"}

    from pbxbridge.call_events import callback_overdue
    from pbxbridge.storage.overdue import escalation_item

    callback = _callback(msk("2026-12-02T02:00"))
    item = escalation_item(callback, callback_overdue(callback, msk("2026-12-02T09:15"), 15, True))
    notice = overdue_notice(None, item)
    assert notice == {
        "type": "callbackOverdue",
        "callback_id": callback.id,
        "owner": "andy",
        "phone": E164,
        "overdue_since": "2026-12-02T06:15:00Z",
    }
    assert overdue_notice(item, item) is None  # only its insert; a rewrite tells nobody again
    assert overdue_notice(None, {"phone": E164, "sk": "callback#c-0200", "owner_status": "andy#open"}) is None
