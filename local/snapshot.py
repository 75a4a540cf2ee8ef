"""The local stack's data across restarts: every table's items and every bucket's objects, saved to one
JSON file when the stack stops and put back when it starts (before any stream is read, so nothing
restored is published again).

moto keeps its state in memory only; this file is what makes `make run` keep contacts and calls.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws import client

FORMAT = 1


@dataclass
class RestoreReport:
    items: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        restored = ", ".join(f"{count} in {table}" for table, count in self.items.items() if count) or "no items"
        text = f"{restored}; {self.objects} object(s)"
        return text + (f"; not restored: {'; '.join(self.skipped)}" if self.skipped else "")


def save(path: Path, endpoint: str, tables: list[str], buckets: list[str]) -> None:
    """Write every item and object to `path` (atomically: a stop halfway leaves the last good file)."""
    dynamodb = client("dynamodb", endpoint)
    state: dict[str, Any] = {"format": FORMAT, "tables": {}, "buckets": {}}
    for table in tables:
        items: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            items += page.get("Items", [])
        state["tables"][table] = items
    s3 = client("s3", endpoint)
    for bucket in buckets:
        objects: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                objects[entry["Key"]] = base64.b64encode(body).decode("ascii")
        state["buckets"][bucket] = objects
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as out:
        json.dump(state, out, ensure_ascii=False, default=_binary)
    os.replace(out.name, path)


def restore(path: Path, endpoint: str, tables: list[str], buckets: list[str]) -> RestoreReport:
    """Put back what `save` wrote, into the tables and buckets that still exist by the same name."""
    report = RestoreReport()
    if not path.exists():
        return report
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        report.skipped.append(f"{path} is not readable JSON")
        return report
    dynamodb = client("dynamodb", endpoint)
    for table, items in (state.get("tables") or {}).items():
        if table not in tables:
            report.skipped.append(f"table {table} (no longer in the template)")
            continue
        try:
            for start in range(0, len(items), 25):
                requests = {table: [{"PutRequest": {"Item": _typed(item)}} for item in items[start : start + 25]]}
                while requests:
                    requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
        except Exception as exc:  # a key schema that changed since: that table starts empty
            report.skipped.append(f"table {table} ({type(exc).__name__})")
            continue
        report.items[table] = len(items)
    s3 = client("s3", endpoint)
    for bucket, objects in (state.get("buckets") or {}).items():
        if bucket not in buckets:
            report.skipped.append(f"bucket {bucket} (no longer in the template)")
            continue
        for key, body in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=base64.b64decode(body))
            report.objects += 1
    return report


def _binary(value: Any) -> Any:
    # DynamoDB's B and BS values come back as bytes.
    if isinstance(value, bytes | bytearray):
        return {"__b64__": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot save {type(value).__name__}")


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value
