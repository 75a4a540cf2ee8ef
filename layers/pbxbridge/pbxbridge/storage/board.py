"""The board table (template.yaml's `BoardTable`): the team's live board, on the low-level client.

Key (`kind`, `id`):

- `kind = "call"`, `id` = callid: a call in progress as the board shows it (`call`, a map), written by
  the card function from the calls' stream and versioned by the stream record's position (`seq`): a
  replayed, duplicated or older record never overwrites a newer one. An ended call stays as a
  tombstone (`ended`, no `call`) for ENDED_CALL_SECONDS, so that no older record brings it back;
  `expires_at` (the table's TTL) forgets it, and a live call whose end never came, later.
- `kind = "dnd"`, `id` = login: the last DND state pbxbridge set or read through the PBX (`on`,
  `as_of`); the PBX pushes no DND changes.

DynamoDB's TTL deletes late (hours, sometimes days): the reads leave out what expired themselves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.domain.board import ENDED_CALL_SECONDS, LIVE_CALL_SECONDS
from pbxbridge.storage.dynamodb import (
    is_condition_failure,
    query_all,
    serialize,
    unavailable_on_aws_errors,
    utc_iso,
)

CALL = "call"
DND = "dnd"


class DynamoBoardStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def keep_call(self, callid: str, position: str, call: Mapping[str, Any] | None, now: float | None = None) -> bool:
        """Make the call's item the one at stream `position` (`call` None: ended, a tombstone), unless
        a later or the same position is there; True when it was written. One conditional PutItem."""
        now = time.time() if now is None else now
        item: dict[str, Any] = {"kind": {"S": CALL}, "id": {"S": callid}, "seq": {"S": position}}
        if call is None:
            item["ended"] = {"BOOL": True}
            item["expires_at"] = {"N": str(int(now) + ENDED_CALL_SECONDS)}
        else:
            item["call"] = serialize({k: v for k, v in call.items() if v is not None})
            item["expires_at"] = {"N": str(int(now) + LIVE_CALL_SECONDS)}
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(#id) OR #seq < :seq",
                ExpressionAttributeNames={"#id": "id", "#seq": "seq"},
                ExpressionAttributeValues={":seq": {"S": position}},
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    @unavailable_on_aws_errors
    def live_calls(self, now: float | None = None) -> list[dict[str, Any]]:
        """The calls in progress, as the board shows them: one Query (paged), tombstones and expired
        items left out by DynamoDB's filter."""
        now = time.time() if now is None else now
        items = query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="#k = :k",
            FilterExpression="attribute_not_exists(ended) AND expires_at > :now",
            ProjectionExpression="#call",
            ExpressionAttributeNames={"#k": "kind", "#call": "call"},
            ExpressionAttributeValues={":k": {"S": CALL}, ":now": {"N": str(int(now))}},
        )
        return [dict(item["call"]) for item in items if "call" in item]

    @unavailable_on_aws_errors
    def record_dnd(self, login: str, on: bool, at: datetime) -> None:
        """Keep a user's DND state as the PBX said it at `at`, unless a later answer is kept already
        (two requests at once: the one answered last wins, to the second). One conditional PutItem."""
        as_of = utc_iso(at)
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"kind": {"S": DND}, "id": {"S": login}, "on": {"BOOL": on}, "as_of": {"S": as_of}},
                ConditionExpression="attribute_not_exists(#id) OR as_of <= :at",
                ExpressionAttributeNames={"#id": "id"},
                ExpressionAttributeValues={":at": {"S": as_of}},
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise

    @unavailable_on_aws_errors
    def dnd_states(self) -> dict[str, dict[str, Any]]:
        """Every user's last known DND state: login -> {"on", "as_of"} (one Query, paged)."""
        items = query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": "kind"},
            ExpressionAttributeValues={":k": {"S": DND}},
        )
        return {str(item["id"]): {"on": bool(item.get("on")), "as_of": item.get("as_of")} for item in items}


__all__ = ["CALL", "DND", "DynamoBoardStore"]
