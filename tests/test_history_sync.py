"""History reconciliation against the simulator: lost and duplicated pushes, crashes, windows, watermark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local.aws import LOOPBACK
from local.lambdas import LocalFunction
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.server import ApiGatewayServer
from local.template import Template
from pbxbridge.domain.reconciliation import Reconciler, SyncReport
from pbxbridge.history_sync import run_sync
from pbxbridge.pbx import PbxClient
from tests.conftest import CRM_TOKEN

PBX_KEY = "sync-pbx-key"
EXPECTED_OUTCOMES = {
    ("in", True): {"answered"},
    ("missed", False): {"missed"},
    ("out", True): {"answered"},
    ("out", False): {"busy", "not_answered"},  # busy from the webhook's history, not_answered from the CSV
}


@dataclass
class Rig:
    simulator: PbxSimulator
    server: SimulatorServer
    api: ApiGatewayServer
    client: PbxClient
    ledger: Any
    store: Any

    def reconciler(self, limit: int = 1000) -> Reconciler:
        return Reconciler(history=self.client, ledger=self.ledger, region="RU", limit=limit)

    def all_calls(self) -> dict[str, dict[str, Any]]:

        items: dict[str, dict[str, Any]] = {}
        for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=self.store._calls_table):
            for item in page["Items"]:
                callid = item["callid"]["S"]
                assert callid not in items
                items[callid] = self.store.get_call(callid)
        return items


@pytest.fixture
def rig(aws: dict[str, str], webhook_function: LocalFunction, template: Template) -> Iterator[Rig]:
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.watermark import DynamoLedger

    api = ApiGatewayServer((LOOPBACK, 0), [webhook_function])
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    simulator = PbxSimulator(token=PBX_KEY, crm_url=api.url + "/pbx", crm_token=CRM_TOKEN, seed=7)
    server = simulator.serve()
    client = PbxClient(server.url, PBX_KEY, read_timeout=5, backoff=0.01)
    ledger = DynamoLedger(dynamodb_client(), aws["CallsTable"], aws["SyncStateTable"])
    store = DynamoCallStore(dynamodb_client(), aws["CallsTable"], aws["CallEventsTable"])
    yield Rig(simulator, server, api, client, ledger, store)
    client.close()
    server.stop()
    api.shutdown()
    api.server_close()


def soon() -> datetime:
    """A run a few minutes from now: the calls just played are settled into the PBX's history."""
    return datetime.now(tz=UTC) + timedelta(minutes=3)


def assert_converged(rig: Rig) -> None:
    """Every call of the PBX's history is stored once, with the right outcome; nothing else is."""
    calls = rig.all_calls()
    records = {record.uid: record for record in rig.simulator.history_records}
    assert set(calls) == set(records)
    for callid, record in records.items():
        call = calls[callid]
        assert call["outcome"] in EXPECTED_OUTCOMES[(record.type, record.duration > 0)], (record, call)
        assert call["client"] == record.client
        assert call["started_at"] == record.start.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lost_and_duplicated_pushes_converge_after_one_run(rig: Rig) -> None:
    rig.simulator.play_mix(40, drop=0.3, duplicate=0.1)
    dropped = [push for push in rig.simulator.pushes if push.dropped]
    assert len(dropped) > 20  # the scenario really loses pushes
    lost_history = {p.fields["callid"] for p in dropped if p.fields["cmd"] == "history"}
    assert lost_history
    report = run_sync({}, reconciler=rig.reconciler(), now=soon)
    assert_converged(rig)
    assert report["rows_seen"] == 40
    assert report["created"] + report["merged"] + report["already_reconciled"] == 40
    assert report["created"] + report["merged"] >= len(lost_history)
    assert report["rejected"] == 0
    again = run_sync({}, reconciler=rig.reconciler(), now=soon)
    assert again["already_reconciled"] == 40  # the overlap re-reads: nothing written twice
    assert_converged(rig)


def test_webhook_fields_are_kept_and_csv_fields_added(rig: Rig) -> None:
    callid = rig.simulator.play_inbound("79101234567", answered_by="andy", wait=7)
    before = rig.store.get_call(callid)
    run_sync({}, reconciler=rig.reconciler(), now=soon)
    after = rig.store.get_call(callid)
    for name in ("status", "outcome", "link", "group_name", "diversion", "history_at", "accepted_by"):
        assert after[name] == before[name], name
    assert after["wait"] == 7
    assert after["via"] == "+74996861574"
    assert "reconciled_at" in after


class Crash(RuntimeError):
    pass


def test_a_run_killed_halfway_is_safe_to_repeat(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from pbxbridge.settings import history_sync_settings

    monkeypatch.setenv("HISTORY_WINDOW_HOURS", "2")
    history_sync_settings.cache_clear()
    old = datetime.now(tz=UTC) - timedelta(hours=20)
    rig.simulator.drop_rate = 1.0  # the webhook heard nothing: everything comes from the history
    for index in range(30):
        rig.simulator.play_inbound(f"7910555{index:04d}", start=old + timedelta(minutes=index * 30))
    reconciler = rig.reconciler(limit=1000)
    real_create = rig.ledger.create_calls
    writes = 0

    def create_then_die(calls: list[Any], at: datetime) -> int:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise Crash("killed")
        return int(real_create(calls, at))

    rig.ledger.create_calls = create_then_die
    with pytest.raises(Crash):
        run_sync({}, reconciler=reconciler)
    partial_watermark = rig.ledger.watermark()
    assert partial_watermark is not None
    assert partial_watermark < datetime.now(tz=UTC) - timedelta(hours=1)  # stopped at the last whole window
    rig.ledger.create_calls = real_create
    run_sync({}, reconciler=reconciler)
    assert_converged(rig)
    history_sync_settings.cache_clear()


def test_the_watermark_never_moves_back(rig: Rig) -> None:
    later = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert rig.ledger.advance_watermark(later) is True
    assert rig.ledger.advance_watermark(later - timedelta(hours=1)) is False
    assert rig.ledger.watermark() == later
    # A run that started earlier (its "now" is earlier) and finishes later cannot undo it either.
    run_sync({}, reconciler=rig.reconciler(), now=lambda: later - timedelta(minutes=20))
    assert rig.ledger.watermark() == later
    run_sync({}, reconciler=rig.reconciler(), now=lambda: later + timedelta(minutes=20))
    assert rig.ledger.watermark() == later + timedelta(minutes=19)


def test_a_full_window_is_split_until_nothing_is_missed(rig: Rig) -> None:
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=5)
    rig.simulator.drop_rate = 1.0
    for index in range(35):
        rig.simulator.play_outbound("andy", f"7910666{index:04d}", start=start + timedelta(minutes=index))
    report = Reconciler(history=rig.client, ledger=rig.ledger, region="RU", limit=10).walk(
        start - timedelta(minutes=1), start + timedelta(hours=1), SyncReport(), advance=False, window=timedelta(hours=1)
    )
    assert report.splits >= 3
    assert report.created == 35
    assert_converged(rig)
    limits = {request.get("limit") for request in rig.simulator.requests_seen if request.get("cmd") == "history"}
    assert limits == {"10"}


def test_more_calls_in_one_second_than_the_limit_are_reported(rig: Rig) -> None:
    moment = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=3)
    rig.simulator.drop_rate = 1.0
    for index in range(4):
        rig.simulator.play_inbound(f"7910777{index:04d}", start=moment)
    report = Reconciler(history=rig.client, ledger=rig.ledger, region="RU", limit=3).walk(
        moment, moment + timedelta(seconds=1), SyncReport(), advance=False, window=timedelta(hours=1)
    )
    assert any("more than 3 calls" in reason for reason in report.rejected)


def test_a_backfill_leaves_the_watermark_alone(rig: Rig) -> None:
    now = datetime.now(tz=UTC)
    last_month = (now.replace(day=1) - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    rig.simulator.drop_rate = 1.0
    callid = rig.simulator.play_inbound("79101234567", start=last_month)
    report = run_sync({"period": "last_month"}, reconciler=rig.reconciler())
    assert report["scheduled"] is False
    assert report["created"] == 1
    assert rig.store.get_call(callid)["outcome"] == "answered"
    assert rig.ledger.watermark() is None
    explicit = run_sync(
        {"start": (last_month - timedelta(hours=1)).isoformat(), "end": (last_month + timedelta(hours=1)).isoformat()},
        reconciler=rig.reconciler(),
    )
    assert explicit["already_reconciled"] == 1
    assert rig.ledger.watermark() is None


def test_the_lambda_and_the_console(rig: Rig, moto_url: str, template: Template) -> None:
    from local.aws import client
    from pbxbridge.pbx.configured import client_for
    from pbxbridge.settings import history_sync_settings

    rig.simulator.drop_rate = 1.0
    callids = [rig.simulator.play_inbound("79101234567"), rig.simulator.play_outbound("mike", "79101234568")]
    client("ssm", moto_url).put_parameter(
        Name="/pbxbridge/pbx-token", Value=PBX_KEY, Type="SecureString", Overwrite=True
    )
    function = LocalFunction(
        Template(parameters={**template.parameters, "PbxUrl": rig.server.api_url}).functions()["HistorySyncFunction"]
    )
    history_sync_settings.cache_clear()
    client_for.cache_clear()
    end = soon().isoformat()
    answer = function.invoke({"start": "2026-11-01T00:00:00Z", "end": end})
    assert (answer["created"], answer["scheduled"]) == (2, False), {
        k: answer[k] for k in ("windows", "splits", "complete", "rejected_reasons")
    }
    assert all(rig.store.get_call(callid) for callid in callids)
    env = {**os.environ, "PBX_URL": rig.server.url, "PBX_TOKEN": PBX_KEY, "PBX_API": "legacy"}
    run = subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli", "sync", "history", "--start", "2026-11-01", "--end", end],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["already_reconciled"] == 2
    bad = subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli", "sync", "history", "--start", "2021", "--end", "2020"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2


def test_calls_only_the_history_knows_get_their_scenario_and_crm_user(
    rig: Rig, contact_store: Any, monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]
) -> None:
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.history_sync import default_reconciler
    from pbxbridge.settings import history_sync_settings
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    directory = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    directory.save_user(PbxUser(login="andy", ext="708"))
    directory.map_user("andy", "crm-17")
    for name, value in {
        "SCENARIO_MISSED_CALL_LEADS": "true",
        "LEAD_RESPONSIBLE": "crm-boss",
        "DEFAULT_CRM_USER": "crm-default",
    }.items():
        monkeypatch.setenv(name, value)
    history_sync_settings.cache_clear()
    rig.simulator.drop_rate = 1.0  # the webhook heard nothing of these calls
    missed = rig.simulator.play_inbound("79167770001", answered_by=None)
    answered = rig.simulator.play_inbound("79167770002", answered_by="andy")
    reconciler, _ = default_reconciler(pbx=rig.client)
    report = run_sync({}, reconciler=reconciler, now=soon)
    history_sync_settings.cache_clear()
    assert report["created"] == 2
    lead = contact_store.get_contact("+79167770001")
    assert (lead.lead, lead.responsible) == (True, "crm-boss")
    assert contact_store.get_contact("+79167770002") is None
    assert rig.store.get_call(answered)["crm_user"] == "crm-17"
    assert rig.store.get_call(missed)["crm_user"] == "crm-default"


@pytest.mark.parametrize(
    "name", ["history-sync-scheduled.json", "history-sync-backfill-period.json", "history-sync-backfill-range.json"]
)
def test_the_sample_events_are_sync_requests(name: str) -> None:
    from pathlib import Path

    from pbxbridge.history_sync import SyncRequest

    SyncRequest.model_validate(json.loads((Path(__file__).resolve().parent.parent / "events" / name).read_text()))


def test_a_run_killed_after_writing_still_gives_each_call_its_scenario(
    rig: Rig, contact_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbxbridge.history_sync import default_reconciler
    from pbxbridge.settings import history_sync_settings

    monkeypatch.setenv("SCENARIO_MISSED_CALL_LEADS", "true")
    history_sync_settings.cache_clear()
    old = datetime.now(tz=UTC) - timedelta(hours=5)
    rig.simulator.drop_rate = 1.0
    rig.simulator.play_inbound("79168880001", answered_by=None, start=old)
    reconciler, _ = default_reconciler(pbx=rig.client)

    def die(calls: list[Any], at: datetime) -> int:
        raise Crash("killed while writing")

    ledger: Any = reconciler.ledger
    real = ledger.create_calls
    ledger.create_calls = die
    with pytest.raises(Crash):
        run_sync({}, reconciler=reconciler, now=soon)
    ledger.create_calls = real
    run_sync({}, reconciler=reconciler, now=soon)
    history_sync_settings.cache_clear()
    lead = contact_store.get_contact("+79168880001")
    assert lead is not None
    assert lead.lead is True
    assert_converged(rig)


def test_the_pbx_start_replaces_an_events_arrival_time(rig: Rig) -> None:
    """A call known only from events has the first event's arrival as its start; the CSV knows better."""
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(minutes=5)
    rig.simulator.drop_rate = 0.0
    callid = rig.simulator.play_inbound("79169990001", answered_by="andy", start=start)
    from pbxbridge.storage.dynamodb import dynamodb_client

    # As if the history push had been lost: only the events' state remains.
    dynamodb_client().update_item(
        TableName=rig.store._calls_table,
        Key={"callid": {"S": callid}},
        UpdateExpression="REMOVE history_at, #s, outcome, #d SET started_at = :late",
        ExpressionAttributeNames={"#s": "status", "#d": "duration"},
        ExpressionAttributeValues={":late": {"S": "2099-01-01T00:00:00Z"}},
    )
    run_sync({}, reconciler=rig.reconciler(), now=soon)
    call = rig.store.get_call(callid)
    assert call["started_at"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert call["outcome"] == "answered"


def test_a_push_that_lands_while_reconciliation_writes_is_not_overwritten(rig: Rig, webhook: Any) -> None:
    old = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=4)
    rig.simulator.drop_rate = 1.0
    callids = [rig.simulator.play_inbound(f"7916444{index:04d}", answered_by="andy", start=old) for index in range(3)]
    real = rig.ledger.create_calls

    def push_first(calls: list[Any], at: datetime) -> int:
        # Between the batch lookup (all three missing) and the write, the PBX's late push arrives.
        webhook.push(
            cmd="history",
            type="in",
            status="Success",
            user="andy",
            phone="79164440000",
            start=old.strftime("%Y%m%dT%H%M%SZ"),
            duration="42",
            callid=callids[0],
            groupRealName="Отдел продаж",
            ext="708",
        )
        return int(real(calls, at))

    ledger: Any = rig.ledger
    ledger.create_calls = push_first
    report = run_sync({}, reconciler=rig.reconciler(), now=soon)
    assert (report["created"], report["merged"]) == (2, 1)
    kept = rig.store.get_call(callids[0])
    assert (kept["group_name"], kept["ext"], kept["history_pushes"]) == ("Отдел продаж", "708", 1)
    assert kept["wait"] == 5  # and the CSV's own fields were merged in
    assert_converged(rig)


# Reconciliation on crmapi/v1: the same calls from /history/json (or /history/csv), the same records.


@pytest.fixture
def v1_history(rig: Rig) -> Iterator[Any]:
    from pbxbridge.pbx import V1PbxClient

    with V1PbxClient(rig.server.v1_url, PBX_KEY, read_timeout=5, backoff=0.01) as client:
        yield client


def history_reads(rig: Rig, route: str) -> list[dict[str, Any]]:
    return [r for r in rig.simulator.v1_requests_seen if r["route"] == route]


def test_on_v1_lost_calls_are_recovered(rig: Rig, v1_history: Any) -> None:
    lost: list[str] = []
    rig.simulator.play_mix(40, drop=0.3, duplicate=0.1, lose_calls=0.25, lost=lost)
    assert lost  # whole calls only the history knows
    report = run_sync({}, reconciler=Reconciler(history=v1_history, ledger=rig.ledger, region="RU"), now=soon)
    assert_converged(rig)
    assert report["rows_seen"] == 40
    assert report["created"] >= len(lost)
    assert all(rig.store.get_call(callid)["outcome"] for callid in lost)
    assert rig.simulator.requests_seen == [] or all(r.get("cmd") != "history" for r in rig.simulator.requests_seen)
    assert history_reads(rig, "/history/json")


def test_on_v1_a_record_returned_only_once_is_stored_the_first_time(rig: Rig, v1_history: Any) -> None:
    """One integration reports that v1 returns a history record once: the walk must store what it read
    and never need it again, however its windows are split."""
    rig.simulator.modes.history_once = True
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=5)
    rig.simulator.drop_rate = 1.0
    for index in range(35):
        rig.simulator.play_outbound("andy", f"7910666{index:04d}", start=start + timedelta(minutes=index))
    reconciler = Reconciler(history=v1_history, ledger=rig.ledger, region="RU", limit=10)
    report = reconciler.walk(
        start - timedelta(minutes=1), start + timedelta(hours=1), SyncReport(), advance=True, window=timedelta(hours=1)
    )
    assert report.splits >= 1
    assert report.created == 35
    assert_converged(rig)
    assert rig.ledger.watermark() == start + timedelta(hours=1)  # past what was stored, and no further
    assert {r.uid for r in rig.simulator.history_records} == rig.simulator.history_served
    again = reconciler.walk(
        start - timedelta(minutes=1), start + timedelta(hours=1), SyncReport(), advance=True, window=timedelta(hours=1)
    )
    assert again.rows_seen == 0  # the PBX has nothing more to say, and nothing was lost
    assert_converged(rig)


def test_on_v1_a_tenant_without_json_history_is_read_from_csv(rig: Rig, v1_history: Any) -> None:
    rig.simulator.modes.history_json_501 = True
    lost: list[str] = []
    rig.simulator.play_mix(12, drop=0.0, lose_calls=0.5, lost=lost)
    report = run_sync({}, reconciler=Reconciler(history=v1_history, ledger=rig.ledger, region="RU"), now=soon)
    assert report["rows_seen"] == 12
    assert report["rejected"] == 0
    assert_converged(rig)
    assert len(history_reads(rig, "/history/json")) == 1
    assert history_reads(rig, "/history/csv")


def test_dynamodb_requests_per_reconciled_call(
    rig: Rig, contact_store: Any, monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]
) -> None:
    """What a reconciled call costs in DynamoDB requests, counted by operation and table through the
    real entry point (run_sync with the reconciler as configured, scenarios on), so the figure cannot
    creep back: per chunk of 100 calls one BatchGetItem of the calls, one of the contacts the
    scenarios would create, a BatchWriteItem per 25 old calls, a conditional PutItem per recent call
    and per contact nobody has yet; nothing per call beyond that."""
    from collections import Counter

    from pbxbridge.domain.contacts import Contact
    from pbxbridge.history_sync import default_reconciler
    from pbxbridge.settings import history_sync_settings
    from pbxbridge.storage.dynamodb import batch_dynamodb_client, dynamodb_client

    monkeypatch.setenv("SCENARIO_MISSED_CALL_LEADS", "true")
    monkeypatch.setenv("SCENARIO_OUTBOUND_CONTACTS", "true")
    history_sync_settings.cache_clear()
    rig.simulator.drop_rate = 1.0  # the webhook heard nothing: every call comes from the history
    now = datetime.now(tz=UTC).replace(microsecond=0)
    old, recent = now - timedelta(days=3), now - timedelta(hours=5)
    known = []
    for index in range(150):  # 50 answered, 50 missed (leads), 50 outbound (contacts); a backfill's
        phone, start = f"7916321{index:04d}", old + timedelta(minutes=index)
        if index % 3 == 0:
            rig.simulator.play_inbound(phone, start=start)
        elif index % 3 == 1:
            rig.simulator.play_inbound(phone, answered_by=None, start=start)
        else:
            rig.simulator.play_outbound("andy", phone, start=start)
        if index % 3 and index < 60:
            known.append(f"+{phone}")  # 40 of the 100 scenario numbers are contacts already
    for index in range(10):  # recent enough for a late push: created only if still missing
        rig.simulator.play_inbound(f"7916322{index:04d}", start=recent + timedelta(minutes=index))
    contact_store.put_contacts(Contact(phone=phone, contact_name="Known") for phone in known)
    tables = {aws["CallsTable"]: "calls", aws["ContactsTable"]: "contacts"}
    made: Counter[tuple[str, str]] = Counter()

    def count(model: Any, params: dict[str, Any], **_: Any) -> None:
        table = params.get("TableName") or next(iter(params.get("RequestItems", {})), "")
        made[(model.name, tables.get(table, table))] += 1

    clients = [dynamodb_client().meta.events, batch_dynamodb_client().meta.events]
    for events in clients:
        events.register("provide-client-params.dynamodb", count)
    try:
        reconciler, _ = default_reconciler(pbx=rig.client)
        setup = Counter(made)  # the directory, read once per run
        span = {"start": (old - timedelta(minutes=1)).isoformat(), "end": (now - timedelta(hours=1)).isoformat()}
        report = run_sync(span, reconciler=reconciler)
        first = made - setup
        made.clear()
        again = run_sync(span, reconciler=reconciler)
    finally:
        for events in clients:
            events.unregister("provide-client-params.dynamodb", count)
        history_sync_settings.cache_clear()

    assert (report["created"], report["rows_seen"]) == (160, 160)
    assert set(setup) <= {("Query", aws["DirectoryTable"]), ("Scan", aws["DirectoryTable"])}, setup
    # Three chunks: the old calls' window in 100 and 50 rows, the recent calls' window in 10.
    assert first == {
        ("BatchGetItem", "calls"): 3,
        ("BatchGetItem", "contacts"): 2,  # the recent calls were answered: no scenario, no read
        ("PutItem", "contacts"): 60,  # the scenario numbers nobody had
        ("BatchWriteItem", "calls"): 4 + 2,  # the 150 old calls, 25 to a request
        ("PutItem", "calls"): 10,  # the recent ones, each only if still missing
    }, first
    calls_requests = sum(n for (_, table), n in first.items() if table == "calls")
    assert calls_requests / 160 <= 0.12
    # Nothing left to do: one read per chunk, no contact read, no write.
    assert (again["already_reconciled"], again["created"]) == (160, 0)
    assert made == {("BatchGetItem", "calls"): 3}, made
    leads = contact_store.get_contacts([f"+7916321{index:04d}" for index in range(150) if index % 3 == 1])
    assert len(leads) == 50
    assert sum(1 for contact in leads.values() if contact.lead) == 30  # the 20 known numbers kept theirs


def test_a_call_listed_again_in_the_next_chunk_is_stored_once(rig: Rig) -> None:
    """The next chunk is looked up while the previous one is written: a call the PBX lists in both is
    found already reconciled the second time, as if the chunks had been stored one after the other."""
    from local.pbx_simulator import HistoryRecord
    from pbxbridge.pbx.client import parse_history_csv

    old = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(days=2)
    records = [
        HistoryRecord(
            f"dup-{index:04d}",
            "in",
            f"+7916555{index:04d}",
            "andy",
            "+74996861574",
            old + timedelta(seconds=index),
            3,
            40,
            "",
        )
        for index in range(250)
    ]
    records[130] = records[60]  # chunk 2 repeats a call of chunk 1; chunk 3 repeats one of chunk 1 too
    records[230] = records[10]
    lines = [record.csv_line(index).rstrip("\r\n") for index, record in enumerate(records)]

    class Listed:
        def history(self, **_: Any) -> Any:
            return parse_history_csv(iter(lines))

    report = Reconciler(history=Listed(), ledger=rig.ledger, region="RU").walk(
        old - timedelta(minutes=1), old + timedelta(hours=1), SyncReport(), advance=False, window=timedelta(hours=2)
    )
    assert (report.rows_seen, report.created, report.already_reconciled) == (250, 248, 2)
    assert len(rig.all_calls()) == 248


def test_on_v1_the_pbx_verdict_on_each_missed_call_is_kept(rig: Rig, v1_history: Any) -> None:
    """`process_missed` is asked for, and `missed_status` kept on missed calls only, on created and
    merged calls alike."""
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(hours=4)
    rig.simulator.drop_rate = 1.0  # whole calls only the history knows
    returned = rig.simulator.play_inbound("79100000001", answered_by=None, start=start)
    rig.simulator.play_outbound("mike", "79100000001", start=start + timedelta(minutes=5))
    rig.simulator.drop_rate = 0.0  # this one reached us by its pushes
    waiting = rig.simulator.play_inbound("79100000002", answered_by=None, start=start + timedelta(minutes=1))
    report = run_sync({}, reconciler=Reconciler(history=v1_history, ledger=rig.ledger, region="RU"), now=soon)
    assert (report["created"], report["merged"]) == (2, 1)
    assert all(r["query"].get("process_missed") == "1" for r in history_reads(rig, "/history/json"))
    calls = rig.all_calls()
    assert {callid: call.get("missed_status") for callid, call in calls.items()} == {
        returned: "2",
        waiting: "3",
        **{callid: None for callid in calls if callid not in (returned, waiting)},
    }
    assert calls[returned]["missed_status_at"] == calls[returned]["reconciled_at"]
