"""The call-backs table (template.yaml's `CallbacksTable`), on the low-level client.

Key (`phone`, `sk`):

- `sk = "ledger"`: the number's ledger (its relevant calls, the ids of its call-backs, a version);
- `sk = "callback#<callid>"`: one call-back, as the list shows it. The GSI `by_owner`
  (`owner_status` = `<owner>#<status>`, `last_missed_at`) lists an owner's open or closed call-backs,
  the most recently missed first. The ledger has no `owner_status`, so the index holds call-backs only.
  The sparse GSI `open_by_age` (`open_queue`, `first_missed_at`) holds the open ones not yet escalated
  (storage/overdue.py: the overdue checker's reads, and `sk = "overdue#<callid>"`, each escalation).

A ledger and the call-backs it changed are written in one transaction guarded by the ledger's version:
two calls with one number processed at once cannot both win, the loser reads again and retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.domain.callbacks import (
    Callback,
    CallbackPage,
    CallbackStatus,
    CallFact,
    CallKind,
    Ledger,
    Opened,
)
from pbxbridge.storage.dynamodb import (
    newest_first,
    parse_utc_iso,
    plain_item,
    scan_page,
    unavailable_on_aws_errors,
    utc_iso,
    wire_item,
)

BY_OWNER_INDEX = "by_owner"
LEDGER = "ledger"
CALLBACK_PREFIX = "callback#"
# `open_by_age` (`open_queue`, `first_missed_at`): open call-backs not yet escalated, oldest first.
OPEN_BY_AGE_INDEX = "open_by_age"
OPEN_QUEUE = "open_queue"
OPEN_QUEUE_KEY = "open"
# Closed call-backs are kept this long (the table's TTL attribute `expires_at`); open ones forever.
CLOSED_RETENTION_SECONDS = 400 * 24 * 3600


def _ledger_item(ledger: Ledger) -> dict[str, Any]:
    item: dict[str, Any] = {
        "phone": ledger.phone,
        "sk": LEDGER,
        "version": ledger.version,
        "calls": {callid: _fact_item(f) for callid, f in ledger.calls.items()},
        "opened": {callid: {"id": o.id, "o": o.owner} for callid, o in ledger.opened.items()},
    }
    if ledger.boundary is not None:
        item["boundary"] = utc_iso(ledger.boundary, precise=True)
    return item


def _fact_item(fact: CallFact) -> dict[str, Any]:
    item: dict[str, Any] = {"k": fact.kind.value, "t": utc_iso(fact.at, precise=True)}
    if fact.user:
        item["u"] = fact.user
    if fact.verdict is not None:
        # The PBX's `missed_status` on a missed call, and when we learnt it (a PBX closure's time).
        item["v"] = fact.verdict
        if fact.verdict_at is not None:
            item["vt"] = utc_iso(fact.verdict_at, precise=True)
    return item


def _ledger(item: Mapping[str, Any]) -> Ledger:
    phone = str(item["phone"])
    return Ledger(
        phone=phone,
        version=int(item.get("version", 0)),
        calls={
            callid: CallFact(
                callid,
                phone,
                CallKind(raw["k"]),
                parse_utc_iso(raw["t"]),
                raw.get("u"),
                int(raw["v"]) if raw.get("v") else None,
                parse_utc_iso(raw["vt"]) if raw.get("vt") else None,
            )
            for callid, raw in item.get("calls", {}).items()
        },
        opened={callid: Opened(id=raw["id"], owner=raw["o"]) for callid, raw in item.get("opened", {}).items()},
        boundary=parse_utc_iso(item["boundary"]) if item.get("boundary") else None,
    )


def _opener(callback: Callback) -> str:
    return callback.id.split("/", 1)[1]


def callback_item(callback: Callback) -> dict[str, Any]:
    item: dict[str, Any] = {
        "phone": callback.phone,
        "sk": CALLBACK_PREFIX + _opener(callback),
        "owner_status": f"{callback.owner}#{callback.status.value}",
        **callback.model_dump(mode="json", exclude_none=True),
        "first_missed_at": utc_iso(callback.first_missed_at),
        "last_missed_at": utc_iso(callback.last_missed_at),
    }
    if callback.status is CallbackStatus.OPEN and callback.overdue_since is None:
        # The sparse index the overdue checker reads (storage/overdue.py): open and not yet escalated.
        item[OPEN_QUEUE] = OPEN_QUEUE_KEY
    if callback.closed_at is not None:
        item["closed_at"] = utc_iso(callback.closed_at)
        item["expires_at"] = int(callback.closed_at.timestamp()) + CLOSED_RETENTION_SECONDS
    return item


def callback_owner(item: Mapping[str, Any] | None) -> str | None:
    """The owner of a call-back item, from its `owner_status`; None for the ledger (or no item)."""
    key = item.get("owner_status") if item else None
    return key.rsplit("#", 1)[0] if isinstance(key, str) else None


def callback_from_item(item: Mapping[str, Any]) -> Callback:
    fields = {name: value for name, value in item.items() if name in Callback.model_fields}
    return Callback.model_validate(fields)


class DynamoCallbackStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def ledger(self, phone: str) -> Ledger | None:
        response = self._client.get_item(
            TableName=self._table, Key={"phone": {"S": phone}, "sk": {"S": LEDGER}}, ConsistentRead=True
        )
        return _ledger(plain_item(response["Item"])) if "Item" in response else None

    @unavailable_on_aws_errors
    def save(self, ledger: Ledger, expected_version: int, changed: Sequence[Callback]) -> bool:
        guard: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(phone)"}
            if expected_version == 0
            else {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":v": {"N": str(expected_version)}},
            }
        )
        ledger_put = {"TableName": self._table, "Item": wire_item(_ledger_item(ledger)), **guard}
        writes: list[dict[str, Any]] = [{"Put": ledger_put}]
        writes += [{"Put": {"TableName": self._table, "Item": wire_item(callback_item(c))}} for c in changed]
        try:
            self._client.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if _lost_the_race(exc):
                # Our guard failed (another writer saved first) or a concurrent transaction touched
                # the same items: either way, read again and retry.
                return False
            raise
        return True

    @unavailable_on_aws_errors
    def list_callbacks(
        self, owner: str, status: CallbackStatus, limit: int = 50, cursor: str | None = None
    ) -> CallbackPage:
        key = f"{owner}#{CallbackStatus(status).value}"
        items, next_cursor = newest_first(self._client, self._table, BY_OWNER_INDEX, "owner_status", key, limit, cursor)
        return CallbackPage(callbacks=[callback_from_item(item) for item in items], cursor=next_cursor)

    @unavailable_on_aws_errors
    def callbacks_first_missed_between(
        self, start: str, end: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a Scan (`limit` items read): the call-back items (not the ledgers) with `start`
        <= `first_missed_at` < `end`; rebuildReports only, it reads the whole table."""
        condition = "begins_with(sk, :prefix) AND first_missed_at >= :start AND first_missed_at < :end"
        values = {":prefix": CALLBACK_PREFIX, ":start": start, ":end": end}
        return scan_page(self._client, self._table, condition, values, limit, cursor)

    @unavailable_on_aws_errors
    def callbacks_of(self, phone: str) -> list[Callback]:
        """Every stored call-back of a number, oldest first (for the console and the tests)."""
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="phone = :p AND begins_with(sk, :s)",
            ExpressionAttributeValues={":p": {"S": phone}, ":s": {"S": CALLBACK_PREFIX}},
            ConsistentRead=True,
        )
        found = [callback_from_item(plain_item(item)) for item in page.get("Items", [])]
        return sorted(found, key=lambda c: (c.first_missed_at, c.id))


# A cancelled transaction is a lost race only when every item's reason is one of these; any other
# (ValidationError: an item too large, ThrottlingError, ...) is an error that rereading cannot fix.
_RACE_REASONS = frozenset({"None", "ConditionalCheckFailed", "TransactionConflict"})


def _lost_the_race(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = {str(reason.get("Code", "None")) for reason in exc.response.get("CancellationReasons", [])}
    return reasons <= _RACE_REASONS


__all__ = ["BY_OWNER_INDEX", "DynamoCallbackStore", "callback_from_item", "callback_item", "callback_owner"]
