"""The team report's share of `make bench` (issue 15): a month, 50 managers in 3 departments.

- Loading: the calls (and the call-backs of the missed ones) are written to their tables as
  batches, then the figures are computed by the commands function's `rebuildReports`, page after page,
  as an operator would after a calendar change. Not through the stream function: moto's streams
  hand records over one shard-iterator poll at a time, so 100,000 calls would take most of an hour;
  `rebuildReports` works each item out through the same contribution functions and the same
  transactional store (`DynamoReportStore`), so the aggregates are the ones the stream would keep.
- The `report` command warm, through the commands function in this process (viewer: a supervisor,
  then an admin, as the widget asks), against its floor: the bare paginated Query of the same
  day-person items. Its DynamoDB requests counted by operation; p50/p95 ms; the ratio.
- The from-scratch rebuild at two sizes: calls/s, and the process's RSS growth during it (sampled),
  to show memory flat as the calls grow (the rebuild streams Scan pages, never the table).

Sizes: REPORT_CALLS (default 16,000; the issue's figure is REPORT_CALLS=100000), the small size a
quarter of it.

Measured (docs/benchmarks.md, "Reports"): the report is at its floor (ratio ~1.0: 30 day Queries, the
directory and the calendar), and the rebuild's memory is flat as the calls grow. moto's server runs
with local.moto_bounds (bench/__main__.py), as the local stack does: without it each of the
rebuild's transactions copied every table, and moto grew to gigabytes at 2,000 calls. In absolute
terms the report is as slow as moto's Query, which reads the whole table (contributions included)
for every request where DynamoDB reads only the day's items. Hence `make bench` runs this part only
when named (~3 minutes at REPORT_CALLS=2000).
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests

PEOPLE = 50
DEPARTMENTS = ("sales", "support", "retail")
MONTH = [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]
REPORT_CALLS = int(os.environ.get("REPORT_CALLS", "16000"))
REPEAT = int(os.environ.get("REPORT_REPEAT", "60"))


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class PeakRss:
    """The process's RSS sampled every 20 ms while the block runs: its growth over the start."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = _rss_kb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_kb())

    def __exit__(self, *_: Any) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_kb())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1024


def _reset(moto_url: str) -> dict[str, str]:
    from local.aws import create_tables
    from local.template import Template

    requests.post(f"{moto_url}/moto-api/reset", timeout=30).raise_for_status()
    return create_tables(Template(), moto_url)


def _logins() -> list[str]:
    return [f"m{n:02d}" for n in range(PEOPLE)]


def _seed_directory(tables: dict[str, str]) -> None:
    from pbxbridge.domain.directory import Department, PbxUser
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    store = DynamoDirectoryStore(dynamodb_client(), tables["DirectoryTable"])
    for n, login in enumerate(_logins()):
        store.save_user(PbxUser(login=login, real_name=f"Manager {n}", groups=(DEPARTMENTS[n % 3],)))
    for department in DEPARTMENTS:
        store.save_department(Department(id=department, real_name=department.title()))
    store.save_user(
        PbxUser(login="boss", real_name="Sales Head", groups=("sales",), pbx_role="group_head"), pbx_says_role=True
    )
    store.save_user(PbxUser(login="root", real_name="Admin", pbx_role="admin"), pbx_says_role=True)


def _write_calls(moto_url: str, tables: dict[str, str], count: int) -> int:
    """`count` finished calls over the month (a fifth of the inbound ones missed, each with its
    call-back, most closed); returns the call-backs written."""
    from local.aws import client

    dynamodb = client("dynamodb", moto_url)
    rng = random.Random(count)
    logins = _logins()
    start = datetime(2026, 10, 31, 21, 0, tzinfo=UTC)  # 1 November 00:00 in Moscow
    calls: list[dict[str, Any]] = []
    callbacks: list[dict[str, Any]] = []

    def text(value: Any) -> dict[str, str]:
        return {"S": str(value)}

    def flush(table: str, items: list[dict[str, Any]]) -> None:
        for offset in range(0, len(items), 25):
            request = {table: [{"PutRequest": {"Item": item}} for item in items[offset : offset + 25]]}
            while request:
                request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        items.clear()

    for n in range(count):
        started = start + timedelta(seconds=rng.randrange(30 * 86400))
        stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
        login = rng.choice(logins)
        inbound = rng.random() < 0.7
        answered = not inbound or rng.random() > 0.2
        item = {
            "callid": text(f"c{n}"),
            "started_at": text(stamp),
            "direction": text("in" if inbound else "out"),
            "outcome": text("answered" if answered else "missed"),
            "pbx_user": text(login),
            "client": text(f"+7910{n:07d}"),
            "duration": {"N": str(rng.randrange(10, 600))},
            "wait": {"N": str(rng.randrange(0, 40))},
        }
        if rng.random() < 0.3:
            item["rating"] = {"N": str(rng.randrange(1, 6))}
        calls.append(item)
        if inbound and not answered:
            ident = f"+7910{n:07d}/c{n}"
            callback = {
                "phone": text(f"+7910{n:07d}"),
                "sk": text(f"callback#{ident}"),
                "id": text(ident),
                "owner": text(login),
                "first_missed_at": text(stamp),
                "status": text("open"),
            }
            if rng.random() < 0.85:
                closed = started + timedelta(seconds=rng.randrange(60, 6 * 3600))
                callback["status"] = text("closed")
                callback["closed_at"] = text(closed.strftime("%Y-%m-%dT%H:%M:%SZ"))
            callbacks.append(callback)
        if len(calls) >= 500:
            flush(tables["CallsTable"], calls)
        if len(callbacks) >= 500:
            flush(tables["CallbacksTable"], callbacks)
    flush(tables["CallsTable"], calls)
    flush(tables["CallbacksTable"], callbacks)
    scanned = dynamodb.scan(TableName=tables["CallbacksTable"], Select="COUNT")
    written_callbacks: int = scanned["Count"]
    while "LastEvaluatedKey" in scanned:
        scanned = dynamodb.scan(
            TableName=tables["CallbacksTable"], Select="COUNT", ExclusiveStartKey=scanned["LastEvaluatedKey"]
        )
        written_callbacks += scanned["Count"]
    return written_callbacks


def _rebuild(commands: Any) -> dict[str, Any]:
    totals = {"calls": 0, "callbacks": 0, "changed": 0, "requests": 0}
    request: dict[str, Any] = {"cmd": "rebuildReports", "from": MONTH[0].isoformat(), "to": MONTH[-1].isoformat()}
    request["limit"] = 20000
    while True:
        answer = commands.invoke(request)
        assert answer["ok"], answer
        totals["requests"] += 1
        for name in ("calls", "callbacks", "changed"):
            totals[name] += answer["result"][name]
        if answer["result"]["cursor"] is None:
            return totals
        request["cursor"] = answer["result"]["cursor"]


def _percentile_ms(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * share + 0.5) - 1)] * 1000


def _report_vs_floor(moto_url: str, tables: dict[str, str], commands: Any) -> dict[str, Any]:
    from local.aws import client
    from pbxbridge.storage.dynamodb import dynamodb_client

    bare = client("dynamodb", moto_url)
    made: dict[str, int] = {}

    def counted(model: Any, **_: Any) -> None:
        made[model.name] = made.get(model.name, 0) + 1

    def floor() -> int:
        items = 0
        for day in MONTH:
            page: dict[str, Any] = {"LastEvaluatedKey": None}
            while "LastEvaluatedKey" in page:
                start = {"ExclusiveStartKey": page["LastEvaluatedKey"]} if page["LastEvaluatedKey"] else {}
                page = bare.query(
                    TableName=tables["ReportsTable"],
                    KeyConditionExpression="pk = :day",
                    ExpressionAttributeValues={":day": {"S": f"day#{day.isoformat()}"}},
                    **start,
                )
                items += len(page["Items"])
        return items

    results: dict[str, Any] = {}
    request = {"cmd": "report", "from": MONTH[0].isoformat(), "to": MONTH[-1].isoformat()}
    hooks = dynamodb_client().meta.events
    for viewer in ("boss", "root"):
        ask = {**request, "viewer": viewer}
        answer = commands.invoke(ask)  # warm: the first answer pays the imports
        assert answer["ok"], answer
        assert len(answer["result"]["days"]) == len(MONTH)
        made.clear()
        hooks.register("before-call.dynamodb", counted)
        commands.invoke(ask)
        hooks.unregister("before-call.dynamodb", counted)
        reads = dict(made)
        items = floor()
        reports, floors = [], []
        for _ in range(REPEAT):  # one by one, so a neighbour's load hits both sides alike
            started = time.perf_counter()
            commands.invoke(ask)
            reports.append(time.perf_counter() - started)
            started = time.perf_counter()
            floor()
            floors.append(time.perf_counter() - started)
        p50, floor_p50 = _percentile_ms(reports, 0.5), _percentile_ms(floors, 0.5)
        results[viewer] = {
            "people": len(answer["result"]["managers"]),
            "reads": reads,
            "day_person_items": items,
            "p50_ms": p50,
            "p95_ms": _percentile_ms(reports, 0.95),
            "floor_p50_ms": floor_p50,
            "floor_p95_ms": _percentile_ms(floors, 0.95),
            "ratio": p50 / floor_p50,
        }
    return results


def _patient_client() -> None:
    """The process's DynamoDB client with patient timeouts: the same requests, but moto's Scan reads
    the whole table for every page (the rebuild's pages grow with the table, unlike DynamoDB's), which
    on a shared machine outlasts the functions' 1 s read timeout. Measured the same either way."""
    import pbxbridge.storage.dynamodb as storage
    from pbxbridge.aws import bounded_client

    storage.dynamodb_client.cache_clear()
    setattr(  # noqa: B010 (the module's own name for it, replaced while the cache fills)
        storage, "bounded_client", lambda service, **_: bounded_client(service, connect_timeout=2, read_timeout=60)
    )
    try:
        storage.dynamodb_client()
    finally:
        setattr(storage, "bounded_client", bounded_client)  # noqa: B010


def report_benchmark(moto_url: str) -> dict[str, Any]:
    import io
    import logging
    from contextlib import redirect_stdout

    from local.aws import use_local_aws
    from local.lambdas import LocalFunction
    from local.template import Template

    began = time.perf_counter()
    use_local_aws(moto_url)
    _patient_client()
    for handler in logging.getLogger("pbxbridge").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())
    results: dict[str, Any] = {"sizes": {}}
    commands: Any = None
    for count in (REPORT_CALLS // 4, REPORT_CALLS):
        tables = _reset(moto_url)
        _seed_directory(tables)
        written = time.perf_counter()
        callbacks = _write_calls(moto_url, tables, count)
        write_seconds = time.perf_counter() - written
        with redirect_stdout(io.StringIO()):
            if commands is None:
                commands = LocalFunction(Template().functions()["CommandsFunction"])
                commands.invoke({"cmd": "getWorkingHours"})  # the imports, paid before the clock starts
            with PeakRss() as memory:
                started = time.perf_counter()
                rebuilt = _rebuild(commands)
                seconds = time.perf_counter() - started
        assert (rebuilt["calls"], rebuilt["callbacks"]) == (count, callbacks), rebuilt
        results["sizes"][str(count)] = {
            "calls": count,
            "callbacks": callbacks,
            "write_seconds": write_seconds,
            "rebuild_seconds": seconds,
            "items_per_second": (count + callbacks) / seconds,
            "calls_per_second": count / seconds,
            "rebuild_requests": rebuilt["requests"],
            "rss_growth_mb": memory.growth_mb,
            "rss_peak_mb": memory.peak / 1024,
        }
    with redirect_stdout(io.StringIO()):
        results["report"] = _report_vs_floor(moto_url, tables, commands)
    results["calls_for_report"] = REPORT_CALLS
    results["seconds"] = time.perf_counter() - began
    return results


def print_reports(results: dict[str, Any]) -> None:
    print(f"\nTeam report: a month, {PEOPLE} managers in {len(DEPARTMENTS)} departments ({results['seconds']:.0f} s)")
    print("rebuildReports from scratch (commands function, pages of 20,000 items read):")
    for row in results["sizes"].values():
        print(
            f"{row['calls']:>8} calls + {row['callbacks']:>6} call-backs: {row['rebuild_seconds']:.1f} s, "
            f"{row['calls_per_second']:.0f} calls/s ({row['items_per_second']:.0f} items/s), "
            f"{row['rebuild_requests']} commands; RSS +{row['rss_growth_mb']:.1f} MB (peak {row['rss_peak_mb']:.0f} MB)"
        )
    calls = results["calls_for_report"]
    print(f"report command warm over the aggregates of {calls} calls vs the bare Query of its items")
    for viewer, row in results["report"].items():
        reads = ", ".join(f"{name} {n}" for name, n in sorted(row["reads"].items()))
        print(
            f"  viewer {viewer:<5} ({row['people']} people): {row['p50_ms']:.1f} ms p50, {row['p95_ms']:.1f} p95; "
            f"floor {row['floor_p50_ms']:.1f} / {row['floor_p95_ms']:.1f} ms ({row['day_person_items']} items); "
            f"ratio {row['ratio']:.2f}; reads: {reads}"
        )
    worst = max(row["p95_ms"] for row in results["report"].values())
    print(f"REPORT WARM p95: {worst:.1f} ms (target 300 ms)")
