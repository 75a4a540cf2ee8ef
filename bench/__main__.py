"""`make bench`: the webhook's cost against its floor, measured in the same run (and the widget's
live card against its push's round trip, `bench/card.py`; BENCH_CARD=0 skips it).

- warm cost per push (contact, history, event) through the template's handler in this process,
  against moto's server in another process, divided by the bare boto3 calls the push needs;
- cold start (a fresh process importing the handler from the layer as built, with its bytecode,
  and answering its first push), divided by a fresh `import boto3; boto3.client("dynamodb")`;
- peak memory of a handler process after its pushes.

Prints a table and writes bench-results.json.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import botocore

from bench.probe import WEBHOOK_CALL, aws_environment, fresh_process, webhook_environment

REPO = Path(__file__).resolve().parent.parent
WARM_PUSHES = int(os.environ.get("BENCH_PUSHES", "400"))
COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "12"))
CRM_TOKEN = "bench-key"  # noqa: S105


def timed(action: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000,
    }


def start_moto(port: int, bounded: bool = False) -> subprocess.Popen[bytes]:
    """moto's server in its own process (its memory is not the measured process's). `bounded`: with
    local.moto_bounds installed, as the local stack runs it (a transaction's rollback copies its own
    items, not whole tables): without it, every one of rebuildReports' transactions copies the tables."""
    server = ["-m", "moto.server"]
    if bounded:
        server = [
            "-c",
            "import sys; from local import moto_bounds; moto_bounds.install(); "
            "from moto.server import main; main(sys.argv[1:])",
        ]
    process = subprocess.Popen(
        [sys.executable, *server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto server did not start")


def warm_benchmark(moto_url: str, template: Any) -> dict[str, Any]:
    from local.apigw import http_api_event
    from local.aws import client
    from local.lambdas import LocalFunction

    function = LocalFunction(template.functions()["WebhookFunction"])
    dynamodb = client("dynamodb", moto_url)
    counter = iter(range(10**9))

    def event(**fields: str) -> dict[str, Any]:
        body = urlencode({**fields, "crm_token": CRM_TOKEN}).encode()
        return http_api_event(
            "POST", "/pbx", "/pbx", body, headers=[("content-type", "application/x-www-form-urlencoded")]
        )

    def contact() -> None:
        function.invoke(event(cmd="contact", phone="79101234567", callid="bench"))

    def history() -> None:
        function.invoke(
            event(
                cmd="history",
                type="in",
                status="Success",
                phone="79101234567",
                user="andy",
                start="20260825T113440Z",
                duration="42",
                callid=f"h{next(counter)}",
            )
        )

    def event_push() -> None:
        function.invoke(
            event(cmd="event", type="INCOMING", phone="79101234567", user="andy", callid=f"e{next(counter)}")
        )

    def floor_of(push: Callable[[], None]) -> Callable[[], None]:
        """The bare boto3 calls this push makes: its own requests, recorded once, replayed as they were
        (with a fresh call id each time, so a write is never a no-op the push would not have met)."""
        recorded: list[tuple[str, dict[str, Any]]] = []

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            recorded.append((model.name, copy.deepcopy(params)))

        from pbxbridge.storage.dynamodb import dynamodb_client

        hooks = dynamodb_client().meta.events
        hooks.register("provide-client-params.dynamodb", record)
        push()
        hooks.unregister("provide-client-params.dynamodb", record)
        methods = [(getattr(dynamodb, botocore.xform_name(name)), params) for name, params in recorded]

        def replay() -> None:
            callid = {"S": f"floor{next(counter)}"}
            for method, params in methods:
                for key in ("Key", "Item"):
                    if "callid" in params.get(key, {}):
                        params[key]["callid"] = callid
                method(**params)

        return replay

    import io
    import logging
    from contextlib import redirect_stdout

    for handler in logging.getLogger("pbxbridge").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())  # keep the table readable; logging still formats each line
    results: dict[str, Any] = {}
    for name, push in (("contact", contact), ("history", history), ("event", event_push)):
        with redirect_stdout(io.StringIO()):  # metrics are printed (EMF); measured, but not shown
            push()  # warm: the first push also reads the keys and the directory, cached afterwards
            floor = floor_of(push)
            timed(push, 20)
            timed(floor, 20)
            # Push and floor alternate one by one, so drift on a shared machine (other processes'
            # load coming and going within seconds) affects both sides alike.
            pushes, floors = [], []
            for _ in range(WARM_PUSHES):
                pushes += timed(push, 1)
                floors += timed(floor, 1)
        handler_stats, floor_stats = summary(pushes), summary(floors)
        results[name] = {
            "handler": handler_stats,
            "floor": floor_stats,
            "ratio": handler_stats["median_ms"] / floor_stats["median_ms"],
        }
    return results


COLD_PROBE = r"""
import json, os, resource, sys, time
def peak_kb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
start, start_cpu = time.perf_counter(), time.process_time()
sys.path[:0] = [os.environ["BENCH_FUNCTION"], os.environ["BENCH_LAYER"]]
import app
imported, imported_cpu = time.perf_counter(), time.process_time()
# WEBHOOK_CALL
event = event("cmd=contact&phone=79101234567&callid=cold&crm_token=" + os.environ["BENCH_KEY"], "cold")
answer = app.lambda_handler(event, Context())
first, first_cpu = time.perf_counter(), time.process_time()
assert answer["statusCode"] == 200 and "Bench" in answer["body"], answer
for _ in range(int(os.environ.get("BENCH_MORE", "0"))):
    app.lambda_handler(event, Context())
print(json.dumps({"import_s": imported - start, "first_push_s": first - imported, "total_s": first - start,
                  "import_cpu_s": imported_cpu - start_cpu, "first_push_cpu_s": first_cpu - imported_cpu,
                  "maxrss_kb": peak_kb()}), file=sys.stderr)
""".replace("# WEBHOOK_CALL\n", WEBHOOK_CALL)

FLOOR_PROBE = r"""
import json, sys, time
start, start_cpu = time.perf_counter(), time.process_time()
import boto3
boto3.client("dynamodb")
print(json.dumps({"total_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu}), file=sys.stderr)
"""


def build_native_layer(target: Path, bytecode: bool) -> Path:
    """The layer as `sam build` makes it, but for this machine (same Makefile, native wheels)."""
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO / "layers/pbxbridge"),
            "build-PbxbridgeLayer",
            f"ARTIFACTS_DIR={target}",
            f"PYTHON={sys.executable}",
            "PLATFORM=",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    layer = target / "python"
    if not bytecode:
        for cache in layer.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    return layer


def cold_benchmark(moto_url: str) -> dict[str, Any]:
    # /opt is read-only in Lambda: nothing may be compiled and kept between cold starts.
    base_env = {**aws_environment(moto_url), "PYTHONDONTWRITEBYTECODE": "1"}
    env = {**webhook_environment(moto_url, CRM_TOKEN), "PYTHONDONTWRITEBYTECODE": "1"}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        layers = {
            "with_bytecode": build_native_layer(Path(tmp) / "pyc", bytecode=True),
            "without_bytecode": build_native_layer(Path(tmp) / "nopyc", bytecode=False),
        }
        floor_walls, floor_inner = [], []
        floor_cpu: list[float] = []
        runs: dict[str, dict[str, list[float]]] = {
            name: {"wall": [], "import": [], "first": [], "inner": [], "cpu_import": [], "cpu_first": []}
            for name in layers
        }
        for _ in range(COLD_STARTS):
            wall, inner = fresh_process(FLOOR_PROBE, base_env)
            floor_walls.append(wall)
            floor_inner.append(inner["total_s"])
            floor_cpu.append(inner["cpu_s"])
            for name, layer in layers.items():
                wall, inner = fresh_process(COLD_PROBE, {**env, "BENCH_LAYER": str(layer)})
                runs[name]["wall"].append(wall)
                runs[name]["import"].append(inner["import_s"])
                runs[name]["first"].append(inner["first_push_s"])
                runs[name]["inner"].append(inner["total_s"])
                runs[name]["cpu_import"].append(inner["import_cpu_s"])
                runs[name]["cpu_first"].append(inner["first_push_cpu_s"])
        _, memory = fresh_process(COLD_PROBE, {**env, "BENCH_LAYER": str(layers["with_bytecode"]), "BENCH_MORE": "500"})
        floor_ms = statistics.median(floor_inner) * 1000
        results["floor_ms"] = floor_ms
        results["floor_process_ms"] = statistics.median(floor_walls) * 1000
        results["floor_cpu_ms"] = statistics.median(floor_cpu) * 1000
        for name, samples in runs.items():
            inner_ms = statistics.median(samples["inner"]) * 1000
            results[name] = {
                "import_ms": statistics.median(samples["import"]) * 1000,
                "import_cpu_ms": statistics.median(samples["cpu_import"]) * 1000,
                "first_push_cpu_ms": statistics.median(samples["cpu_first"]) * 1000,
                "first_push_ms": statistics.median(samples["first"]) * 1000,
                "cold_ms": inner_ms,
                "process_ms": statistics.median(samples["wall"]) * 1000,
                "ratio": inner_ms / floor_ms,
                "process_ratio": statistics.median(samples["wall"]) / statistics.median(floor_walls),
            }
        results["peak_memory_mb_after_500_pushes"] = memory["maxrss_kb"] / 1024
    return results


PARTS = ("warm", "cold", "faults", "pbx", "sync", "card", "load", "report")


def main() -> None:
    """`python -m bench [PART ...]` runs the named parts (all by default): warm, cold, faults, pbx, sync, card,
    load (a busy office's calls through `make run`'s stack: pushes/s and memory growth, bench/load.py),
    report (the team report and rebuildReports over a month's calls, bench/reports.py; only when named).
    bench-results.json keeps the last figures of the parts not run."""
    # `report` runs only when named: moto cannot yet hold its month of calls (bench/reports.py).
    parts = sys.argv[1:] or [
        part for part in PARTS if part != "report" and (part != "sync" or os.environ.get("BENCH_SYNC", "1") == "1")
    ]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        sys.exit(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    from local.aws import free_port

    port = free_port()
    moto = start_moto(port)
    moto_url = f"http://127.0.0.1:{port}"
    from bench.faults import fault_benchmark, print_faults
    from bench.reconciliation import reconciliation_benchmark

    warm: dict[str, Any] = {}
    cold: dict[str, Any] = {}
    faults: dict[str, Any] = {}
    sync: dict[str, Any] = {}
    team: dict[str, Any] = {}
    try:
        if {"warm", "cold", "faults"} & set(parts):
            template = _provision(moto_url)
        if "warm" in parts:
            warm = warm_benchmark(moto_url, template)
        if "cold" in parts:
            cold = cold_benchmark(moto_url)
        if "faults" in parts:
            faults = fault_benchmark(moto_url, CRM_TOKEN, str(REPO / "layers/pbxbridge"))
        if "sync" in parts:
            sync = reconciliation_benchmark(moto_url)
        if "report" in parts:
            from bench.reports import report_benchmark

            team_port = free_port()
            team_moto = start_moto(team_port, bounded=True)
            try:
                team = report_benchmark(f"http://127.0.0.1:{team_port}")
            finally:
                team_moto.kill()
                team_moto.wait()
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # A loaded machine can keep it busy past the wait: never hide the run's own error behind this.
            moto.kill()
            moto.wait()
    from bench.pbx_client import command_overhead, history_streaming

    pbx = {"commands": command_overhead(WARM_PUSHES // 2), "history": history_streaming()} if "pbx" in parts else {}
    # The widget's live card (issue 9): push -> card on screen in headless Chromium, beside the push's round trip.
    from bench.card import card_benchmark, report

    card = card_benchmark() if "card" in parts and os.environ.get("BENCH_CARD", "1") == "1" else {}
    # The local stack under a day's load (issue 16): its own stack, in this process, as `make run` runs it.
    from bench.load import load_benchmark, print_load

    load = load_benchmark() if "load" in parts else {}
    path = REPO / "bench-results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results.update(python=sys.version.split()[0], warm_pushes=WARM_PUSHES, cold_starts=COLD_STARTS)
    parts_run = {"warm": warm, "cold": cold, "faults": faults, "pbx": pbx, "reconciliation": sync, "card": card}
    parts_run["load"] = load
    parts_run["report"] = team
    for name, figures in parts_run.items():
        if figures:
            results[name] = figures
    path.write_text(json.dumps(results, indent=2) + "\n")
    if warm and "warm" in parts:
        print_warm(warm)
    if cold:
        print_cold(cold)
    if faults:
        print_faults(faults)
    if pbx:
        print_pbx(pbx)
    if sync:
        print_sync(sync)
    if card:
        report(card)
    if load:
        print_load(load)
    if team:
        from bench.reports import print_reports

        print_reports(team)
    print("wrote bench-results.json")
    if load and load["growth_mb_per_1000_pushes"] > load["bound_mb_per_1000_pushes"]:
        sys.exit("the local stack's memory grew past its bound under load")


def _provision(moto_url: str) -> Any:
    """Tables, keys and the bench's contact on the embedded AWS; the template they came from."""
    from local.aws import client, create_tables, store_crm_keys, use_local_aws
    from local.template import Template

    use_local_aws(moto_url)
    template = Template()
    tables = create_tables(template, moto_url)
    store_crm_keys(template, moto_url, CRM_TOKEN)
    client("dynamodb", moto_url).put_item(
        TableName=tables["ContactsTable"],
        Item={"phone": {"S": "+79101234567"}, "contact_name": {"S": "Bench"}, "responsible": {"S": "andy"}},
    )
    return template


def print_warm(warm: dict[str, Any]) -> None:
    print(f"\nWarm push through the handler vs the bare boto3 calls it needs (moto server, {WARM_PUSHES} each)")
    print(f"{'push':<10}{'handler ms':>12}{'p95':>8}{'floor ms':>10}{'p95':>8}{'ratio':>8}")
    for name, row in warm.items():
        h, f = row["handler"], row["floor"]
        print(
            f"{name:<10}{h['median_ms']:>12.2f}{h['p95_ms']:>8.2f}{f['median_ms']:>10.2f}{f['p95_ms']:>8.2f}{row['ratio']:>8.2f}"
        )
    if "contact" in warm:
        print(f"WARM CONTACT RATIO (handler vs its bare GetItem): {warm['contact']['ratio']:.2f} (target 1.15)")


def print_cold(cold: dict[str, Any]) -> None:
    print(f"\nCold start: import + first contact push, in a fresh process (median of {COLD_STARTS})")
    print(
        f"floor (import boto3; boto3.client('dynamodb')): {cold['floor_ms']:.0f} ms in-process, "
        f"{cold['floor_process_ms']:.0f} ms whole process"
    )
    print(f"{'layer':<18}{'import ms':>10}{'1st push':>10}{'cold ms':>9}{'ratio':>7}{'process ms':>12}{'ratio':>7}")
    for name in ("with_bytecode", "without_bytecode"):
        row = cold[name]
        print(
            f"{name:<18}{row['import_ms']:>10.0f}{row['first_push_ms']:>10.0f}{row['cold_ms']:>9.0f}{row['ratio']:>7.2f}"
            f"{row['process_ms']:>12.0f}{row['process_ratio']:>7.2f}"
        )
    row = cold["with_bytecode"]
    cpu = row["import_cpu_ms"] + row["first_push_cpu_ms"]
    print(
        f"CPU time of the cold contact (with bytecode): {row['import_cpu_ms']:.0f} ms import + "
        f"{row['first_push_cpu_ms']:.0f} ms first push = {cpu:.0f} ms (floor {cold['floor_cpu_ms']:.0f} ms)"
    )
    print(f"COLD-START RATIO (import + first contact, with bytecode, vs the floor): {row['ratio']:.2f} (target 1.5)")
    # On a shared machine the wall clock moves with the neighbours' load; CPU time much less.
    print(f"cold-start ratio in CPU time: {cpu / cold['floor_cpu_ms']:.2f}")
    print(f"\nPeak memory of a handler process after 500 pushes: {cold['peak_memory_mb_after_500_pushes']:.0f} MB")


def print_pbx(pbx: dict[str, Any]) -> None:
    print("\nPBX client vs a bare requests Session.post of the same form (simulator in its own process)")
    print(f"{'command':<10}{'client ms':>11}{'floor ms':>10}{'ratio':>8}")
    for name, row in pbx["commands"].items():
        print(f"{name:<10}{row['client_ms']:>11.2f}{row['floor_ms']:>10.2f}{row['ratio']:>8.2f}")
    print("\nHistory CSV streamed from the simulator")
    for count, row in pbx["history"].items():
        if isinstance(row, dict):
            print(
                f"{int(count):>8} rows: {row['rows_per_second']:>9.0f} rows/s, process peak {row['peak_mb']:.0f} MB "
                f"(+{row['growth_mb']:.1f} MB while streaming)"
            )
    print(f"parsing alone: {pbx['history']['parse_only_rows_per_second']:.0f} rows/s")


def print_sync(sync: dict[str, Any]) -> None:
    if sync:
        print(
            "\nReconciliation: history rows from the simulator into DynamoDB vs bare batch_write_item of the same items"
        )
        for count, row in sync.items():
            print(
                f"{int(count):>8} rows: {row['seconds']:.1f} s ({row['rows_per_second']:.0f} rows/s), floor "
                f"{row['floor_seconds']:.1f} s, ratio {row['ratio']:.2f}; peak {row['peak_mb']:.0f} MB "
                f"(+{row['growth_mb']:.1f} MB during the run)"
            )
            if "requests" in row:
                print_sync_breakdown(int(count), row)


def print_sync_breakdown(count: int, row: dict[str, Any]) -> None:
    """Where the run's requests and time went, beside the floor's (its requests, in sequence)."""
    made = row["requests"]
    total = sum(op["count"] for op in made.values())
    print(
        f"{'':>10}requests: {total} ({total / count * 100:.2f} per 100 rows; floor {row['floor_requests']}, "
        f"{row['floor_requests'] / count * 100:.2f} per 100 rows)"
    )
    for name, op in sorted(made.items(), key=lambda item: -item[1]["seconds"]):
        each_ms = op["seconds"] / op["count"] * 1000
        print(f"{'':>12}{name:<16}{op['count']:>7}  {op['seconds']:>6.1f} s  ({each_ms:.1f} ms each)")
    print(
        f"{'':>12}{'PBX history':<16}{'':>7}  {row['history_seconds']:>6.1f} s  (the stream and the CSV parsing)\n"
        f"{'':>12}{'rows to calls':<16}{'':>7}  {row['calls_seconds']:>6.1f} s  (phones, attribution)\n"
        f"{'':>12}CPU of the run: {row['cpu_seconds']:.1f} s; the history and the calls are read while the "
        "previous chunk is stored, so the parts overlap"
    )


if __name__ == "__main__":
    main()
