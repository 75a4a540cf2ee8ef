"""Debian's headless Chromium as the browser tests and the card benchmark launch it."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Root in a sandbox, and no network beyond loopback: without the background-networking flags
# Chromium keeps trying Google's hosts, which this machine refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
