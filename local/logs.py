"""The local stack's log: one short line per request by default, or the functions' JSON as
CloudWatch gets it (`LOG_FORMAT=json`).

Short form: `10:42:07 WebhookFunction   push stored  cmd=event type=INCOMING callid=1ad5...`.
The functions log through Powertools (JSON); the short form is rendered from that same JSON, so
both show the same fields, and the EMF metrics blobs are left out (they are for CloudWatch).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import warnings
from typing import Any

# What every Powertools line carries and a person reading along does not need.
_NOISE = {
    "level",
    "location",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "xray_trace_id",
    "sampling_rate",
    "message",
    "exception",
    "exception_name",
    "stack_trace",
}


class ShortFormatter(logging.Formatter):
    """Renders a Powertools JSON record as one short line. Everything Powertools asks of its own
    formatter (append_keys, clear_state, ...) is passed through to it, so context still works."""

    def __init__(self, powertools: logging.Formatter) -> None:
        super().__init__()
        self._powertools = powertools

    def __getattr__(self, name: str) -> Any:
        return getattr(self._powertools, name)

    def format(self, record: logging.LogRecord) -> str:
        text = self._powertools.format(record)
        try:
            entry = json.loads(text)
        except ValueError:
            return text
        return short_line(entry, record)


def short_line(entry: dict[str, Any], record: logging.LogRecord) -> str:
    when = logging.Formatter().formatTime(record, "%H:%M:%S")
    function = str(entry.get("function_name") or record.name)
    level = "" if record.levelno == logging.INFO else f"{record.levelname} "
    if "correlation_id" in entry:  # the webhook's and the recorder's correlation id is the callid
        entry = {**entry, "callid": entry.get("callid", entry["correlation_id"])}
        entry.pop("correlation_id")
    fields = " ".join(
        f"{key}={_short(value)}" for key, value in entry.items() if key not in _NOISE and value is not None
    )
    line = f"{when} {function:<20} {level}{entry.get('message', '')}  {fields}".rstrip()
    if entry.get("exception"):
        line += "\n" + str(entry["exception"])
    return line


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{_short(v)}" for k, v in value.items())
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."


def json_logs() -> bool:
    return os.environ.get("LOG_FORMAT", "short").strip().lower() == "json"


class _WithoutMetrics(io.TextIOBase):
    """stdout without the EMF blobs Powertools prints (`{"_aws": ...}` lines, for CloudWatch to read).
    Not POWERTOOLS_METRICS_DISABLED: with it, Powertools never clears a function's pending metrics."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._skipping = threading.local()

    def write(self, text: str) -> int:
        if text.startswith('{"_aws":'):
            self._skipping.newline = True  # print() writes the line's end separately
            return len(text)
        if text == "\n" and getattr(self._skipping, "newline", False):
            self._skipping.newline = False
            return 1
        return int(self._stream.write(text))

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def isatty(self) -> bool:
        return bool(self._stream.isatty())


def use_short_logs() -> None:
    """Short lines for the functions' loggers, and no EMF blobs (the metrics are CloudWatch's)."""
    if not isinstance(sys.stdout, _WithoutMetrics):
        sys.stdout = _WithoutMetrics(sys.stdout)
    # Powertools warns when an invocation adds no metric (a stream batch with nothing to publish): EMF's concern.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    for handler in logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "pbxbridge")).handlers:
        if handler.formatter is not None and not isinstance(handler.formatter, ShortFormatter):
            handler.setFormatter(ShortFormatter(handler.formatter))
