"""The local stack holds a day of calls (issue 16): moto's costs stay bounded (local.moto_bounds),
and memory stays flat while calls are played through `make run`'s stack."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import pytest
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodbstreams.models import dynamodbstreams_backends

from local import moto_bounds
from local.aws import client
from local.template import LOCAL_ACCOUNT, LOCAL_REGION

TABLE = "bounds-test"


def _table(moto_url: str, stream: bool = True) -> Any:
    dynamodb = client("dynamodb", moto_url)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **({"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}} if stream else {}),
    )
    return dynamodb


def _backend_table() -> Any:
    return dynamodb_backends[LOCAL_ACCOUNT][LOCAL_REGION].tables[TABLE]


def _put(pk: str, sk: str, **attributes: str) -> dict[str, Any]:
    item = {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": v} for k, v in attributes.items()}}
    return {"Put": {"TableName": TABLE, "Item": item}}


def _put_if_absent(pk: str, sk: str) -> dict[str, Any]:
    put = _put(pk, sk, v="x")["Put"]
    return {"Put": {**put, "ConditionExpression": "attribute_not_exists(pk)"}}


def _state(dynamodb: Any) -> tuple[list[Any], list[Any]]:
    items = sorted(
        dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"], key=lambda i: (i["pk"]["S"], i["sk"]["S"])
    )
    records = [record.to_json() for record in _backend_table().stream_shard.items]
    return items, records


def _cancelled(dynamodb: Any) -> None:
    """A transaction that changes an item in place, adds one, deletes one, and then fails a condition."""
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "changed"}},
                    }
                },
                _put("new", "1", v="new"),
                {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},
                _put_if_absent("c", "1"),  # "c" is there: the transaction is cancelled
            ]
        )


def _seed(dynamodb: Any, count: int) -> None:
    for index in range(count):
        dynamodb.put_item(TableName=TABLE, Item=_put(f"p{index}", "1", v="x" * 200)["Put"]["Item"])
    for pk, value in (("a", "original"), ("b", "kept"), ("c", "there")):
        dynamodb.put_item(TableName=TABLE, Item=_put(pk, "1", v=value)["Put"]["Item"])


def test_moto_still_backs_a_transaction_up_by_copying_whole_tables(aws: dict[str, str], moto_url: str) -> None:
    """Why local.moto_bounds exists: moto's own transact_write_items deep-copies each table it touches
    (stream records and all) and puts the copy back on a rollback. When a moto release stops doing so,
    this fails, and the patch can go (or must change with it)."""
    dynamodb = _table(moto_url)
    _seed(dynamodb, 3)
    backend = dynamodb_backends[LOCAL_ACCOUNT][LOCAL_REGION]
    table = backend.tables[TABLE]
    moto_bounds.install()
    operations = [_put("x", "1"), _put_if_absent("c", "1")]
    with pytest.raises(TransactionCanceledException):
        moto_bounds._MOTO_TRANSACT_WRITE_ITEMS(backend, operations)
    assert backend.tables[TABLE] is not table, "moto no longer swaps a copy of the table back in on a rollback"


def test_a_cancelled_transaction_is_rolled_back_item_by_item(aws: dict[str, str], moto_url: str) -> None:
    moto_bounds.install()
    dynamodb = _table(moto_url)
    _seed(dynamodb, 5)
    table = _backend_table()
    before = _state(dynamodb)
    _cancelled(dynamodb)
    assert _backend_table() is table  # the table was never copied
    assert _state(dynamodb) == before  # items (the in-place update too) and stream records as they were
    dynamodb.transact_write_items(TransactItems=[_put("a", "1", v="committed"), _put("d", "1", v="new")])
    items, records = _state(dynamodb)
    assert {i["pk"]["S"]: i["v"]["S"] for i in items}["a"] == "committed"
    assert [r["eventName"] for r in records[len(before[1]) :]] == ["MODIFY", "INSERT"]
    sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))


# Measured in a process of its own: tracemalloc counts every thread's allocations, and in a full run
# the stream pollers of the stacks other tests started keep allocating beside the measured request.
_TRANSACTION_COST = """
import tracemalloc

from local import moto_bounds
from local.aws import EmbeddedAws, free_port
from tests.test_local_memory import TABLE, _put, _seed, _table

dynamodb = _table(EmbeddedAws(free_port()).url)  # EmbeddedAws installs local.moto_bounds
_seed(dynamodb, 2000)


def peak(request):
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    request()
    return tracemalloc.get_traced_memory()[1] - base


key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
tracemalloc.start()
reading = min(peak(lambda: dynamodb.get_item(TableName=TABLE, Key=key)) for _ in range(5))
writing = min(
    peak(lambda: dynamodb.transact_write_items(TransactItems=[_put("a", "1", v="y"), _put("e", "1")]))
    for _ in range(5)
)
print(writing - reading)
"""


def test_a_transaction_costs_its_own_items_not_the_table() -> None:
    """With ~2,000 items (and their stream records) stored, a transaction of two items allocates at
    its peak about what reading one item does (moto's own backup: ~12 MB more, a copy of it all)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _TRANSACTION_COST],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "layers/pbxbridge")])},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    extra = int(done.stdout.strip().splitlines()[-1])
    assert extra < 3 * 2**20, f"a transaction allocated {extra / 2**20:.1f} MB more than a read"


def test_a_trimmed_stream_goes_on_with_its_sequence(aws: dict[str, str], moto_url: str) -> None:
    dynamodb = _table(moto_url)
    streams = client("dynamodbstreams", moto_url)
    arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    _seed(dynamodb, 2)
    answer = streams.get_records(ShardIterator=iterator)
    read = [int(r["dynamodb"]["SequenceNumber"]) for r in answer["Records"]]
    assert len(read) == 5
    moto_bounds.forget_iterator(iterator)
    assert iterator not in dynamodbstreams_backends[LOCAL_ACCOUNT][LOCAL_REGION].shard_iterators
    assert moto_bounds.trim_stream(TABLE, read[-1] + 1) == 5
    assert moto_bounds.unread_records(TABLE) == 0
    dynamodb.put_item(TableName=TABLE, Item=_put("late", "1")["Put"]["Item"])
    after = streams.get_records(ShardIterator=answer["NextShardIterator"])["Records"]
    assert [int(r["dynamodb"]["SequenceNumber"]) for r in after] == [read[-1] + 1]
    horizon = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    assert [
        r["dynamodb"]["Keys"]["pk"]["S"] for r in streams.get_records(ShardIterator=horizon["ShardIterator"])["Records"]
    ] == ["late"]


def test_memory_stays_flat_under_a_sustained_load(moto_url: str) -> None:
    """~1,500 pushes of a busy office's calls (20 regular clients, so their call-back ledgers grow)
    through `make run`'s stack: the process grows by less than the bound per thousand pushes (the
    release before this one: ~250 MB per thousand at this size, and growing faster the longer it ran),
    every push answered, every stream read and its records dropped."""
    from bench.load import GROWTH_BOUND_MB_PER_1000, play
    from tests.conftest import running_stack

    # As `make run`: short log lines and a quiet moto server, undone afterwards so that the tests
    # after this one read the functions' JSON lines as Lambda writes them.
    werkzeug = logging.getLogger("werkzeug")
    service = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "pbxbridge"))
    saved = (sys.stdout, werkzeug.level, [(handler, handler.formatter) for handler in service.handlers])
    werkzeug.setLevel(logging.WARNING)
    try:
        with running_stack(moto_url, "load-key", short_logs=True) as stack:
            result = play(stack, 1500, warm_up=300, players=3, clients=20)
            assert result.unanswered == 0
            assert not any(moto_bounds.unread_records(table) for table in stack.tables.values())
            iterators = len(dynamodbstreams_backends[LOCAL_ACCOUNT][LOCAL_REGION].shard_iterators)
    finally:
        sys.stdout, level, formatters = saved
        werkzeug.setLevel(level)
        for handler, formatter in formatters:
            handler.setFormatter(formatter)
    assert iterators <= 2 * len(stack.sources), f"{iterators} shard iterators kept"
    assert result.growth_mb_per_1000 < GROWTH_BOUND_MB_PER_1000, result.as_dict()
