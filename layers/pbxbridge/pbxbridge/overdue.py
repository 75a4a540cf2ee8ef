"""The overdue call-backs checker (a schedule, every minute): escalate each open call-back whose SLA
ran out (pbxbridge.domain.overdue says exactly when), once. The escalation is written to the
call-backs table; its stream publishes `CallbackOverdue` (stream.py) and reloads the owner's widget
list, where the call-back now shows as overdue (the card function)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from pbxbridge.domain.overdue import OverdueStore, escalate_overdue
from pbxbridge.function_settings import OverdueSettings

if TYPE_CHECKING:
    from pbxbridge.domain.working_time import WorkingCalendar

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True)
class OverdueDependencies:
    settings: OverdueSettings
    store: OverdueStore
    # The calendar in force at each run (setWorkingHours may change it any time); None: wall time.
    calendar: Callable[[], WorkingCalendar | None]
    now: Callable[[], datetime] = lambda: datetime.now(tz=UTC)


def working_calendar(settings: OverdueSettings, client: Any) -> Callable[[], WorkingCalendar | None]:
    """The calendar `setWorkingHours` stored, else the template's `WorkingHours`, else None."""
    from pbxbridge.domain.working_time import WorkingCalendar
    from pbxbridge.storage.calendar import DynamoCalendarStore

    default = WorkingCalendar.read(settings.working_hours) if settings.working_hours else None
    stored = DynamoCalendarStore(client, settings.directory_table) if settings.directory_table else None
    return lambda: (stored.working_calendar() if stored else None) or default


@lru_cache(maxsize=1)
def default_dependencies() -> OverdueDependencies:
    from pbxbridge.storage.dynamodb import batch_dynamodb_client
    from pbxbridge.storage.overdue import DynamoOverdueStore

    settings = OverdueSettings.model_validate(dict(os.environ))
    client = batch_dynamodb_client()
    return OverdueDependencies(
        settings=settings,
        store=DynamoOverdueStore(client, settings.callbacks_table),
        calendar=working_calendar(settings, client),
    )


def handle_check(event: Any, context: Any, deps: OverdueDependencies | None = None) -> dict[str, Any]:
    """One run: the schedule's input is ignored (every run looks at everything that may be due)."""
    deps = deps or default_dependencies()
    calendar = deps.calendar()
    run = escalate_overdue(deps.store, deps.now(), timedelta(minutes=deps.settings.sla_minutes), calendar)
    # Call-backs past the SLA's wall time and judged (the escalations are counted where they are
    # published: stream.py's CallbacksOverdue).
    metrics.add_metric(name="OverdueCandidates", unit=MetricUnit.Count, value=run.checked)
    answer = {"checked": run.checked, "not_yet": run.not_yet, **run.outcomes, "business_time": calendar is not None}
    logger.info("overdue call-backs checked", extra=answer)
    return answer


__all__ = ["OverdueDependencies", "default_dependencies", "handle_check", "working_calendar"]
