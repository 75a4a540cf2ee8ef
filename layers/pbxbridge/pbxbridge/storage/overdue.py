"""Overdue call-backs in the call-backs table (template.yaml's `CallbacksTable`), on the low-level client.

- The sparse GSI `open_by_age` (`open_queue` = `open`, `first_missed_at`) holds only the call-backs
  that are open and not yet flagged overdue (storage/callbacks.py writes `open_queue` on those), so
  the checker reads what could be due, oldest first, and never the closed ones.
- Escalating a call-back is one transaction: its item gets `overdue_since` and leaves the index
  (on the condition that it is still open), and the escalation item `sk = "overdue#<callid>"` is
  created (on the condition that there is none yet). That item's insert on the table's stream is what
  publishes `CallbackOverdue` (stream.py), with the event it holds: once per call-back, whatever the
  number of checker runs.
- The ledger rewrites a call-back item whole when one of its calls changes (a further missed call):
  the item comes back into the index without its flag. The next run finds the escalation item there
  (one strongly consistent read per due call-back, before any write) and only puts the flag back,
  publishing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.call_events import CallbackOverdue, callback_overdue
from pbxbridge.domain.callbacks import Callback, CallbackStatus
from pbxbridge.domain.overdue import Marked
from pbxbridge.storage.callbacks import (
    CALLBACK_PREFIX,
    CLOSED_RETENTION_SECONDS,
    OPEN_BY_AGE_INDEX,
    OPEN_QUEUE,
    OPEN_QUEUE_KEY,
    callback_from_item,
)
from pbxbridge.storage.dynamodb import plain_item, unavailable_on_aws_errors, utc_iso, wire_item

OVERDUE_PREFIX = "overdue#"
_PAGE = 200


def _opener(callback: Callback) -> str:
    return callback.id.split("/", 1)[1]


def _still_open() -> dict[str, Any]:
    return {
        "ConditionExpression": "#status = :open",
        "ExpressionAttributeNames": {"#status": "status", "#queue": OPEN_QUEUE},
        "ExpressionAttributeValues": {":open": {"S": CallbackStatus.OPEN.value}},
    }


def _flag(table: str, callback: Callback, since: datetime) -> dict[str, Any]:
    condition = _still_open()
    condition["ExpressionAttributeValues"][":since"] = {"S": utc_iso(since)}
    return {
        "TableName": table,
        "Key": {"phone": {"S": callback.phone}, "sk": {"S": CALLBACK_PREFIX + _opener(callback)}},
        "UpdateExpression": "SET overdue_since = :since REMOVE #queue",
        **condition,
    }


def escalation_item(callback: Callback, event: CallbackOverdue) -> dict[str, Any]:
    return {
        "phone": callback.phone,
        "sk": OVERDUE_PREFIX + _opener(callback),
        "callback_id": callback.id,
        "overdue_since": utc_iso(event.occurred_at),
        "event": event.model_dump_json(),
        # Kept as long as a closed call-back: an escalation outlives none of the call-backs it is about.
        "expires_at": int(event.occurred_at.timestamp()) + CLOSED_RETENTION_SECONDS,
    }


def overdue_event(item: Mapping[str, Any] | None) -> CallbackOverdue | None:
    """The event an escalation item holds; None for any other item of the table."""
    if not item or not str(item.get("sk", "")).startswith(OVERDUE_PREFIX) or "event" not in item:
        return None
    return CallbackOverdue.model_validate_json(str(item["event"]))


class DynamoOverdueStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def open_missed_since_before(self, moment: datetime) -> list[Callback]:
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=OPEN_BY_AGE_INDEX,
            KeyConditionExpression="#queue = :open AND first_missed_at <= :moment",
            ExpressionAttributeNames={"#queue": OPEN_QUEUE},
            ExpressionAttributeValues={":open": {"S": OPEN_QUEUE_KEY}, ":moment": {"S": utc_iso(moment)}},
            PaginationConfig={"PageSize": _PAGE},
        )
        return [callback_from_item(plain_item(item)) for page in pages for item in page.get("Items", [])]

    @unavailable_on_aws_errors
    def mark_overdue(self, callback: Callback, since: datetime, sla: timedelta, business_time: bool) -> Marked:
        if self._escalated(callback):
            # Its item was rewritten since (a further missed call): put the flag back, publish nothing.
            return self._reflag(callback, since)
        event = callback_overdue(callback, since, int(sla.total_seconds() // 60), business_time)
        record = {
            "TableName": self._table,
            "Item": wire_item(escalation_item(callback, event)),
            "ConditionExpression": "attribute_not_exists(sk)",
        }
        try:
            self._client.transact_write_items(
                TransactItems=[{"Update": _flag(self._table, callback, since)}, {"Put": record}]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return Marked.CLOSED
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return self._reflag(callback, since)  # another run escalated it since we looked
            if set(reasons) <= {"None", "TransactionConflict"}:
                return Marked.RACED
            raise
        return Marked.ESCALATED

    def _escalated(self, callback: Callback) -> bool:
        key = {"phone": {"S": callback.phone}, "sk": {"S": OVERDUE_PREFIX + _opener(callback)}}
        found = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True, ProjectionExpression="sk")
        return "Item" in found

    def _reflag(self, callback: Callback, since: datetime) -> Marked:
        try:
            self._client.update_item(**_flag(self._table, callback, since))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return Marked.CLOSED
            raise
        return Marked.REFLAGGED


__all__ = ["OVERDUE_PREFIX", "DynamoOverdueStore", "escalation_item", "overdue_event"]
