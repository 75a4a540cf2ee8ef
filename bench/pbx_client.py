"""The PBX client's share of `make bench`: its overhead per command, and history streaming."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import requests

from local.aws import free_port

PBX_TOKEN = "bench-pbx-key"  # noqa: S105
HISTORY_ROWS = (10_000, 100_000)


def start_simulator(history_rows: int) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator in its own process, so its work is not counted against the client's."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.pbx_simulator",
            "--port",
            str(port),
            "--token",
            PBX_TOKEN,
            "--history-rows",
            str(history_rows),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/sys/crm_api.wcgp"
    for _ in range(300):
        try:
            requests.post(url, data={"cmd": "get_dnd", "token": PBX_TOKEN, "user": "andy"}, timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the simulator did not start")


def _median_ms(action: Callable[[], Any], repeat: int) -> float:
    for _ in range(10):
        action()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def command_overhead(repeat: int) -> dict[str, Any]:
    from pbxbridge.pbx import PbxClient

    process, url = start_simulator(0)
    try:
        client = PbxClient(url, PBX_TOKEN)
        bare = requests.Session()  # the floor: the same form, the same keep-alive, nothing else

        def floor(form: dict[str, str]) -> Callable[[], Any]:
            return lambda: bare.post(url, data={**form, "token": PBX_TOKEN}, timeout=10).content

        cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "accounts": (client.accounts, floor({"cmd": "accounts"})),
            "get_dnd": (lambda: client.get_dnd("andy"), floor({"cmd": "get_dnd", "user": "andy"})),
            "makeCall": (
                lambda: client.make_call("+7 910 123-45-67", "andy"),
                floor({"cmd": "makeCall", "phone": "79101234567", "user": "andy"}),
            ),
        }
        results: dict[str, Any] = {}
        for name, (through_client, bare_post) in cases.items():
            client_ms, floor_ms = _median_ms(through_client, repeat), _median_ms(bare_post, repeat)
            results[name] = {"client_ms": client_ms, "floor_ms": floor_ms, "ratio": client_ms / floor_ms}
        client.close()
        return results
    finally:
        process.terminate()
        process.wait(timeout=10)


HISTORY_PROBE = r"""
import json, resource, sys, time
def peak_kb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from datetime import datetime, UTC
from pbxbridge.pbx import PbxClient
from pbxbridge.pbx.models import HistoryRow
client = PbxClient(sys.argv[1], sys.argv[2], history_read_timeout=120)
client.get_dnd("andy")  # connections and imports warmed: what follows is the stream
before = peak_kb()
start = time.perf_counter()
rows = sum(1 for row in client.history(start=datetime(2020, 1, 1, tzinfo=UTC)) if isinstance(row, HistoryRow))
elapsed = time.perf_counter() - start
after = peak_kb()
print(json.dumps({"rows": rows, "seconds": elapsed, "peak_mb": after / 1024, "growth_mb": (after - before) / 1024}))
"""


def run_against_simulator(
    rows: int, probe: str, env: dict[str, str] | None = None, timeout: float = 600
) -> dict[str, Any]:
    """Run `probe` in a fresh process against a simulator seeded with `rows` calls; its last line of
    stdout is JSON."""
    process, url = start_simulator(rows)
    try:
        run = subprocess.run(
            [sys.executable, "-c", probe, url, PBX_TOKEN],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    measured: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return measured


def history_streaming() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in HISTORY_ROWS:
        measured = run_against_simulator(count, HISTORY_PROBE)
        assert measured["rows"] == count, measured
        measured["rows_per_second"] = count / measured["seconds"]
        results[str(count)] = measured
    # Parsing alone, on lines already in memory: the client's own cost per row.
    from pbxbridge.pbx.client import parse_history_csv
    from pbxbridge.pbx.models import HistoryRow

    lines = [
        f"{i:08d}-9f0c-4c1b-8a55-0242ac120002,in,+79101234567,andy@tenant.example.ru,+74996861574,"
        f"2026-01-01T00:00:{i % 60:02d}+03:00,5,42,https://tenant.example.ru/records/{i}.mp3"
        for i in range(100_000)
    ]
    start = time.perf_counter()
    parsed = sum(1 for row in parse_history_csv(lines) if isinstance(row, HistoryRow))
    results["parse_only_rows_per_second"] = parsed / (time.perf_counter() - start)
    return results
