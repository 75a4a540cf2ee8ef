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
import json, os, resource, sys, time
def peak_kb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from datetime import UTC, datetime, timedelta
from pbxbridge.domain.reconciliation import Reconciler, SyncReport
from pbxbridge.pbx import PbxClient
from pbxbridge.storage.dynamodb import batch_dynamodb_client
from pbxbridge.storage.watermark import DynamoLedger
client = PbxClient(sys.argv[1], sys.argv[2], history_read_timeout=600)
ledger = DynamoLedger(batch_dynamodb_client(), "CallsTable", "SyncStateTable")
reconciler = Reconciler(history=client, ledger=ledger, region="RU", limit=1_000_000)
client.get_dnd("andy")
before = peak_kb()
start = time.perf_counter()
report = reconciler.walk(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), SyncReport(),
                         advance=True, window=timedelta(days=400))
elapsed = time.perf_counter() - start
after = peak_kb()
print(json.dumps({"seconds": elapsed, "created": report.created, "rows": report.rows_seen,
                  "peak_mb": after / 1024, "growth_mb": (after - before) / 1024}))
"""


def _reset(moto_url: str) -> None:
    from local.aws import create_tables
    from local.template import Template

    requests.post(f"{moto_url}/moto-api/reset", timeout=30).raise_for_status()
    create_tables(Template(), moto_url)


def _items(count: int) -> list[dict[str, Any]]:
    """The items reconciliation writes for the simulator's seeded rows (same calls, same attributes)."""
    from datetime import UTC, datetime, timedelta

    from local.pbx_simulator import HistoryRecord
    from pbxbridge.domain.reconciliation import call_from_row
    from pbxbridge.pbx.client import parse_history_csv
    from pbxbridge.pbx.models import HistoryRow
    from pbxbridge.storage.dynamodb import serialize
    from pbxbridge.storage.watermark import _history_call_item

    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = (
        HistoryRecord(
            f"{i:08d}-9f0c-4c1b-8a55-0242ac120002",
            ("in", "out", "missed")[i % 3],
            f"+7910{i % 10_000_000:07d}",
            "andy@tenant.example.ru",
            "+74996861574",
            start + timedelta(seconds=i),
            i % 30,
            i % 600,
            "",
        )
        .csv_line(i)
        .rstrip("\r\n")
        for i in range(count)
    )
    now = datetime.now(tz=UTC)
    return [
        {k: serialize(v) for k, v in _history_call_item(call_from_row(row, "RU"), now).items()}
        for row in parse_history_csv(lines)
        if isinstance(row, HistoryRow)
    ]


def _bare_batch_writes(moto_url: str, items: list[dict[str, Any]]) -> float:
    from local.aws import client

    dynamodb = client("dynamodb", moto_url)
    start = time.perf_counter()
    for offset in range(0, len(items), 25):
        request = {"CallsTable": [{"PutRequest": {"Item": item}} for item in items[offset : offset + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
    return time.perf_counter() - start


def reconciliation_benchmark(moto_url: str) -> dict[str, Any]:
    from local.aws import local_aws_environment

    env = {**local_aws_environment(moto_url), "PATH": "/usr/bin:/bin"}
    results: dict[str, Any] = {}
    for count in SIZES:
        _reset(moto_url)
        measured = run_against_simulator(count, PROBE, env={**env, "PYTHONPATH": ":".join(sys.path)}, timeout=3600)
        assert measured["created"] == count, measured
        _reset(moto_url)
        floor = _bare_batch_writes(moto_url, _items(count))
        measured.update(
            floor_seconds=floor, ratio=measured["seconds"] / floor, rows_per_second=count / measured["seconds"]
        )
        results[str(count)] = measured
    return results
