"""What the local stack changes in moto's DynamoDB, so that `make run` holds a day of calls.

moto (written against 5.2.5) is made for tests that live seconds; the local stack lives for hours
in one process. Three of moto's costs grow with everything stored so far, and each is cut here to
what DynamoDB itself keeps:

- `transact_write_items` deep-copies every table a transaction touches, on every call, as its
  rollback backup: the whole table, every stream record it ever had included. The call-back ledger
  is written in a transaction, so every push that changed a call-back paid, in time and in memory,
  for every call stored before it (the local stack slowed to ~12 pushes/s and grew ~1.8 MB a push).
  `install()` makes the backup what a rollback puts back: the items the transaction names, each as
  it was, and the length of each table's stream. moto's own transaction logic (conditions,
  cancellation reasons, one operation per item) runs unchanged.
- A table's stream keeps every record ever written (DynamoDB keeps them 24 hours): `trim_stream`
  drops the records that every reader in the local stack has read.
- DynamoDB Streams keeps every shard iterator it handed out (DynamoDB's expire after 15 minutes) and
  each GetRecords hands out a new one, four times a second per poller: `forget_iterator` drops the
  one a poller has just used (it never uses it again).

tests/test_local_memory.py fails when a moto release changes what these rely on (so the patch can
go, or must change).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams.models import dynamodbstreams_backends

from local.template import LOCAL_ACCOUNT, LOCAL_REGION

# moto's DynamoDB state belongs to the process (every moto server in it serves the same tables):
# one lock, for DynamoDB's requests and for what is done here to its tables and streams.
DYNAMODB_LOCK = threading.Lock()

_MOTO_TRANSACT_WRITE_ITEMS = DynamoDBBackend.transact_write_items
_in_transaction = threading.local()


class _TablesKeptInPlace:
    """`copy` as moto.dynamodb.models sees it once `install()` ran: during a transaction, a table's
    "deep copy" is the table itself (its backup is taken by `_transact_write_items`, item by item);
    every other copy is `copy`'s own."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, Table) and getattr(_in_transaction, "active", False):
            return value
        return copy.deepcopy(value, memo)


_Backup = tuple[Table, DynamoType, DynamoType | None, Any]


def _backup(
    backend: DynamoDBBackend, transact_items: list[dict[str, Any]]
) -> tuple[list[_Backup], list[tuple[StreamShard, int]]]:
    """Each item the transaction names, as it is now (None: absent), and each stream's length."""
    items: dict[tuple[str, DynamoType, DynamoType | None], _Backup] = {}
    streams: dict[str, tuple[StreamShard, int]] = {}
    for operation in transact_items:
        for kind, body in operation.items():
            table = backend.tables.get(str(body.get("TableName"))) if isinstance(body, dict) else None
            if table is None:
                continue
            attributes = body.get("Item") if kind == "Put" else body.get("Key")
            try:
                hash_key = DynamoType(attributes[table.hash_key_attr])
                range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError):
                continue  # moto rejects the operation before it writes anything
            if (table.name, hash_key, range_key) not in items:
                current = table.get_item(hash_key, range_key)
                # A copy: an Update changes the stored item in place.
                items[(table.name, hash_key, range_key)] = (table, hash_key, range_key, copy.deepcopy(current))
            if table.stream_shard is not None and table.name not in streams:
                streams[table.name] = (table.stream_shard, len(table.stream_shard.items))
    return list(items.values()), list(streams.values())


def _restore(items: list[_Backup], streams: list[tuple[StreamShard, int]]) -> None:
    for table, hash_key, range_key, previous in items:
        if range_key is None:
            if previous is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = previous
        elif previous is None:
            table.items[hash_key].pop(range_key, None)
        else:
            table.items[hash_key][range_key] = previous
    for shard, length in streams:
        del shard.items[length:]  # a cancelled transaction wrote no stream records


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    items, streams = _backup(self, transact_items)
    _in_transaction.active = True
    try:
        _MOTO_TRANSACT_WRITE_ITEMS(self, transact_items)
    except BaseException:
        _restore(items, streams)
        raise
    finally:
        _in_transaction.active = False


def install() -> None:
    """Transactions back up their own items, not their tables (idempotent)."""
    if DynamoDBBackend.transact_write_items is not _transact_write_items:
        DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
        dynamodb_models.copy = _TablesKeptInPlace()  # type: ignore[attr-defined,assignment]


def _shard(table: str) -> StreamShard | None:
    found = dynamodb_backends[LOCAL_ACCOUNT][LOCAL_REGION].tables.get(table)
    return found.stream_shard if found is not None else None


def trim_stream(table: str, read_up_to: int) -> int:
    """Drop the records of `table`'s stream before sequence number `read_up_to` (every reader has
    read them); how many were dropped. Sequence numbers go on as before; an iterator that points at
    a dropped record is one DynamoDB would have trimmed too."""
    with DYNAMODB_LOCK:
        shard = _shard(table)
        if shard is None:
            return 0
        dropped = min(read_up_to - shard.starting_sequence_number, len(shard.items))
        if dropped <= 0:
            return 0
        del shard.items[:dropped]
        # moto numbers a record by its place in the list from this number on.
        shard.starting_sequence_number += dropped
        return dropped


def stream_end(table: str) -> int:
    """The sequence number `table`'s stream gives its next record (0: no such table or stream here)."""
    with DYNAMODB_LOCK:
        shard = _shard(table)
        return shard.starting_sequence_number + len(shard.items) if shard is not None else 0


def unread_records(table: str) -> int:
    """How many records `table`'s stream holds (once trimmed: what some reader has not read yet)."""
    with DYNAMODB_LOCK:
        shard = _shard(table)
        return len(shard.items) if shard is not None else 0


def forget_iterator(iterator: str) -> None:
    """Drop a shard iterator its reader will not use again (it holds the next one)."""
    dynamodbstreams_backends[LOCAL_ACCOUNT][LOCAL_REGION].shard_iterators.pop(iterator, None)


__all__ = ["DYNAMODB_LOCK", "forget_iterator", "install", "stream_end", "trim_stream", "unread_records"]
