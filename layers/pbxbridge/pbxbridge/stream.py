"""The tables' change streams -> call events on EventBridge, and recordings to fetch on SQS.

One stream record is one unit: its events are published and its recording queued, or the record is
reported failed and the stream hands it (and what follows it in its shard) back, so nothing is lost.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from pydantic import BaseModel, ConfigDict, Field

from pbxbridge.call_events import call_events, contact_events, new_recording_link, to_entry
from pbxbridge.storage.dynamodb import DynamoContactStore, dynamodb_client, plain_item

logger = Logger()
metrics = Metrics()


class StreamSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    calls_table: str = Field(alias="CALLS_TABLE", min_length=1)
    contacts_table: str = Field(alias="CONTACTS_TABLE", min_length=1)
    event_bus: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    recordings_queue_url: str = Field(alias="RECORDINGS_QUEUE_URL", min_length=1)


class PublishFailedError(RuntimeError):
    pass


@dataclass(frozen=True)
class StreamDependencies:
    settings: StreamSettings
    put_events: Callable[[list[dict[str, Any]]], dict[str, Any]]
    send_recording: Callable[[str], Any]
    contact: Callable[[str], tuple[str | None, str | None]]


@lru_cache(maxsize=1)
def default_dependencies() -> StreamDependencies:
    import os

    settings = StreamSettings.model_validate(dict(os.environ))
    events = boto3.client("events")
    sqs = boto3.client("sqs")
    contacts = DynamoContactStore(dynamodb_client(), settings.contacts_table)

    def contact(phone: str) -> tuple[str | None, str | None]:
        found = contacts.get_contact(phone)
        return (found.contact_name, found.responsible) if found else (None, None)

    return StreamDependencies(
        settings=settings,
        put_events=lambda entries: events.put_events(Entries=entries),
        send_recording=lambda body: sqs.send_message(QueueUrl=settings.recordings_queue_url, MessageBody=body),
        contact=contact,
    )


def _image(raw: Any) -> dict[str, Any] | None:
    return plain_item(raw) if raw else None


def handle_record(record: DynamoDBRecord, deps: StreamDependencies | None = None) -> None:
    deps = deps or default_dependencies()
    stream = record.dynamodb
    if stream is None:
        return
    old, new = _image(stream.raw_event.get("OldImage")), _image(stream.raw_event.get("NewImage"))
    table = (record.event_source_arn or "").split(":table/", 1)[-1].split("/stream/", 1)[0]
    if table == deps.settings.contacts_table:
        events = list(contact_events(old, new))
    elif new is not None:
        events = list(call_events(old, new, deps.contact))
        link = new_recording_link(old, new)
        if link:
            deps.send_recording(
                json.dumps({"callid": new["callid"], "link": link, "started_at": new.get("started_at")})
            )
            metrics.add_metric(name="RecordingsQueued", unit=MetricUnit.Count, value=1)
    else:
        events = []
    if events:
        answer = deps.put_events([to_entry(event, deps.settings.event_bus) for event in events])
        if answer.get("FailedEntryCount"):
            raise PublishFailedError(f"{answer['FailedEntryCount']} events were not accepted")
        for event in events:
            logger.info("call event published", extra={"detail_type": type(event).__name__, "event_id": event.id})  # type: ignore[attr-defined]
        metrics.add_metric(name="CallEventsPublished", unit=MetricUnit.Count, value=len(events))


def handle_stream(event: dict[str, Any], context: Any, deps: StreamDependencies | None = None) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(
        event=event, record_handler=functools.partial(handle_record, deps=deps), processor=processor, context=context
    )
    return dict(response)
