"""The recorder: SQS messages `{"callid", "link", "started_at"}` -> the recording archived in S3.

A link that 404s (the PBX has not finished the file) or times out is reported failed: SQS hands it
back after the queue's visibility timeout, a bounded number of times (maxReceiveCount), then moves
it to the dead-letter queue, which raises an alarm. A rejected link is recorded on the call, done;
so is a message that is not a recording job at all: no retry can fix either.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pbxbridge.recordings.archive import RecordingArchive, RecordingLedger, archive_recording
from pbxbridge.recordings.fetch import FetchPolicy
from pbxbridge.storage.calls import DynamoCallStore
from pbxbridge.storage.dynamodb import dynamodb_client
from pbxbridge.storage.s3 import S3RecordingArchive, s3_client

logger = Logger()
metrics = Metrics()


class RecorderSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    calls_table: str = Field(alias="CALLS_TABLE", min_length=1)
    call_events_table: str = Field(alias="CALL_EVENTS_TABLE", min_length=1)
    bucket: str = Field(alias="RECORDINGS_BUCKET", min_length=1)
    pbx_url: str = Field(default="", alias="PBX_URL")
    # The tenant's domain is always allowed; others (a CDN the PBX serves files from) are listed here.
    extra_hosts: str = Field(default="", alias="RECORDING_HOSTS")
    max_megabytes: int = Field(default=200, alias="RECORDING_MAX_MEGABYTES", ge=1)
    max_seconds: float = Field(default=120, alias="RECORDING_MAX_SECONDS", gt=0)
    allow_local_http: bool = Field(default=False, alias="RECORDINGS_ALLOW_LOCAL_HTTP")

    @field_validator("allow_local_http", mode="before")
    @classmethod
    def _only_when_local(cls, value: object) -> object:
        # Plain http to loopback is for the local stack; in Lambda it would be an SSRF hole.
        return value and not os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")

    def policy(self) -> FetchPolicy:
        hosts = [host.strip() for host in self.extra_hosts.split(",") if host.strip()]
        tenant = urlsplit(self.pbx_url)
        if tenant.hostname:
            hosts.append(tenant.hostname)
        ports = {443} | ({tenant.port} if tenant.port else set())
        return FetchPolicy(
            allowed_hosts=tuple(hosts),
            allowed_ports=tuple(sorted(ports)),
            max_bytes=self.max_megabytes * 1024 * 1024,
            max_seconds=self.max_seconds,
            allow_local_http=self.allow_local_http,
        )


class RecordingJob(BaseModel):
    model_config = ConfigDict(extra="ignore")

    callid: str
    link: str
    started_at: datetime | None = None


@dataclass(frozen=True)
class RecorderDependencies:
    policy: FetchPolicy
    archive: RecordingArchive
    ledger: RecordingLedger


@lru_cache(maxsize=1)
def default_dependencies() -> RecorderDependencies:
    settings = RecorderSettings.model_validate(dict(os.environ))
    return RecorderDependencies(
        policy=settings.policy(),
        archive=S3RecordingArchive(s3_client(), settings.bucket),
        ledger=DynamoCallStore(dynamodb_client(), settings.calls_table, settings.call_events_table),
    )


def handle_message(record: SQSRecord, deps: RecorderDependencies | None = None) -> None:
    deps = deps or default_dependencies()
    job = _job(record, deps)
    if job is None:
        return
    logger.set_correlation_id(job.callid)
    archived = archive_recording(job.callid, job.link, job.started_at, deps.policy, deps.archive, deps.ledger)
    if archived is None:
        metrics.add_metric(name="RecordingsRejected", unit=MetricUnit.Count, value=1)
        logger.warning("recording link rejected", extra={"callid": job.callid})
    else:
        metrics.add_metric(name="RecordingsArchived", unit=MetricUnit.Count, value=1)
        logger.info("recording archived", extra={"callid": job.callid, "key": archived.key, "bytes": archived.size})


def _job(record: SQSRecord, deps: RecorderDependencies) -> RecordingJob | None:
    """The message's job; None (done, never retried) for a message that is not one, noted on its
    call when it names one."""
    try:
        body = json.loads(record.body)
    except ValueError:
        body = None
    try:
        return RecordingJob.model_validate(body)
    except ValidationError as exc:
        metrics.add_metric(name="RecordingsRejected", unit=MetricUnit.Count, value=1)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        callid = body.get("callid") if isinstance(body, dict) else None
        if isinstance(callid, str) and callid:
            deps.ledger.recording_rejected(callid, f"not a recording job ({problems})")
        logger.warning("not a recording job", extra={"message_id": record.message_id, "problems": problems})
        return None


def handle_batch(event: dict[str, Any], context: Any, deps: RecorderDependencies | None = None) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS)
    return dict(
        process_partial_response(
            event=event,
            record_handler=functools.partial(handle_message, deps=deps),
            processor=processor,
            context=context,
        )
    )
