"""The webhook against AWS that fails: how long the PBX waits for an answer, and which answer it gets.

Each scenario runs in a fresh process with the template's handler and environment: SSM on the
embedded AWS (keys stored) unless SSM is the one failing, DynamoDB hanging (accepts, never answers)
or refusing (nothing listens). A first push reads the keys; then `contact` and `history` pushes are
timed from the handler's call to its answer (`history` reads the directory first, which fails
first; `rating` is one write alone). Targets: `contact` 1.0 s (answered `{}`), writes 3 s
(answered 503).
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench.probe import WEBHOOK_CALL, fresh_process, webhook_environment
from local.faults import HangingServer, refusing_url

PUSHES = int(os.environ.get("BENCH_FAULT_PUSHES", "5"))

PROBE = r"""
import json, os, sys, time
sys.path[:0] = [os.environ["BENCH_FUNCTION"]]
import app
key = os.environ["BENCH_KEY"]
# WEBHOOK_CALL
contact = "cmd=contact&phone=79101234567&callid=fault&crm_token=" + key
history = ("cmd=history&type=in&status=Success&phone=79101234567&user=andy&start=20260825T113440Z"
           "&duration=42&callid=fault-{}&crm_token=" + key)
def push(body):
    start = time.perf_counter()
    answer = app.lambda_handler(event(body, "fault"), Context())
    return time.perf_counter() - start, answer["statusCode"], answer["body"]
rating = "cmd=rating&rating=5&callid=fault-{}&crm_token=" + key
out = {"first": push(contact), "contact": [], "history": [], "rating": []}
for index in range(int(os.environ["BENCH_PUSHES"])):
    out["contact"].append(push(contact))
    out["history"].append(push(history.format(index)))
    out["rating"].append(push(rating.format(index)))
print(json.dumps(out), file=sys.stderr)
""".replace("# WEBHOOK_CALL\n", WEBHOOK_CALL)


def _run(env: dict[str, str]) -> dict[str, Any]:
    return fresh_process(PROBE, env)[1]


def _summary(samples: list[list[Any]]) -> dict[str, Any]:
    seconds = [sample[0] for sample in samples]
    return {
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "answers": sorted({f"{status} {body}" for _, status, body in samples}),
    }


def fault_benchmark(moto_url: str, key: str, layer: str) -> dict[str, Any]:
    base = {**webhook_environment(moto_url, key), "BENCH_PUSHES": str(PUSHES), "PYTHONPATH": layer}
    hanging = HangingServer()
    results: dict[str, Any] = {}
    try:
        for name, extra in (
            ("dynamodb_hangs", {"AWS_ENDPOINT_URL_DYNAMODB": hanging.url}),
            ("dynamodb_refuses", {"AWS_ENDPOINT_URL_DYNAMODB": refusing_url()}),
            ("ssm_hangs", {"AWS_ENDPOINT_URL_SSM": hanging.url}),
            ("ssm_refuses", {"AWS_ENDPOINT_URL_SSM": refusing_url()}),
        ):
            run = _run({**base, **extra})
            results[name] = {
                "first_contact": _summary([run["first"]]),
                "contact": _summary(run["contact"]),
                "history": _summary(run["history"]),
                "rating": _summary(run["rating"]),
            }
    finally:
        hanging.close()
    return results


def print_faults(results: dict[str, Any]) -> None:
    print(f"\nAgainst failing AWS, seconds to answer (median / max of {PUSHES}; targets: contact 1.0, write 3.0)")
    print(f"{'scenario':<18}{'1st contact':>12}{'contact':>16}{'history':>16}{'rating':>16}  answers")
    for name, row in results.items():
        first, contact = row["first_contact"], row["contact"]
        kinds = ("contact", "history", "rating")
        cells = "".join(f"{row[k]['median_s']:>8.2f} /{row[k]['max_s']:>5.2f}" for k in kinds)
        writes = ", ".join(sorted({*row["history"]["answers"], *row["rating"]["answers"]}))
        print(f"{name:<18}{first['max_s']:>12.2f}{cells}  contact {', '.join(contact['answers'])}; writes {writes}")
