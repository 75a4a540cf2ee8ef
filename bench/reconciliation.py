"""Reconciliation's share of `make bench`: history rows from the simulator into DynamoDB, against
bare `batch_write_item` of the same items, and the memory of the run as the rows grow."""

from __future__ import annotations

import sys
import time
from typing import Any

import requests

from bench.pbx_client import run_against_simulator

SIZES = (10_000, 100_000)

PROBE = r"""
import json, os, resource, sys, threading, time
def peak_kb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from datetime import UTC, datetime, timedelta
import pbxbridge.domain.reconciliation as reconciliation
from pbxbridge.domain.reconciliation import Reconciler, SyncReport
from pbxbridge.pbx import PbxClient
from pbxbridge.storage.dynamodb import batch_dynamodb_client
from pbxbridge.storage.watermark import DynamoLedger

# Where the time goes: each DynamoDB request by operation (count, seconds from its call to its
# answer, botocore's own work included), the PBX's history (the HTTP stream and the CSV parsing, timed
# at each row handed out), and the rows made into calls (phones, attribution). The requests run in
# the storing thread while the next rows are read: the parts overlap and add up to more than the run.
requests_made, spent = {}, {"history": 0.0, "calls": 0.0}
def sent(context, **_):
    context["bench_sent"] = time.perf_counter()
def answered(model, context, **_):
    row = requests_made.setdefault(model.name, [0, 0.0])
    row[0] += 1
    row[1] += time.perf_counter() - context["bench_sent"]
events = batch_dynamodb_client().meta.events
events.register("before-call.dynamodb", sent)
events.register("after-call.dynamodb", answered)
class TimedHistory:
    def __init__(self, pbx):
        self.pbx = pbx
    def history(self, **kwargs):
        rows = self.pbx.history(**kwargs)
        while True:
            started = time.perf_counter()
            row = next(rows, None)
            spent["history"] += time.perf_counter() - started
            if row is None:
                return
            yield row
to_call = reconciliation.call_from_row
def timed_call_from_row(*args):
    started = time.perf_counter()
    try:
        return to_call(*args)
    finally:
        spent["calls"] += time.perf_counter() - started
reconciliation.call_from_row = timed_call_from_row

client = PbxClient(sys.argv[1], sys.argv[2], history_read_timeout=600)
ledger = DynamoLedger(batch_dynamodb_client(), "CallsTable", "SyncStateTable")
reconciler = Reconciler(history=TimedHistory(client), ledger=ledger, region="RU", limit=1_000_000)
client.get_dnd("andy")
before = peak_kb()
start, start_cpu = time.perf_counter(), time.process_time()
report = reconciler.walk(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), SyncReport(),
                         advance=True, window=timedelta(days=400))
elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
after = peak_kb()
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "created": report.created, "rows": report.rows_seen,
                  "peak_mb": after / 1024, "growth_mb": (after - before) / 1024,
                  "requests": {name: {"count": n, "seconds": s} for name, (n, s) in requests_made.items()},
                  "history_seconds": spent["history"], "calls_seconds": spent["calls"]}))
"""


def _reset(moto_url: str) -> None:
    from local.aws import create_tables
    from local.template import Template

    requests.post(f"{moto_url}/moto-api/reset", timeout=30).raise_for_status()
    create_tables(Template(), moto_url)


def _items(count: int) -> list[dict[str, Any]]:
    """The items reconciliation writes for the simulator's seeded rows (the same records, through the
    same CSV lines and conversion)."""
    from datetime import UTC, datetime

    from local.pbx_simulator import PbxSimulator, seeded_history
    from pbxbridge.domain.reconciliation import call_from_row
    from pbxbridge.pbx.client import parse_history_csv
    from pbxbridge.pbx.models import HistoryRow
    from pbxbridge.storage.dynamodb import serialize
    from pbxbridge.storage.watermark import _history_call_item

    lines = (record.csv_line(i).rstrip("\r\n") for i, record in enumerate(seeded_history(count, PbxSimulator.via)))
    now = datetime.now(tz=UTC)
    return [
        {k: serialize(v) for k, v in _history_call_item(call_from_row(row, "RU"), now).items()}
        for row in parse_history_csv(lines)
        if isinstance(row, HistoryRow)
    ]


def _bare_batch_writes(moto_url: str, items: list[dict[str, Any]]) -> tuple[float, int]:
    """Seconds, and requests made."""
    from local.aws import client

    dynamodb = client("dynamodb", moto_url)
    requests_made = 0
    start = time.perf_counter()
    for offset in range(0, len(items), 25):
        request = {"CallsTable": [{"PutRequest": {"Item": item}} for item in items[offset : offset + 25]]}
        while request:
            requests_made += 1
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
    return time.perf_counter() - start, requests_made


def reconciliation_benchmark(moto_url: str) -> dict[str, Any]:
    from local.aws import local_aws_environment

    env = {**local_aws_environment(moto_url), "PATH": "/usr/bin:/bin"}
    results: dict[str, Any] = {}
    for count in SIZES:
        _reset(moto_url)
        measured = run_against_simulator(count, PROBE, env={**env, "PYTHONPATH": ":".join(sys.path)}, timeout=3600)
        assert measured["created"] == count, measured
        _reset(moto_url)
        floor, floor_requests = _bare_batch_writes(moto_url, _items(count))
        measured.update(
            floor_seconds=floor,
            floor_requests=floor_requests,
            ratio=measured["seconds"] / floor,
            rows_per_second=count / measured["seconds"],
        )
        results[str(count)] = measured
    return results
