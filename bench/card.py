"""The live card's latency on the local stack: from the PBX's INCOMING push leaving to the card on
screen in a real headless Chromium, beside the floor of that push's own round trip, in the same run.

The page marks the moment the card's element is added (a MutationObserver, Date.now() on the same
machine's clock as the sender); the path between is the template's: webhook -> CallsTable ->
change stream (polled four times a second, as Lambda does) -> CardFunction -> the management API's
@connections -> the WebSocket server -> the browser.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from typing import Any

import requests

from local.browser import CHROMIUM, CHROMIUM_ARGS

CRM_TOKEN = "bench-card-key"  # noqa: S105
SAMPLES = int(os.environ.get("BENCH_CARD_SAMPLES", "40"))
_OBSERVE = """() => {
  window.__cards = {};
  new MutationObserver((changes) => {
    const now = performance.timeOrigin + performance.now();
    for (const change of changes) for (const node of change.addedNodes) {
      const id = node.dataset && node.dataset.callid;
      if (id && !(id in window.__cards)) window.__cards[id] = now;
    }
  }).observe(document.getElementById("cards"), {childList: true});
}"""


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }


def card_benchmark() -> dict[str, Any]:
    """In a fresh process, as `make run` is: the stack's functions keep their clients per process."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        out = f"{work}/card.json"
        subprocess.run(
            [sys.executable, "-m", "bench.card", "--out", out],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=900,
        )
        with open(out, encoding="utf-8") as handle:
            result: dict[str, Any] = json.load(handle)
    return result


def measure() -> dict[str, Any]:
    import tempfile

    from playwright.sync_api import sync_playwright

    from local.aws import free_port
    from local.stack import DEMO_CONTACT, serving

    phone = DEMO_CONTACT["phone"].lstrip("+")
    session = requests.Session()
    pushes: list[float] = []
    cards: list[float] = []
    with serving(port=free_port(), dynamodb_port=free_port(), crm_token=CRM_TOKEN) as stack:
        assert stack.widget is not None
        with sync_playwright() as driver, tempfile.TemporaryDirectory() as profile:
            context = driver.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = context.new_page()
            page.goto(stack.widget.url_for(stack.widget_token))
            page.wait_for_selector('#status[data-state="live"]', timeout=15_000)
            page.evaluate(_OBSERVE)
            for index in range(SAMPLES + 3):  # the first three warm the functions up
                callid = f"bench-card-{index}"
                form = {"cmd": "event", "type": "INCOMING", "user": "andy", "phone": phone, "callid": callid}
                form["crm_token"] = stack.crm_token
                sent = time.time() * 1000
                started = time.perf_counter()
                session.post(stack.webhook_url, data=form, timeout=10).raise_for_status()
                round_trip = (time.perf_counter() - started) * 1000
                page.wait_for_function(f"() => '{callid}' in window.__cards", timeout=10_000)
                shown = page.evaluate(f"() => window.__cards['{callid}']")
                if index >= 3:
                    pushes.append(round_trip)
                    cards.append(shown - sent)
                # A random pause, so pushes land anywhere in the stream poller's quarter second
                # (not in step with it, which would flatter or punish every sample alike).
                page.wait_for_timeout(50 + random.uniform(0, 250))
            context.close()
    card, floor = _stats(cards), _stats(pushes)
    return {
        "samples": SAMPLES,
        "card_on_screen": card,
        "push_round_trip": floor,
        "ratio_median": card["median_ms"] / floor["median_ms"],
    }


def report(result: dict[str, Any]) -> None:
    card, floor = result["card_on_screen"], result["push_round_trip"]
    print(f"\nThe live card: INCOMING push sent -> card on screen in headless Chromium ({result['samples']} calls)")
    print(f"{'':<28}{'median ms':>10}{'p99 ms':>9}{'max ms':>9}")
    print(f"{'card on screen':<28}{card['median_ms']:>10.1f}{card['p99_ms']:>9.1f}{card['max_ms']:>9.1f}")
    print(
        f"{'floor: the push round trip':<28}{floor['median_ms']:>10.1f}{floor['p99_ms']:>9.1f}{floor['max_ms']:>9.1f}"
    )
    print(f"ratio (medians): {result['ratio_median']:.1f}")


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="The live card's latency on the local stack.")
    parser.add_argument("--out", help="write the result here as JSON (and print nothing else of note)")
    arguments = parser.parse_args()
    outcome = measure()
    if arguments.out:
        with open(arguments.out, "w", encoding="utf-8") as handle:
            json.dump(outcome, handle)
    else:
        report(outcome)
