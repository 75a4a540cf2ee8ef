"""The `cmd=webhook` pushes table (template.yaml's `WebhookPushesTable`), on the low-level client.

Key (`push_type`, `push_id`), see pbxbridge.domain.webhook_pushes. Beside the key: `type` and `id` as
the PBX sent them (absent when it sent none), `received_at`, and `data` and `fields` as JSON text
(ASCII-escaped: whatever the PBX put in them, nested, empty or odd, is stored as it came and never
refused by DynamoDB's rules for maps). `expires_at` is the table's TTL attribute.

The table's change stream publishes a new `sipregs_error` record as `SipRegistrationFailed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pbxbridge.domain.webhook_pushes import RETENTION, WebhookPushRecord
from pbxbridge.storage.dynamodb import parse_utc_iso, put_if_absent, unavailable_on_aws_errors, utc_iso

KEY = "push_type"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True, default=str)


def record_item(record: WebhookPushRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "push_type": record.push_type,
        "push_id": record.push_id,
        "received_at": utc_iso(record.received_at, precise=True),
        "expires_at": int((record.received_at + RETENTION).timestamp()),
    }
    if record.type is not None:
        item["type"] = record.type
    if record.id is not None:
        item["id"] = record.id
    if record.data is not None:
        item["data"] = _json(record.data)
    if record.fields:
        item["fields"] = _json(record.fields)
    return item


def record_from_item(item: Mapping[str, Any]) -> WebhookPushRecord:
    """A stored record (a plain item, as a change stream's image gives it)."""
    return WebhookPushRecord(
        push_type=str(item["push_type"]),
        push_id=str(item["push_id"]),
        received_at=parse_utc_iso(str(item["received_at"])),
        type=item.get("type"),
        id=item.get("id"),
        data=json.loads(item["data"]) if "data" in item else None,
        fields=json.loads(item["fields"]) if "fields" in item else {},
    )


class DynamoWebhookPushStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def add_if_absent(self, record: WebhookPushRecord) -> bool:
        return put_if_absent(self._client, self._table, record_item(record), KEY)
