"""`make bench PARTS=load`: a busy office's calls played through `make run`'s stack, for as long as a
day's worth takes, with the process's memory watched.

The stack is the one `local.stack` starts (`serving`: the same `start`, in this process, as `make run`
runs it): the PBX simulator plays calls of every kind (answered, missed, outbound, unanswered; some
pushes sent twice) from several players at once, each push a real HTTP request to the webhook's
server, and the stream pollers hand every change to their functions as they would under `make run`.
Printed: pushes per second, the process's resident memory, and its growth per thousand pushes after
a warm-up (a line fitted through a sample taken after every batch), against a bound.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

LOAD_PUSHES = int(os.environ.get("BENCH_LOAD_PUSHES", "6000"))
# Growth a stack that holds a day of calls may show per thousand pushes: what the pushes leave for
# good (the items themselves, in moto's memory, and the simulator's own call history), with room for
# the allocator's noise. The release before this one grew ~1,800 MB per thousand.
GROWTH_BOUND_MB_PER_1000 = float(os.environ.get("BENCH_LOAD_GROWTH_BOUND_MB", "25"))
# The previous release's figure on the reference machine (2,400 pushes in 42 s).
PREVIOUS_PUSHES_PER_SECOND = 57.0
CRM_TOKEN = "bench-load-key"  # noqa: S105


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class LoadResult:
    pushes: int  # pushes sent after the warm-up
    seconds: float
    rss_start_mb: float  # after the warm-up
    rss_end_mb: float  # after the last push, once the streams were read
    samples: list[tuple[int, float]] = field(default_factory=list)  # (pushes so far, RSS MB)
    unanswered: int = 0  # pushes that got no answer or a 5xx

    @property
    def pushes_per_second(self) -> float:
        return self.pushes / self.seconds

    @property
    def growth_mb_per_1000(self) -> float:
        """The slope of RSS over pushes (least squares through every sample), per thousand pushes."""
        if len(self.samples) < 2:
            return (self.rss_end_mb - self.rss_start_mb) / max(self.pushes, 1) * 1000
        pushes, rss = zip(*self.samples, strict=True)
        return statistics.linear_regression(pushes, rss).slope * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "pushes": self.pushes,
            "seconds": self.seconds,
            "pushes_per_second": self.pushes_per_second,
            "rss_start_mb": self.rss_start_mb,
            "rss_end_mb": self.rss_end_mb,
            "growth_mb_per_1000_pushes": self.growth_mb_per_1000,
            "bound_mb_per_1000_pushes": GROWTH_BOUND_MB_PER_1000,
            "unanswered": self.unanswered,
        }


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """The functions' log lines (one or more per push) go nowhere while the load plays: a terminal
    taking 6,000 lines would be measured, not the stack. At the descriptor, so every stream is caught."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def play(
    stack: Any, pushes: int, *, warm_up: int = 300, players: int = 4, calls_per_batch: int = 10, clients: int = 40
) -> LoadResult:
    """Play calls through `stack`'s simulator until `pushes` more pushes were sent after `warm_up` ones."""
    url = f"{stack.pbx.url}/_simulator/calls"
    # An office's regular clients call again and again: their numbers' call-back ledgers grow.
    order = {"count": calls_per_batch, "drop": 0.0, "duplicate": 0.05, "lose_calls": 0.0, "clients": clients}
    session_of = threading.local()
    lock = threading.Lock()
    sent = 0
    samples: list[tuple[int, float]] = []

    def batch() -> int:
        session = getattr(session_of, "session", None) or requests.Session()
        session_of.session = session
        answer = session.post(url, json=order, timeout=120)
        answer.raise_for_status()
        return int(answer.json()["pushes_sent"])

    def player(until: int, sample: bool) -> None:
        nonlocal sent
        while True:
            with lock:
                if sent >= until:
                    return
            count = batch()
            with lock:
                sent += count
                if sample:
                    samples.append((sent, rss_mb()))

    def run(until: int, sample: bool) -> None:
        threads = [threading.Thread(target=player, args=(until, sample)) for _ in range(players)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run(warm_up, sample=False)
    stack_settled(stack)
    gc.collect()
    start_pushes, start_rss = sent, rss_mb()
    samples.append((sent, start_rss))
    started = time.perf_counter()
    run(start_pushes + pushes, sample=True)
    seconds = time.perf_counter() - started
    stack_settled(stack)
    gc.collect()
    end_rss = rss_mb()
    samples.append((sent, end_rss))
    played = stack.pbx.simulator.pushes
    unanswered = sum(1 for push in played if not push.dropped and (push.status is None or push.status >= 500))
    return LoadResult(
        pushes=sent - start_pushes,
        seconds=seconds,
        rss_start_mb=start_rss,
        rss_end_mb=end_rss,
        samples=[(count - start_pushes, rss) for count, rss in samples],
        unanswered=unanswered,
    )


def stack_settled(stack: Any, timeout: float = 120.0) -> None:
    """Wait until the stream pollers have read every change made so far (or `timeout` passes): no
    stream holds a record for a few rounds of polling in a row (what every poller has read is trimmed)."""
    from local.moto_bounds import unread_records

    tables = [table for table in stack.tables.values() if table]
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 4 and time.monotonic() < deadline:
        quiet = quiet + 1 if not any(unread_records(table) for table in tables) else 0
        time.sleep(0.3)


def load_benchmark(pushes: int = LOAD_PUSHES) -> dict[str, Any]:
    from local.aws import free_port
    from local.stack import serving

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # as `make run`: moto's server logs every request
    saved = dict(os.environ)
    try:
        with (
            _quiet_stdout(),
            serving(port=free_port(), dynamodb_port=free_port(), crm_token=CRM_TOKEN, short_logs=True) as stack,
        ):
            result = play(stack, pushes)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return result.as_dict()


def print_load(load: dict[str, Any]) -> None:
    growth, bound = load["growth_mb_per_1000_pushes"], load["bound_mb_per_1000_pushes"]
    print(f"\nThe local stack under load: {load['pushes']} pushes through `make run`'s stack (4 players at once)")
    print(
        f"{load['pushes_per_second']:.0f} pushes/s ({load['seconds']:.0f} s; the previous release "
        f"{PREVIOUS_PUSHES_PER_SECOND:.0f} pushes/s), {load['unanswered']} pushes unanswered or 5xx"
    )
    print(f"process memory {load['rss_start_mb']:.0f} MB after the warm-up, {load['rss_end_mb']:.0f} MB at the end")
    verdict = "within" if growth <= bound else "OVER"
    print(f"LOAD MEMORY GROWTH: {growth:.1f} MB per 1,000 pushes ({verdict} the bound of {bound:.0f} MB)")


if __name__ == "__main__":
    figures = load_benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else LOAD_PUSHES)
    print_load(figures)
