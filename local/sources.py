"""Lambda's event source mappings, locally: the template's DynamoDB streams and SQS queues, polled,
handed to their functions in Lambda's event shapes, with partial batch failures honoured."""

from __future__ import annotations

import logging
import threading
from typing import Any

from local.aws import client
from local.lambdas import LocalFunction
from local.moto_bounds import forget_iterator, stream_end, trim_stream
from local.template import LOCAL_ACCOUNT, LOCAL_REGION, Template

log = logging.getLogger("local.sources")


def _stream_records(streams: Any, arn: str, iterator: str) -> tuple[list[dict[str, Any]], str]:
    answer = streams.get_records(ShardIterator=iterator, Limit=50)
    records = [
        {**record, "eventSourceARN": arn, "eventSource": "aws:dynamodb", "awsRegion": LOCAL_REGION}
        for record in answer["Records"]
    ]
    return records, answer["NextShardIterator"]


def stream_from_now(table: str, endpoint: str) -> tuple[Any, str, str]:
    """(the streams client, the table's stream ARN, an iterator at its end): taken before the stack
    answers anything, so no change made after `start` returns is missed (a poller thread that took it
    later, on a slow first start, could miss the first push's records)."""
    dynamodb, streams = client("dynamodb", endpoint), client("dynamodbstreams", endpoint)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    return streams, arn, iterator


class StreamReaders:
    """The local stack's pollers of one table's stream, and how far each has read: what all of them
    have read is dropped from moto's stream (which would keep it for the process's life; see
    local.moto_bounds)."""

    def __init__(self, table: str) -> None:
        """Made before the pollers take their iterators at the stream's end: what the stream holds
        already (the demo contact, restored data) no poller will read, and is dropped now."""
        self.table = table
        self._read: dict[int, int | None] = {}
        self._lock = threading.Lock()
        trim_stream(table, stream_end(table))

    def join(self) -> int:
        with self._lock:
            reader = len(self._read)
            self._read[reader] = None
            return reader

    def read(self, reader: int, up_to: int) -> None:
        """`reader` has read every record before sequence number `up_to`."""
        with self._lock:
            self._read[reader] = up_to
            positions = list(self._read.values())
        if None not in positions:
            trim_stream(self.table, min(p for p in positions if p is not None))


def poll_stream(
    function: LocalFunction,
    streams: Any,
    arn: str,
    iterator: str,
    stopping: threading.Event,
    readers: StreamReaders | None = None,
) -> None:
    pending: list[dict[str, Any]] = []
    reader = readers.join() if readers is not None else 0
    # Lambda polls each shard of a DynamoDB stream four times a second.
    while not stopping.wait(0.25):
        try:
            used = iterator
            records, iterator = _stream_records(streams, arn, iterator)
            forget_iterator(used)
            if records and readers is not None:
                readers.read(reader, int(records[-1]["dynamodb"]["SequenceNumber"]) + 1)
            pending += records
            if not pending:
                continue
            answer = function.invoke({"Records": pending})
            failed = [item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", [])]
            # As Lambda does: the batch is retried from the first failed record on.
            pending = pending[
                next((i for i, r in enumerate(pending) if r["dynamodb"]["SequenceNumber"] in failed), len(pending)) :
            ]
        except Exception:
            log.exception("%s: stream batch failed", function.spec.logical_id)


def sqs_record(message_id: str, receipt_handle: str, body: str, queue_arn: str) -> dict[str, Any]:
    """One message as Lambda's SQS event source hands it to a function."""
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": LOCAL_REGION,
    }


def poll_queue(function: LocalFunction, queue_url: str, endpoint: str, stopping: threading.Event) -> None:
    sqs = client("sqs", endpoint)
    arn = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
    while not stopping.is_set():
        try:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=5, WaitTimeSeconds=1).get(
                "Messages", []
            )
            if not messages:
                continue
            event = {"Records": [sqs_record(m["MessageId"], m["ReceiptHandle"], m["Body"], arn) for m in messages]}
            answer = function.invoke(event)
            failed = {item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:  # failures come back after the visibility timeout
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception:
            log.exception("%s: queue batch failed", function.spec.logical_id)
            stopping.wait(1)


def run_sources(template: Template, functions: list[LocalFunction], stopping: threading.Event) -> list[str]:
    started = []
    readers: dict[str, StreamReaders] = {}
    for function in functions:
        for kind, logical_id in function.spec.sources:
            args: tuple[Any, ...]
            if kind == "DynamoDB":
                table = template.physical_name(logical_id)
                target: Any = poll_stream
                stream = readers.setdefault(table, StreamReaders(table))
                args = (function, *stream_from_now(table, template.endpoint), stopping, stream)
            else:
                target = poll_queue
                args = (function, template.resolve({"Ref": logical_id}), template.endpoint, stopping)
            threading.Thread(target=target, args=args, daemon=True).start()
            started.append(f"{logical_id} -> {function.spec.logical_id}")
    return started


__all__ = ["StreamReaders", "poll_stream", "run_sources"]
