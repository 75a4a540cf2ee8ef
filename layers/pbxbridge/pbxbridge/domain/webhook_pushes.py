"""`cmd=webhook` pushes: the PBX telling us about itself (a phone lost its SIP registration), not a call.

Every one is kept, whatever its `type`: a record per push, keyed by its `type` and `id`, so the same
push delivered twice is one record. A push without an `id` is keyed by a digest of what it carries
(a repeat of it is the same record); one without a `type` is kept as untyped. Record keys are
prefixed so that no `type` or `id` the PBX may send can ever be taken for either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pbxbridge.protocol.webhook import WebhookPush, WebhookType

# Records are an administrator's alerts and unknown pushes to look at: kept this long, then expired.
RETENTION = timedelta(days=400)
UNTYPED = "untyped"


@dataclass(frozen=True)
class WebhookPushRecord:
    """One push as stored: its key (`push_type`, `push_id`) and what it carried, raw."""

    push_type: str
    push_id: str
    received_at: datetime
    type: str | None
    id: str | None
    data: Any
    fields: dict[str, Any]

    @property
    def known_type(self) -> WebhookType | None:
        return _known(self.type)


class WebhookPushStore(Protocol):
    def add_if_absent(self, record: WebhookPushRecord) -> bool:
        """Store the record unless one with its key is there; True when it was new."""
        ...


def _known(value: str | None) -> WebhookType | None:
    try:
        return WebhookType(value) if value is not None else None
    except ValueError:
        return None


def push_key(push: WebhookPush) -> tuple[str, str]:
    """(`push_type`, `push_id`): `type#<type, case-folded>` or `untyped`; `id#<id>` or `sha256#<digest>`."""
    push_type = f"type#{push.type.casefold()}" if push.type is not None else UNTYPED
    if push.id is not None:
        return push_type, f"id#{push.id}"
    carried = {"type": push.type, "data": push.data, "fields": push.fields}
    text = json.dumps(carried, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    return push_type, "sha256#" + hashlib.sha256(text.encode("ascii")).hexdigest()


def record_webhook_push(
    store: WebhookPushStore, push: WebhookPush, received_at: datetime
) -> tuple[WebhookPushRecord, bool]:
    """Keep the push (once): the record, and whether it was a duplicate of one already kept."""
    push_type, push_id = push_key(push)
    record = WebhookPushRecord(
        push_type=push_type,
        push_id=push_id,
        received_at=received_at,
        type=push.type,
        id=push.id,
        data=push.data,
        fields=dict(push.fields),
    )
    return record, not store.add_if_absent(record)
