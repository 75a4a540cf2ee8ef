"""The tables' change streams -> call events on EventBridge, recordings to fetch on SQS, call-backs;
the PBX's `sipregs_error` pushes -> SipRegistrationFailed.

A call that was missed, answered or not answered goes into its number's call-backs (CallbacksTable);
the call-backs table's own stream then publishes `CallbackOpened` / `CallbackClosed`, and
`CallbackOverdue` when the overdue checker (overdue.py) records a call-back's one escalation.

One stream record is one unit: its events are published and its recording queued, or the record is
reported failed and the stream hands it (and what follows it in its shard) back, so nothing is lost.
"""

from __future__ import annotations

import functools
import json
import os
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

from pbxbridge.call_events import (
    CallbackClosed,
    CallbackOpened,
    CallbackOverdue,
    call_events,
    callback_events,
    contact_events,
    new_recording_link,
    to_entry,
)
from pbxbridge.domain.callbacks import CallFact, call_facts
from pbxbridge.storage.contacts import DynamoContactStore
from pbxbridge.storage.dynamodb import dynamodb_client, stream_change

logger = Logger()
metrics = Metrics()


class StreamSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    calls_table: str = Field(alias="CALLS_TABLE", min_length=1)
    contacts_table: str = Field(alias="CONTACTS_TABLE", min_length=1)
    event_bus: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    recordings_queue_url: str = Field(alias="RECORDINGS_QUEUE_URL", min_length=1)
    callbacks_table: str | None = Field(default=None, alias="CALLBACKS_TABLE")
    directory_table: str | None = Field(default=None, alias="DIRECTORY_TABLE")
    webhook_pushes_table: str | None = Field(default=None, alias="WEBHOOK_PUSHES_TABLE")
    reports_table: str | None = Field(default=None, alias="REPORTS_TABLE")
    working_hours: str | None = Field(default=None, alias="WORKING_HOURS")
    phone_region: str = Field(default="RU", alias="PHONE_REGION")


class PublishFailedError(RuntimeError):
    pass


@dataclass(frozen=True)
class StreamDependencies:
    settings: StreamSettings
    put_events: Callable[[list[dict[str, Any]]], dict[str, Any]]
    send_recording: Callable[[str], Any]
    contact: Callable[[str], tuple[str | None, str | None]]
    # Adds one call to its number's call-backs (idempotent); None where the stack has no call-backs.
    record_call: Callable[[CallFact], Any] | None = None
    # Brings the team's figures up to one call's or call-back's state at a stream position
    # ("call" or "callback", the record's sequence number, the item); None where the stack keeps none.
    count_for_reports: Callable[[str, str, dict[str, Any]], Any] | None = None


@lru_cache(maxsize=1)
def default_dependencies() -> StreamDependencies:
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
        record_call=callback_recorder(settings, contacts) if settings.callbacks_table else None,
        count_for_reports=report_counter(settings) if settings.reports_table else None,
    )


# The tenant's calendar is re-read this often: a setWorkingHours is picked up without a deploy.
CALENDAR_CACHE_SECONDS = 300


def report_counter(settings: StreamSettings) -> Callable[[str, str, dict[str, Any]], Any]:
    import time

    from pbxbridge.domain.reports import DEFAULT_ZONE, call_contribution, callback_contribution
    from pbxbridge.domain.working_time import WorkingCalendar, tenant_calendar
    from pbxbridge.storage.calendar import DynamoCalendarStore
    from pbxbridge.storage.dynamodb import batch_dynamodb_client, stream_position
    from pbxbridge.storage.reports import DynamoReportStore

    assert settings.reports_table is not None
    store = DynamoReportStore(batch_dynamodb_client(), settings.reports_table)
    calendars = (
        DynamoCalendarStore(batch_dynamodb_client(), settings.directory_table) if settings.directory_table else None
    )
    default = WorkingCalendar.parse(settings.working_hours) if settings.working_hours else None
    cached: list[tuple[float, WorkingCalendar]] = []

    def calendar() -> WorkingCalendar:
        if not cached or time.monotonic() - cached[0][0] > CALENDAR_CACHE_SECONDS:
            stored = calendars.working_calendar() if calendars else None
            cached[:] = [(time.monotonic(), tenant_calendar(stored, default, DEFAULT_ZONE))]
        return cached[0][1]

    def count(kind: str, sequence_number: str, item: dict[str, Any]) -> None:
        if kind == "call":
            store.apply(f"call#{item['callid']}", stream_position(sequence_number), call_contribution(item, calendar()))
        else:
            contribution = callback_contribution(item, calendar())
            store.apply(f"callback#{item.get('id')}", stream_position(sequence_number), contribution)

    return count


def callback_recorder(settings: StreamSettings, contacts: DynamoContactStore) -> Callable[[CallFact], Any]:
    from pbxbridge.domain.callbacks import owner_by, record_call
    from pbxbridge.domain.directory import CachedDirectory
    from pbxbridge.storage.callbacks import DynamoCallbackStore
    from pbxbridge.storage.directory import users_directory
    from pbxbridge.storage.dynamodb import batch_dynamodb_client

    assert settings.callbacks_table is not None
    # Off the caller's path, and a transaction: the patient client, not the webhook's tight one.
    store = DynamoCallbackStore(batch_dynamodb_client(), settings.callbacks_table)
    directory = CachedDirectory(
        lambda: users_directory(batch_dynamodb_client(), settings.directory_table, settings.phone_region)
    )

    def responsible_login(phone: str) -> str | None:
        # The widget's token is for one PBX login: a CRM user as responsible becomes the login mapped to it.
        found = contacts.get_contact(phone)
        if found is None or not found.responsible:
            return None
        snapshot = directory()
        login = snapshot.responsible_login(found.responsible)
        if snapshot.users and not snapshot.is_active(login):
            return None  # nobody's widget would show it: the user or group that was rung owns it instead
        return login

    def rung_login(user: str) -> str | None:
        # A leg as the PBX named it (`andy@tenant`) is the login the widget's token is for.
        return directory().resolve(user)

    owner_of = owner_by(responsible_login, rung_login)
    return lambda fact: record_call(store, fact, owner_of)


def handle_record(record: DynamoDBRecord, deps: StreamDependencies | None = None) -> None:
    deps = deps or default_dependencies()
    change = stream_change(record)
    if change is None:
        return
    table, old, new = change
    if table == deps.settings.contacts_table:
        events = list(contact_events(old, new))
    elif table == deps.settings.callbacks_table:
        events = _callback_events(old, new)
        if deps.count_for_reports is not None and new is not None and str(new.get("sk", "")).startswith("callback#"):
            _count_for_reports(deps, record, "callback", new)
    elif table == deps.settings.webhook_pushes_table:
        events = _webhook_push_events(old, new)
    elif new is not None:
        events = list(call_events(old, new, deps.contact))
        if deps.record_call is not None:
            # Before publishing: if this fails the record comes back, and the events' ids are stable.
            for fact in call_facts(new, (type(event).__name__ for event in events), old):
                deps.record_call(fact)
        if deps.count_for_reports is not None:
            _count_for_reports(deps, record, "call", new)
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
        _count_callbacks(events)


def _count_for_reports(deps: StreamDependencies, record: DynamoDBRecord, kind: str, item: dict[str, Any]) -> None:
    assert deps.count_for_reports is not None
    sequence_number = record.dynamodb.sequence_number if record.dynamodb else None
    if sequence_number:
        deps.count_for_reports(kind, sequence_number, item)


def _callback_events(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Any]:
    from pbxbridge.storage.callbacks import CALLBACK_PREFIX, callback_from_item
    from pbxbridge.storage.overdue import overdue_event

    escalation = overdue_event(new)
    if escalation is not None:
        # The checker created it (once per call-back); a rewrite of it would publish nothing new.
        return [escalation] if old is None else []
    if new is None or not str(new.get("sk", "")).startswith(CALLBACK_PREFIX):
        return []  # a number's ledger, or a call-back or escalation expiring
    before = callback_from_item(old) if old else None
    return list(callback_events(before, callback_from_item(new)))


def _webhook_push_events(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Any]:
    from pbxbridge.call_events import webhook_push_events
    from pbxbridge.storage.webhook_pushes import record_from_item

    if new is None:
        return []  # a record expiring
    return list(webhook_push_events(record_from_item(old) if old else None, record_from_item(new)))


def _count_callbacks(published: list[Any]) -> None:
    """Once published: a record handed back after a failed publish is not counted twice."""
    for event in published:
        if isinstance(event, CallbackClosed):
            metrics.add_metric(name="CallbacksClosed", unit=MetricUnit.Count, value=1)
            if event.reason == "answered":
                # The PBX's verdict says nothing of when: its "time" is only an upper bound.
                metrics.add_metric(name="TimeToCallBack", unit=MetricUnit.Seconds, value=event.seconds_to_call_back)
        elif isinstance(event, CallbackOpened):
            metrics.add_metric(name="CallbacksOpened", unit=MetricUnit.Count, value=1)
        elif isinstance(event, CallbackOverdue):
            metrics.add_metric(name="CallbacksOverdue", unit=MetricUnit.Count, value=1)


def handle_stream(event: dict[str, Any], context: Any, deps: StreamDependencies | None = None) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(
        event=event, record_handler=functools.partial(handle_record, deps=deps), processor=processor, context=context
    )
    return dict(response)
