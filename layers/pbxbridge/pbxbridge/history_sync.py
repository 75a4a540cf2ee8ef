"""History reconciliation: a scheduled run from the watermark, or a backfill of a named range.

    {}                                              scheduled: [watermark - overlap, now - 1 min]
    {"start": "2026-11-01T00:00:00Z", "end": ...}   backfill (the watermark is left alone)
    {"period": "last_month"}                        backfill of the PBX's named period

The answer (and the console's output) reports rows seen, calls created (every push was lost),
merged (completed from the CSV), already reconciled, and rejected rows with their reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pbxbridge.domain.reconciliation import History, Ledger, Reconciler, SyncReport, period_range
from pbxbridge.domain.scenarios import scenarios_for_reconciled_calls
from pbxbridge.pbx.configured import configured_pbx
from pbxbridge.pbx.models import HistoryPeriod
from pbxbridge.protocol.commands import Moment
from pbxbridge.settings import history_sync_settings
from pbxbridge.storage.contacts import DynamoContactStore
from pbxbridge.storage.directory import users_directory
from pbxbridge.storage.dynamodb import batch_dynamodb_client, dynamodb_client
from pbxbridge.storage.watermark import DynamoLedger

logger = Logger()
metrics = Metrics()

# The PBX writes a call into its history a little after it ends.
SETTLE = timedelta(minutes=1)
# A Lambda run stops taking new windows with less than this left; the next run goes on.
RESERVE_MS = 60_000


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    start: Moment | None = None
    end: Moment | None = None
    period: HistoryPeriod | None = None

    @model_validator(mode="after")
    def _range(self) -> SyncRequest:
        if self.end and not self.start:
            raise ValueError("end needs a start")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class InvalidSyncRequestError(ValueError):
    pass


def default_reconciler(pbx: History | None = None) -> tuple[Reconciler, Ledger]:
    """The reconciler as configured: DynamoDB, the PBX (or `pbx`), the directory and the scenarios."""
    settings = history_sync_settings()
    client = dynamodb_client()
    ledger = DynamoLedger(batch_dynamodb_client(), settings.calls_table, settings.sync_state_table)
    if pbx is None:
        pbx = configured_pbx(
            settings.pbx_url,
            settings.pbx_token_parameter,
            settings.phone_region,
            settings.key_cache_seconds,
            settings.pbx_api,
        )
    directory = users_directory(client, settings.directory_table, settings.phone_region)

    def attribute(user: str | None) -> tuple[str | None, str | None]:
        login = directory.resolve(user)
        return login, directory.crm_user(login) or settings.default_crm_user

    contacts = DynamoContactStore(client, settings.contacts_table)
    on_reconciling = scenarios_for_reconciled_calls(contacts, settings.scenarios)
    reconciler = Reconciler(
        history=pbx,
        ledger=ledger,
        region=settings.phone_region,
        limit=settings.limit,
        attribute=attribute,
        on_reconciling=on_reconciling,
    )
    return reconciler, ledger


def run_sync(
    event: Any,
    context: Any = None,
    *,
    reconciler: Reconciler | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
) -> dict[str, Any]:
    """Reconcile what the event asks for; raises on PBX or DynamoDB failure, so the run is retried."""
    settings = history_sync_settings()
    try:
        request = SyncRequest.model_validate(event if isinstance(event, dict) else {})
    except ValidationError as exc:
        raise InvalidSyncRequestError(str(exc)) from None
    if reconciler is None:
        reconciler, ledger = default_reconciler()
    else:
        ledger = reconciler.ledger
    moment = now()
    scheduled = request.period is None and request.start is None
    if request.period is not None:
        start, end = period_range(request.period, moment, timedelta(hours=settings.pbx_utc_offset_hours))
    elif request.start is not None:
        start, end = request.start, request.end or moment
    else:
        watermark = ledger.watermark() or moment - timedelta(days=settings.first_run_days)
        start, end = watermark - timedelta(minutes=settings.overlap_minutes), moment - SETTLE

    def keep_going() -> bool:
        return context is None or context.get_remaining_time_in_millis() > RESERVE_MS

    report = reconciler.walk(
        start,
        end,
        SyncReport(),
        advance=scheduled,
        window=timedelta(hours=settings.window_hours),
        keep_going=keep_going,
    )
    metrics.add_dimension(name="run", value="scheduled" if scheduled else "backfill")
    metrics.add_metric(name="HistoryRowsSeen", unit=MetricUnit.Count, value=report.rows_seen)
    metrics.add_metric(name="CallsCreatedByReconciliation", unit=MetricUnit.Count, value=report.created)
    metrics.add_metric(name="CallsMergedByReconciliation", unit=MetricUnit.Count, value=report.merged)
    metrics.add_metric(name="HistoryRowsRejected", unit=MetricUnit.Count, value=len(report.rejected))
    if scheduled and report.watermark:
        metrics.add_metric(
            name="HistoryLagSeconds", unit=MetricUnit.Seconds, value=(moment - report.watermark).total_seconds()
        )
    answer = {"range": {"start": start.isoformat(), "end": end.isoformat()}, "scheduled": scheduled, **report.as_dict()}
    # Nested: `created` is a LogRecord attribute and cannot be a top-level extra key.
    logger.info("history reconciled", extra={"report": {k: v for k, v in answer.items() if k != "rejected_reasons"}})
    return answer


def handle_sync(event: Any, context: Any = None) -> dict[str, Any]:
    return run_sync(event, context)


__all__ = ["InvalidSyncRequestError", "SyncReport", "handle_sync", "run_sync"]
