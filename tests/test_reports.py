"""The team's figures: what a call and a call-back contribute (the definitions), the aggregates kept
from the tables' real change streams (moto's), and replays that change nothing."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.aws import client
from pbxbridge.domain.reports import (
    COUNTERS,
    Aggregate,
    Contribution,
    call_contribution,
    callback_contribution,
    figures,
    fold,
    percentile,
    team_report,
)
from pbxbridge.domain.working_time import WorkingCalendar
from tests.conftest import Webhook
from tests.test_call_events import Streams
from tests.test_callbacks import PHONE, Pipeline, call_back, missed_call

MOSCOW = WorkingCalendar.wall_time("Europe/Moscow")
OFFICE = WorkingCalendar.parse("Europe/Moscow;mon-fri 09:00-18:00")


# --- the definitions ---------------------------------------------------------------------------


def test_an_inbound_call_answered_within_20_seconds_counts_on_its_local_day_for_who_took_it() -> None:
    call = {
        "callid": "c1",
        "direction": "in",
        "outcome": "answered",
        "started_at": "2026-12-04T21:30:00Z",  # 00:30 on the 5th in Moscow
        "rang_at": "2026-12-04T21:30:00.000000Z",
        "accepted_at": "2026-12-04T21:30:20.000000Z",
        "pbx_user": "andy",
        "duration": 95,
        "wait": 20,
        "rating": 4,
    }
    contribution = call_contribution(call, MOSCOW)
    assert contribution == Contribution(
        date(2026, 12, 5),
        "andy",
        {
            "inbound": 1,
            "answered": 1,
            "answered_20s": 1,
            "talk_seconds": 95,
            "wait_seconds": 20,
            "wait_count": 1,
            "rating_sum": 4,
            "rating_count": 1,
        },
    )
    # Answered at once: a wait of 0 s is a sum of zero, which is never kept, yet the mean is 0, not an error.
    at_once = call_contribution({**call, "wait": 0, "accepted_at": call["rang_at"]}, MOSCOW)
    assert at_once is not None
    assert figures(fold([at_once])[at_once.key])["average_wait_seconds"] == 0
    slower = call_contribution({**call, "accepted_at": "2026-12-04T21:30:21.000000Z"}, MOSCOW)
    assert slower is not None
    assert "answered_20s" not in slower.counters
    # Without the live milestones, the history's wait decides.
    by_wait = call_contribution({k: v for k, v in call.items() if k not in ("rang_at", "accepted_at")}, MOSCOW)
    assert by_wait is not None
    assert by_wait.counters["answered_20s"] == 1


def test_a_missed_call_counts_for_who_was_rung_and_an_unfinished_call_counts_nothing() -> None:
    missed = {
        "callid": "c2",
        "direction": "in",
        "outcome": "cancelled",
        "started_at": "2026-12-05T09:00:00Z",
        "legs_rang": ["mike@tenant"],
    }
    assert call_contribution(missed, MOSCOW) == Contribution(date(2026, 12, 5), "mike", {"inbound": 1, "missed": 1})
    assert call_contribution({k: v for k, v in missed.items() if k != "outcome"}, MOSCOW) is None
    nobody = call_contribution({**missed, "legs_rang": []}, MOSCOW)
    assert nobody is not None
    assert nobody.login == "unassigned"


def test_an_outbound_call_counts_whether_it_reached_the_client() -> None:
    out = {"callid": "c3", "direction": "out", "outcome": "busy", "started_at": "2026-12-05T09:00:00Z", "pbx_user": "a"}
    assert call_contribution(out, MOSCOW) == Contribution(date(2026, 12, 5), "a", {"outbound": 1})
    reached = call_contribution({**out, "outcome": "answered", "duration": 30}, MOSCOW)
    assert reached is not None
    assert reached.counters == {"outbound": 1, "outbound_reached": 1, "talk_seconds": 30}


def callback(first: str, closed: str | None, owner: str = "andy") -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"+7910/{first}",
        "owner": owner,
        "status": "closed" if closed else "open",
        "first_missed_at": first,
    }
    return item | ({"closed_at": closed} if closed else {})


def test_a_call_back_is_judged_in_business_time_from_the_next_opening() -> None:
    # Missed on Friday at 20:00 Moscow, called back Monday 09:10: 10 business minutes.
    night = callback_contribution(callback("2026-12-04T17:00:00Z", "2026-12-07T06:10:00Z"), OFFICE)
    assert night == Contribution(
        date(2026, 12, 4), "andy", {"callbacks": 1, "cb_15min": 1}, {"+7910/2026-12-04T17:00:00Z": 600}
    )
    # Missed Monday 10:00, called back 17:00 the same day: within the business day.
    same_day = callback_contribution(callback("2026-12-07T07:00:00Z", "2026-12-07T14:00:00Z"), OFFICE)
    assert same_day is not None
    assert same_day.counters == {"callbacks": 1, "cb_same_day": 1}
    assert list(same_day.samples.values()) == [7 * 3600]
    # Missed Monday 17:50, called back Tuesday 09:30: 40 business minutes, but the next business day.
    later = callback_contribution(callback("2026-12-07T14:50:00Z", "2026-12-08T06:30:00Z"), OFFICE)
    assert later is not None
    assert later.counters == {"callbacks": 1, "cb_later": 1}
    assert list(later.samples.values()) == [40 * 60]
    still_open = callback_contribution(callback("2026-12-07T14:50:00Z", None), OFFICE)
    assert still_open == Contribution(date(2026, 12, 7), "andy", {"callbacks": 1})


def test_percentiles_are_nearest_rank_over_the_exact_seconds() -> None:
    assert percentile([], 0.5) is None
    assert percentile([10], 0.9) == 10
    seconds = list(range(1, 11))
    assert (percentile(seconds, 0.5), percentile(seconds, 0.9)) == (5, 9)


# --- the report: its rows add up -----------------------------------------------------------------

# The figures that are sums (the others are shares, means and percentiles of them).
ADDITIVE = (
    "inbound", "answered", "missed", "answered_within_20s", "callbacks", "called_back_within_15min",
    "called_back_same_day", "called_back_later", "not_called_back", "outbound", "outbound_reached",
    "talk_seconds", "ratings",
)  # fmt: skip
PEOPLE = ("andy", "mike", "zoe", "unassigned")
AGGREGATES = st.dictionaries(
    st.tuples(st.integers(0, 9).map(lambda n: date(2026, 12, 1) + timedelta(days=n)), st.sampled_from(PEOPLE)),
    st.builds(
        Aggregate,
        st.dictionaries(st.sampled_from(COUNTERS), st.integers(0, 50)),
        st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 5000)),
    ),
)


def summed(rows: list[dict[str, Any]], cell: str) -> int:
    return sum(int(row[cell]) for row in rows)


@given(
    aggregates=AGGREGATES,
    visible=st.one_of(st.none(), st.frozensets(st.sampled_from(PEOPLE))),
    first=st.integers(0, 9),
    length=st.integers(1, 10),
)
def test_the_days_rows_are_every_date_and_add_up_to_the_total_for_every_counter(
    aggregates: dict[tuple[date, str], Aggregate], visible: frozenset[str] | None, first: int, length: int
) -> None:
    days = [date(2026, 12, 1) + timedelta(days=first + n) for n in range(length)]
    # What the store reads; a call-back's sample is in one day-person only (its id is unique).
    inside = {
        key: Aggregate(agg.counters, {f"{key}/{id_}": seconds for id_, seconds in agg.samples.items()})
        for key, agg in aggregates.items()
        if key[0] in days
    }
    report = team_report(inside, visible, {"andy": ("sales",), "mike": ("sales", "support")}, days)
    assert [row["day"] for row in report["days"]] == [day.isoformat() for day in days]
    for cell in ADDITIVE:
        assert summed(report["days"], cell) == report["total"][cell] == summed(report["managers"], cell), cell
    # The shares and percentiles of the total are those of every day's items together.
    everything = Aggregate()
    for (_, login), aggregate in inside.items():
        if visible is None or login in visible:
            everything.add(aggregate.counters, aggregate.samples)
    assert report["total"]["time_to_call_back_p90"] == percentile(sorted(everything.samples.values()), 0.9)
    assert {row["login"] for row in report["managers"]} <= (set(PEOPLE) if visible is None else visible)


def test_rows_are_named_by_the_directory_else_by_their_login_or_id() -> None:
    day = date(2026, 12, 5)
    aggregates = {(day, "andy"): Aggregate({"inbound": 1}), (day, "mike"): Aggregate({"outbound": 2})}
    report = team_report(
        aggregates,
        None,
        {"andy": ("sales",), "mike": ("support",)},
        [day - timedelta(days=1), day],
        names={"andy": "Andy Smith"},
        department_names={"sales": "Sales"},
    )
    assert [(row["login"], row["name"]) for row in report["managers"]] == [("andy", "Andy Smith"), ("mike", "mike")]
    assert [(row["department"], row["name"]) for row in report["departments"]] == [
        ("sales", "Sales"),
        ("support", "support"),
    ]
    quiet, busy = report["days"]
    assert (quiet["day"], quiet["inbound"], quiet["outbound"], quiet["missed_share"]) == ("2026-12-04", 0, 0, None)
    assert (busy["day"], busy["inbound"], busy["outbound"]) == ("2026-12-05", 1, 2)


# --- the store: replays change nothing ----------------------------------------------------------


@pytest.fixture
def reports_table(aws: dict[str, str], moto_url: str) -> tuple[str, str]:
    return aws["ReportsTable"], moto_url


def fresh_store(template: tuple[str, str]) -> Any:
    """A table of its own (the template's key schema) for one generated example."""
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.reports import DynamoReportStore

    admin = client("dynamodb", template[1])
    described = admin.describe_table(TableName=template[0])["Table"]
    name = f"reports-{uuid.uuid4().hex[:12]}"
    admin.create_table(
        TableName=name,
        KeySchema=described["KeySchema"],
        AttributeDefinitions=described["AttributeDefinitions"],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoReportStore(dynamodb_client(), name)


CALL_STATES = st.fixed_dictionaries(
    {
        "direction": st.sampled_from(["in", "out"]),
        "outcome": st.sampled_from([None, "answered", "missed", "busy"]),
        "started_at": st.sampled_from(["2026-12-04T20:59:00Z", "2026-12-04T21:01:00Z", "2026-12-06T10:00:00Z"]),
        "pbx_user": st.sampled_from([None, "andy", "mike"]),
        "duration": st.integers(0, 300),
        "wait": st.integers(0, 60),
        "rating": st.one_of(st.none(), st.integers(1, 5)),
    }
)
CALLBACK_STATES = st.fixed_dictionaries(
    {
        "owner": st.sampled_from(["andy", "mike"]),
        "first_missed_at": st.sampled_from(["2026-12-04T09:00:00Z", "2026-12-05T09:00:00Z"]),
        "closed_at": st.one_of(st.none(), st.sampled_from(["2026-12-05T09:05:00Z", "2026-12-07T12:00:00Z"])),
    }
)


def contribution_of(source: str, state: dict[str, Any]) -> Contribution | None:
    kind, ident = source.split("#", 1)
    if kind == "call":
        return call_contribution({**state, "callid": ident}, OFFICE)
    item = {**state, "id": ident, "status": "closed" if state.get("closed_at") else "open"}
    return callback_contribution({k: v for k, v in item.items() if v is not None}, OFFICE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=st.lists(st.lists(CALL_STATES, min_size=1, max_size=4), min_size=1, max_size=5),
    callbacks=st.lists(st.lists(CALLBACK_STATES, min_size=1, max_size=3), max_size=3),
    seed=st.randoms(use_true_random=False),
)
def test_shuffled_and_duplicated_replays_give_the_aggregates_of_a_recompute(
    reports_table: tuple[str, str],
    calls: list[list[dict[str, Any]]],
    callbacks: list[list[dict[str, Any]]],
    seed: random.Random,
) -> None:
    store = fresh_store(reports_table)
    # Each item's successive states, at increasing stream positions (one shard, as DynamoDB keeps an item's).
    records: list[tuple[str, str, dict[str, Any]]] = []
    position = 0
    histories = [(f"call#c{i}", states) for i, states in enumerate(calls)]
    histories += [(f"callback#+7910/m{i}", states) for i, states in enumerate(callbacks)]
    for source, states in histories:
        for state in states:
            position += 1
            records.append((source, str(position).zfill(40), state))
    delivered = records + seed.choices(records, k=len(records))  # every record at least once, some twice
    seed.shuffle(delivered)
    for source, seq, state in delivered:
        store.apply(source, seq, contribution_of(source, state))

    finals = [contribution_of(source, states[-1]) for source, states in histories]
    expected = {key: agg.normalised() for key, agg in fold(finals).items()}
    days = {day for day, _ in expected} | {date(2026, 12, 5)}
    read = store.aggregates(sorted(days))
    kept = {key: agg.normalised() for key, agg in read.items()}
    assert {key: value for key, value in kept.items() if value != ({}, {})} == expected
    # So the report (its days too) is the one a recompute gives.
    assert team_report(read, None, {}, sorted(days)) == team_report(fold(finals), None, {}, sorted(days))


def test_an_older_record_after_a_newer_one_and_the_same_record_twice_change_nothing(
    reports_table: tuple[str, str],
) -> None:
    store = fresh_store(reports_table)
    missed = {"direction": "in", "outcome": "missed", "started_at": "2026-12-05T09:00:00Z", "pbx_user": "andy"}
    answered = {**missed, "outcome": "answered", "duration": 60}
    assert store.apply("call#x", "2".zfill(40), contribution_of("call#x", answered))
    assert not store.apply("call#x", "2".zfill(40), contribution_of("call#x", answered))
    assert not store.apply("call#x", "1".zfill(40), contribution_of("call#x", missed))
    (aggregate,) = store.aggregates([date(2026, 12, 5)]).values()
    assert aggregate.normalised() == ({"inbound": 1, "answered": 1, "talk_seconds": 60}, {})
    # The call moves to another person: one day-person loses it, the other gains it.
    assert store.apply("call#x", "3".zfill(40), contribution_of("call#x", {**answered, "pbx_user": "mike"}))
    found = {login: agg.normalised() for (_, login), agg in store.aggregates([date(2026, 12, 5)]).items()}
    assert found == {"andy": ({}, {}), "mike": ({"inbound": 1, "answered": 1, "talk_seconds": 60}, {})}


# --- the stream function over the tables' real streams ---------------------------------------------


@pytest.fixture
def counted(streams: Streams, aws: dict[str, str], contact_store: Any, directory: Any) -> Pipeline:
    from pbxbridge.stream import StreamSettings, report_counter

    pipeline = Pipeline(streams, aws, contact_store)
    settings = StreamSettings(
        CALLS_TABLE=aws["CallsTable"],
        CONTACTS_TABLE=aws["ContactsTable"],
        CALLBACKS_TABLE=aws["CallbacksTable"],
        DIRECTORY_TABLE=aws["DirectoryTable"],
        REPORTS_TABLE=aws["ReportsTable"],
        EVENT_BUS_NAME="calls",
        RECORDINGS_QUEUE_URL="queue",
    )
    pipeline.deps = dataclasses.replace(pipeline.deps, settings=settings, count_for_reports=report_counter(settings))
    return pipeline


@pytest.fixture
def streams(aws: dict[str, str], moto_url: str) -> Streams:
    return Streams(moto_url)


@pytest.fixture
def directory(aws: dict[str, str]) -> Any:
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    store = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    store.save_user(PbxUser(login="andy", ext="101"))
    store.save_user(PbxUser(login="mike", ext="102"))
    return store


def test_the_stream_function_keeps_the_figures_and_a_replayed_batch_changes_nothing(
    webhook: Webhook, counted: Pipeline, aws: dict[str, str]
) -> None:
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.reports import DynamoReportStore

    # 10:00 Moscow on Friday 27 November: missed (it rang andy only), called back by mike 10 min later.
    missed_call(webhook, "r-m1", "20261127T070000Z", user="andy@tenant.ru", legs=("andy",))
    call_back(webhook, "r-o1", "20261127T071000Z")
    counted.run()
    counted.replay_calls()  # the calls' stream hands the batch back: nothing counts twice

    store = DynamoReportStore(dynamodb_client(), aws["ReportsTable"])
    found = {login: agg.normalised() for (_, login), agg in store.aggregates([date(2026, 11, 27)]).items()}
    assert found == {
        "andy": ({"inbound": 1, "missed": 1, "callbacks": 1, "cb_15min": 1}, {f"+{PHONE}/r-m1": 600}),
        "mike": ({"outbound": 1, "outbound_reached": 1, "talk_seconds": 30}, {}),
    }


# --- the report command, through the commands function ----------------------------------------------


@pytest.fixture
def commands(aws: dict[str, str], moto_url: str, template: Any) -> Any:
    from local.lambdas import LocalFunction

    return LocalFunction(template.functions()["CommandsFunction"])


def seed_team(aws: dict[str, str]) -> date:
    """andy supervises sales (andy, mike); zoe is in support; daria is an admin. Today (Moscow): andy
    answered one call, mike missed one and called it back in 10 min, zoe made one; last month: andy one."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from pbxbridge.domain.directory import Department, PbxUser
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.reports import DynamoReportStore

    directory = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    directory.save_user(
        PbxUser(login="andy", real_name="Andy Smith", groups=("sales",), pbx_role="group_head"), pbx_says_role=True
    )
    directory.save_user(PbxUser(login="mike", groups=("sales",)))
    directory.save_department(Department(id="sales", real_name="Sales"))
    directory.save_department(Department(id="support"))
    directory.save_user(PbxUser(login="zoe", groups=("support",)))
    directory.save_user(PbxUser(login="daria", pbx_role="admin"), pbx_says_role=True)
    store = DynamoReportStore(dynamodb_client(), aws["ReportsTable"])
    today = datetime.now(UTC).astimezone(ZoneInfo("Europe/Moscow")).date()
    long_ago = today.replace(day=1) - timedelta(days=3)
    seq = iter(str(n).zfill(40) for n in range(1, 100))
    store.apply("call#a1", next(seq), Contribution(today, "andy", {"inbound": 1, "answered": 1, "answered_20s": 1}))
    store.apply("call#m1", next(seq), Contribution(today, "mike", {"inbound": 1, "missed": 1}))
    store.apply("callback#m1", next(seq), Contribution(today, "mike", {"callbacks": 1, "cb_15min": 1}, {"m1": 600}))
    store.apply("call#z1", next(seq), Contribution(today, "zoe", {"outbound": 1, "outbound_reached": 1}))
    store.apply("call#old", next(seq), Contribution(long_ago, "andy", {"inbound": 1, "missed": 1}))
    return today


def test_a_supervisor_sees_their_department_an_admin_everyone_a_manager_themself(
    commands: Any, aws: dict[str, str]
) -> None:
    today = seed_team(aws)
    answer = commands.invoke({"cmd": "report", "period": "today", "viewer": "andy"})
    assert answer["ok"] is True, answer
    result = answer["result"]
    assert (result["from"], result["to"], result["zone"]) == (today.isoformat(), today.isoformat(), "Europe/Moscow")
    assert [row["login"] for row in result["managers"]] == ["andy", "mike"]
    mike = result["managers"][1]
    assert (mike["missed"], mike["missed_share"], mike["called_back_within_15min"]) == (1, 1.0, 1)
    assert (mike["time_to_call_back_median"], mike["time_to_call_back_p90"], mike["not_called_back"]) == (600, 600, 0)
    (sales,) = result["departments"]
    assert (sales["department"], sales["inbound"], sales["answered"], sales["missed_share"]) == ("sales", 2, 1, 0.5)
    assert result["total"]["inbound"] == 2
    assert result["total"]["outbound"] == 0
    assert [(row["login"], row["name"]) for row in result["managers"]] == [("andy", "Andy Smith"), ("mike", "mike")]
    assert sales["name"] == "Sales"
    (only_day,) = result["days"]
    assert only_day == {"day": today.isoformat(), **result["total"]}

    everyone = commands.invoke({"cmd": "report", "period": "today", "viewer": "daria"})["result"]
    assert [row["login"] for row in everyone["managers"]] == ["andy", "mike", "zoe"]
    assert [(row["department"], row["name"]) for row in everyone["departments"]] == [
        ("sales", "Sales"),
        ("support", "support"),
    ]
    themself = commands.invoke({"cmd": "report", "period": "today", "viewer": "mike"})["result"]
    assert [row["login"] for row in themself["managers"]] == ["mike"]
    nobody = commands.invoke({"cmd": "report", "period": "today", "viewer": "stranger"})["result"]
    assert nobody["managers"] == []
    assert nobody["total"]["inbound"] == 0

    last_month = commands.invoke({"cmd": "report", "period": "last_month"})["result"]
    assert [(row["login"], row["missed"]) for row in last_month["managers"]] == [("andy", 1)]
    span = commands.invoke({"cmd": "report", "from": last_month["from"], "to": today.isoformat()})["result"]
    assert span["total"]["inbound"] == 3
    # A row for every date, zeros included; the two busy days carry the calls.
    first = date.fromisoformat(last_month["from"])
    assert [row["day"] for row in span["days"]] == [
        (first + timedelta(days=n)).isoformat() for n in range((today - first).days + 1)
    ]
    busy = {row["day"]: row["inbound"] for row in span["days"] if row["inbound"]}
    assert busy == {(today.replace(day=1) - timedelta(days=3)).isoformat(): 1, today.isoformat(): 2}


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"cmd": "report"}, "give a period or both from and to"),
        ({"cmd": "report", "period": "today", "from": "2026-12-01"}, "not both"),
        ({"cmd": "report", "from": "2026-12-02", "to": "2026-12-01"}, "to is before from"),
        ({"cmd": "report", "from": "2025-01-01", "to": "2026-12-01"}, "at most 366 days"),
    ],
)
def test_a_period_that_is_not_one_is_refused_with_the_reason(
    commands: Any, aws: dict[str, str], payload: dict[str, Any], why: str
) -> None:
    answer = commands.invoke(payload)
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_request"
    assert why in answer["error"]["message"]


def test_a_period_is_read_one_query_a_day_never_the_calls(aws: dict[str, str]) -> None:
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.reports import DynamoReportStore

    asked: list[dict[str, Any]] = []
    real = dynamodb_client()

    class Counting:
        def query(self, **request: Any) -> Any:
            asked.append(request)
            return real.query(**request)

    days = [date(2026, 11, day) for day in range(1, 31)]
    DynamoReportStore(Counting(), aws["ReportsTable"]).aggregates(days)
    assert len(asked) == 30
    assert {request["TableName"] for request in asked} == {aws["ReportsTable"]}


def test_the_console_answers_the_same_cells_as_csv_and_xlsx(commands: Any, aws: dict[str, str], tmp_path: Any) -> None:
    import csv
    import io
    import json
    import os
    import pty
    import subprocess
    import sys
    import threading

    from openpyxl import load_workbook

    from local.aws import LOOPBACK
    from local.server import ApiGatewayServer

    seed_team(aws)
    api = ApiGatewayServer((LOOPBACK, 0), [commands])
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    workbook = tmp_path / "team.xlsx"
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL_LAMBDA": api.url, "COMMANDS_FUNCTION": "CommandsFunction"}

        def console(*args: str, **run: Any) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "pbxbridge.cli", "report", *args],
                env=env,
                capture_output="stdout" not in run,
                text=True,
                timeout=60,
                check=False,
                **run,
            )

        period = ("--period", "this_week", "--viewer", "andy")
        as_csv = console(*period, "--format", "csv")
        as_json = console(*period)
        as_xlsx = console(*period, "--format", "xlsx", "-o", str(workbook))
        terminal, other_end = pty.openpty()
        try:
            to_terminal = console(*period, "--format", "xlsx", stdout=terminal, stderr=subprocess.PIPE)
        finally:
            os.close(terminal)
            os.close(other_end)
        refused = console("--from", "2026-12-02", "--to", "2026-12-01")
    finally:
        api.shutdown()
        api.server_close()
    assert as_csv.returncode == 0, as_csv.stderr
    answered = json.loads(as_json.stdout)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    days = [row["day"] for row in answered["days"]]
    assert [(row["kind"], row["id"], row["name"]) for row in rows] == [
        ("manager", "andy", "Andy Smith"),
        ("manager", "mike", "mike"),
        ("department", "sales", "Sales"),
        *(("day", day, "") for day in days),
        ("total", "", ""),
    ]

    def text(row: dict[str, Any]) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in row.items() if k not in ("login", "department", "day")}

    assert {k: v for k, v in rows[1].items() if k not in ("kind", "id")} == text(answered["managers"][1])
    assert {k: v for k, v in rows[3].items() if k not in ("kind", "id", "name")} == text(answered["days"][0])
    assert rows[1]["time_to_call_back_median"] == "600"
    assert rows[1]["average_wait_seconds"] == ""

    # The workbook: the same cells, typed; a sheet each, its header bold and frozen.
    assert as_xlsx.returncode == 0, as_xlsx.stderr
    assert as_xlsx.stdout == ""
    book = load_workbook(workbook)
    assert book.sheetnames == ["Managers", "Departments", "Days", "Total"]
    expected = {
        "Managers": answered["managers"],
        "Departments": answered["departments"],
        "Days": answered["days"],
        "Total": [answered["total"]],
    }
    for title, json_rows in expected.items():
        sheet = book[title]
        header, *cells = [list(row) for row in sheet.iter_rows(values_only=True)]
        assert header == list(json_rows[0]), title
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.bold for cell in sheet[1])
        read: list[dict[Any, Any]] = [dict(zip(header, row, strict=True)) for row in cells]
        for row in read:
            if "day" in row:
                row["day"] = row["day"].date().isoformat()  # a date cell
        assert read == json_rows, title
    mike = book["Managers"][3]
    assert isinstance(mike[header_index(book, "time_to_call_back_median")].value, int)
    share = mike[header_index(book, "missed_share")]
    assert (share.value, share.number_format) == (1.0, "0.0%")

    assert to_terminal.returncode == 2
    assert "--output" in to_terminal.stderr
    assert refused.returncode == 2
    assert "to is before from" in refused.stderr


def header_index(book: Any, column: str) -> int:
    return [cell.value for cell in book["Managers"][1]].index(column)


def test_rebuild_reports_recomputes_a_period_from_the_tables_in_parts_and_a_second_run_changes_nothing(
    commands: Any, webhook: Webhook, counted: Pipeline, aws: dict[str, str]
) -> None:
    # Friday 27 November, Moscow: a missed call at 10:00 (andy), called back at 10:10; andy answers another.
    missed_call(webhook, "rb-m1", "20261127T070000Z", user="andy@tenant.ru", legs=("andy",))
    call_back(webhook, "rb-o1", "20261127T071000Z")
    webhook.push(
        cmd="history", type="in", status="Success", user="andy", phone="79160000000", callid="rb-i1",
        start="20261127T080000Z", duration="45",
    )  # fmt: skip
    counted.run()  # the call-backs are derived (the figures too, from the stream)
    kept = commands.invoke({"cmd": "report", "from": "2026-11-27", "to": "2026-11-27"})["result"]

    # Lose the figures, then rebuild them from the tables, 100 items read per request.
    from pbxbridge.storage.dynamodb import dynamodb_client

    real = dynamodb_client()
    for item in real.query(
        TableName=aws["ReportsTable"], KeyConditionExpression="pk = :d",
        ExpressionAttributeValues={":d": {"S": "day#2026-11-27"}},
    )["Items"]:  # fmt: skip
        real.delete_item(TableName=aws["ReportsTable"], Key={"pk": item["pk"], "sk": item["sk"]})
    for n in ("rb-m1", "rb-o1", "rb-i1"):
        real.delete_item(
            TableName=aws["ReportsTable"], Key={"pk": {"S": f"counted#call#{n}"}, "sk": {"S": "contribution"}}
        )
    real.delete_item(
        TableName=aws["ReportsTable"],
        Key={"pk": {"S": f"counted#callback#+{PHONE}/rb-m1"}, "sk": {"S": "contribution"}},
    )
    assert commands.invoke({"cmd": "report", "from": "2026-11-27", "to": "2026-11-27"})["result"]["managers"] == []

    totals = {"calls": 0, "callbacks": 0, "changed": 0}
    request: dict[str, Any] = {"cmd": "rebuildReports", "from": "2026-11-27", "to": "2026-11-27", "limit": 500}
    requests = 0
    while requests < 20:
        requests += 1
        answer = commands.invoke(request)
        assert answer["ok"] is True, answer
        for name in totals:
            totals[name] += answer["result"][name]
        if answer["result"]["cursor"] is None:
            break
        request["cursor"] = answer["result"]["cursor"]
    assert totals == {"calls": 3, "callbacks": 1, "changed": 4}
    assert requests == 2  # one page of calls, then one of call-backs: the cursor carried it across
    rebuilt = commands.invoke({"cmd": "report", "from": "2026-11-27", "to": "2026-11-27"})["result"]
    assert rebuilt == kept
    assert [(row["login"], row["inbound"], row["answered"]) for row in rebuilt["managers"]] == [
        ("andy", 2, 1),
        ("mike", 0, 0),
    ]
    again = commands.invoke({"cmd": "rebuildReports", "from": "2026-11-27", "to": "2026-11-27"})["result"]
    assert (again["calls"], again["callbacks"], again["changed"], again["cursor"]) == (3, 1, 0, None)

    # After a calendar change, a rebuild judges the call-back again: 10 wall minutes, but the office
    # opens at 10:05 now, so 5 business minutes; the call made before it opened still counts.
    assert commands.invoke({"cmd": "setWorkingHours", "calendar": "Europe/Moscow;mon-fri 10:05-18:00"})["ok"]
    changed = commands.invoke({"cmd": "rebuildReports", "from": "2026-11-27", "to": "2026-11-27"})["result"]
    assert changed["changed"] == 1
    andy = commands.invoke({"cmd": "report", "from": "2026-11-27", "to": "2026-11-27"})["result"]["managers"][0]
    assert (andy["time_to_call_back_median"], andy["called_back_within_15min"]) == (300, 1)


def test_a_month_for_fifty_people_is_one_query_a_day_and_the_directory(commands: Any, aws: dict[str, str]) -> None:
    """The report's DynamoDB requests for a month x 50 people (counts, not time): one Query per day
    (each day's 50 items fit one page), the directory's and the calendar's own reads, nothing else."""
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    directory = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    logins = [f"m{n:02d}" for n in range(50)]
    for n, login in enumerate(logins):
        directory.save_user(PbxUser(login=login, groups=(("sales", "support", "retail")[n % 3],)))
    directory.save_user(PbxUser(login="root", pbx_role="admin"), pbx_says_role=True)
    month = [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]
    items = [
        {
            "pk": {"S": f"day#{day.isoformat()}"},
            "sk": {"S": f"person#{login}"},
            "inbound": {"N": "3"},
            "missed": {"N": "1"},
            "answered": {"N": "2"},
            "callbacks": {"N": "1"},
            "cb_15min": {"N": "1"},
            f"s#{login}/{day}": {"N": "300"},
        }
        for day in month
        for login in logins
    ]
    admin = dynamodb_client()
    for offset in range(0, len(items), 25):
        request = {aws["ReportsTable"]: [{"PutRequest": {"Item": item}} for item in items[offset : offset + 25]]}
        while request:
            request = admin.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    made: dict[str, list[str]] = {}

    def counted(model: Any, params: dict[str, Any], **_: Any) -> None:
        made.setdefault(model.name, []).append(params.get("TableName", ""))

    hooks = dynamodb_client().meta.events
    ask = {"cmd": "report", "from": "2026-11-01", "to": "2026-11-30", "viewer": "root"}
    commands.invoke(ask)  # the directory's first read is cached like any other
    hooks.register("provide-client-params.dynamodb", counted)
    try:
        answer = commands.invoke(ask)
    finally:
        hooks.unregister("provide-client-params.dynamodb", counted)
    assert answer["ok"] is True, answer
    result = answer["result"]
    assert len(result["managers"]) == 50
    assert len(result["days"]) == 30
    assert result["total"]["inbound"] == 30 * 50 * 3
    assert sum(row["inbound"] for row in result["days"]) == result["total"]["inbound"]
    assert result["total"]["time_to_call_back_median"] == 300
    # 30 day Queries of the reports; the directory's users and departments (a Query each) and the
    # calendar (a GetItem): 33 requests, whatever the number of calls behind the figures.
    counts = {name: [*sorted(set(tables)), len(tables)] for name, tables in made.items()}
    assert counts == {"Query": [aws["DirectoryTable"], aws["ReportsTable"], 32], "GetItem": [aws["DirectoryTable"], 1]}
    assert made["Query"].count(aws["ReportsTable"]) == 30
