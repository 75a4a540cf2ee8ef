"""Reconciliation's ledger: calls written from the PBX's history in batches, and the watermark (how far
the history is reconciled) in the sync state table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pbxbridge.storage.dynamodb import (
    Update,
    batch_get,
    batch_write,
    is_condition_failure,
    parse_utc_iso,
    put_if_absent,
    serialize,
    unavailable_on_aws_errors,
    utc_iso,
)

if TYPE_CHECKING:
    # Reconciliation's types, imported where its store builds them: the webhook's cold start does not
    # pay for reconciliation (or the PBX client's models it imports).
    from pbxbridge.domain.reconciliation import CallState, HistoryCall


BATCH_WRITE = 25  # items in one BatchWriteItem, DynamoDB's limit
WRITERS = 4  # BatchWriteItems of one chunk in flight at once


class DynamoLedger:
    """Reconciliation's data access: calls in batches, and the watermark in the sync state table."""

    WATERMARK = "history_watermark"

    def __init__(self, client: Any, calls_table: str, state_table: str) -> None:
        self._client = client
        self._calls_table = calls_table
        self._state_table = state_table

    @unavailable_on_aws_errors
    def reconciliation_state(self, callids: list[str]) -> dict[str, CallState]:
        from pbxbridge.domain.callbacks import verdict
        from pbxbridge.domain.reconciliation import CallState

        keys: list[dict[str, Any]] = [{"callid": {"S": callid}} for callid in dict.fromkeys(callids)]
        items = batch_get(
            self._client,
            self._calls_table,
            keys,
            ProjectionExpression="callid, reconciled_at, history_at, missed_status",
        )
        return {
            item["callid"]["S"]: CallState(
                exists=True,
                reconciled="reconciled_at" in item,
                had_history="history_at" in item,
                missed_status=verdict(next(iter(item.get("missed_status", {}).values()), None)),
            )
            for item in items
        }

    @unavailable_on_aws_errors
    def create_calls(self, calls: list[HistoryCall], reconciled_at: datetime) -> int:
        """Write calls that were missing, each only if it is still missing (a conditional put, several
        at once): a push that stored one since it was looked up wins, and that call is merged
        instead. Returns how many were created.

        Not BatchWriteItem, which cannot be conditional; not TransactWriteItems, which costs twice
        the writes and cancels a whole group for one call that appeared."""

        def create(call: HistoryCall) -> bool:
            item = _history_call_item(call, reconciled_at)
            if put_if_absent(self._client, self._calls_table, item, "callid"):
                return True
            self.merge_call(call, reconciled_at, had_history=False)
            return False

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(create, calls))

    @unavailable_on_aws_errors
    def write_old_calls(self, calls: list[HistoryCall], reconciled_at: datetime) -> None:
        """Write missing calls in batches of 25, unconditionally: only for calls so old that no push
        can still arrive for them (a backfill), where a conditional write per call buys nothing.

        The batches go out at once (distinct calls, blind puts: their order does not matter), so
        DynamoDB is busy with one while the next is being encoded, not idle between them."""
        items = [{k: serialize(v) for k, v in _history_call_item(call, reconciled_at).items()} for call in calls]
        batches = [items[offset : offset + BATCH_WRITE] for offset in range(0, len(items), BATCH_WRITE)]
        if len(batches) == 1:
            batch_write(self._client, self._calls_table, batches[0])
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(batches), WRITERS)) as pool:
            for written in [pool.submit(batch_write, self._client, self._calls_table, batch) for batch in batches]:
                written.result()

    @unavailable_on_aws_errors
    def merge_call(self, call: HistoryCall, reconciled_at: datetime, *, had_history: bool = True) -> bool:
        item = _history_call_item(call, reconciled_at)
        update = Update()
        # The CSV's own fields; everything else only where the webhook left it empty. Without a
        # history push, the call's start is only an event's arrival: the PBX's own start wins.
        own: tuple[str, ...] = ("wait", "via", "csv_rating", "missed_status", "missed_status_at")
        if not had_history:
            own += ("started_at",)
        for name in own:
            update.set(name, item.get(name))
        for name, value in item.items():
            if name not in own and name != "callid":
                update.set_if_absent(name, value)
        response = self._client.update_item(
            TableName=self._calls_table,
            Key={"callid": {"S": call.callid}},
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
            ReturnValues="ALL_OLD",
        )
        return "Attributes" not in response

    @unavailable_on_aws_errors
    def watermark(self) -> datetime | None:
        response = self._client.get_item(
            TableName=self._state_table, Key={"name": {"S": self.WATERMARK}}, ConsistentRead=True
        )
        value = response.get("Item", {}).get("watermark", {}).get("S")
        return parse_utc_iso(value) if value else None

    @unavailable_on_aws_errors
    def advance_watermark(self, to: datetime) -> bool:
        try:
            self._client.update_item(
                TableName=self._state_table,
                Key={"name": {"S": self.WATERMARK}},
                UpdateExpression="SET #w = :w, #u = :u",
                ConditionExpression="attribute_not_exists(#w) OR #w < :w",
                ExpressionAttributeNames={"#w": "watermark", "#u": "updated_at"},
                ExpressionAttributeValues={
                    ":w": {"S": utc_iso(to, precise=True)},
                    ":u": {"S": utc_iso(datetime.now(tz=UTC), precise=True)},
                },
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False  # another run got further: never move back
            raise
        return True


def _history_call_item(call: HistoryCall, reconciled_at: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        "callid": call.callid,
        "direction": call.direction,
        "status": call.status,
        "outcome": call.outcome.value,
        "client": call.client,
        "client_raw": call.client_raw,
        "user": call.user,
        "pbx_user": call.pbx_user,
        "crm_user": call.crm_user,
        "started_at": utc_iso(call.started_at),
        "duration": call.duration,
        "wait": call.wait,
        "via": call.via,
        "link": call.link,
        "csv_rating": call.rating,
        "reconciled_at": utc_iso(reconciled_at, precise=True),
        # Text, as a push's `missedStatus` is kept; when we learnt it dates a call-back the PBX closed.
        "missed_status": str(call.missed_status) if call.missed_status is not None else None,
        "missed_status_at": utc_iso(reconciled_at, precise=True) if call.missed_status is not None else None,
    }
    return {name: value for name, value in item.items() if value is not None}
