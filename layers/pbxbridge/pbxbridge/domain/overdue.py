"""Overdue call-backs: a call-back still open when its SLA has run out escalates, once.

The definition (docs/callbacks.md says the same for people):

- The clock starts at the call-back's first missed call (`first_missed_at`, the call's start). Further
  missed calls from the number do not restart it.
- The SLA (the template's `CallbackSlaMinutes`, 15 by default) counts **business time** when the
  tenant has a working calendar (`setWorkingHours`, else the `WorkingHours` parameter): only the
  calendar's open periods count, so a call missed at night or at the weekend is due SLA minutes after
  the next opening. Without a calendar it counts wall time.
- A call-back is overdue from the moment its SLA ran out (`overdue_since`) if it is still open then,
  i.e. no answered call with the number (in either direction) has been recorded by the time the
  checker looks. A call-back that is closed first never escalates; one that escalated and is closed
  later keeps its `CallbackOverdue` and gets its `CallbackClosed` as usual.
- It escalates **once per call-back**: one `CallbackOverdue` event, whatever the number of checker
  runs, retries or concurrent runs, and even if its calls are recomputed later.

The store (`OverdueStore`) is the data access; this module never touches boto3.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from pbxbridge.domain.callbacks import Callback

if TYPE_CHECKING:
    from pbxbridge.domain.working_time import WorkingCalendar

DEFAULT_SLA = timedelta(minutes=15)
# A calendar with no opening for this long (a misconfigured one: every day a holiday) never makes a
# call-back overdue, rather than the checker walking the calendar forever.
_HORIZON = timedelta(days=400)
_WINDOW = timedelta(days=7)


def due_at(first_missed_at: datetime, sla: timedelta, calendar: WorkingCalendar | None) -> datetime | None:
    """When a call-back whose first call was missed at `first_missed_at` becomes overdue: `sla` of the
    calendar's business time later (wall time without a calendar). None when the calendar does not
    open within a year and more."""
    if calendar is None:
        return first_missed_at + sla
    remaining = sla
    start, give_up = first_missed_at, first_missed_at + _HORIZON
    while start < give_up:
        window = start + _WINDOW
        for opens, closes in calendar.open_periods(start, window):
            if closes - opens >= remaining:
                return opens + remaining
            remaining -= closes - opens
        start = window
    return None


class Marked(StrEnum):
    ESCALATED = "escalated"  # this run made it overdue: its CallbackOverdue is published from that write
    REFLAGGED = "reflagged"  # it had escalated already (its item was rewritten since): flag restored, no event
    CLOSED = "closed"  # closed (or gone) before we could: nothing happens
    RACED = "raced"  # another run was writing it at the same moment: the next run looks again


class OverdueStore(Protocol):
    """Data access for the checker (pbxbridge.storage.overdue.DynamoOverdueStore is one)."""

    def open_missed_since_before(self, moment: datetime) -> Iterable[Callback]:
        """The open call-backs not flagged overdue whose first missed call started at or before `moment`."""
        ...

    def mark_overdue(self, callback: Callback, since: datetime, sla: timedelta, business_time: bool) -> Marked:
        """Flag the call-back overdue since `since` and record its one escalation, only while it is
        open; an escalation already recorded is never recorded again."""
        ...


@dataclass
class OverdueRun:
    """What one run of the checker did (logged, and the handler's answer)."""

    checked: int = 0
    not_yet: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: Marked) -> None:
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1


def escalate_overdue(
    store: OverdueStore, now: datetime, sla: timedelta = DEFAULT_SLA, calendar: WorkingCalendar | None = None
) -> OverdueRun:
    """Escalate every open call-back whose SLA has run out by `now`.

    Business time never exceeds wall time, so a call-back due by `now` was first missed at least `sla`
    of wall time before it: the store is asked for those only, and each is then judged exactly."""
    run = OverdueRun()
    for callback in store.open_missed_since_before(now - sla):
        run.checked += 1
        due = due_at(callback.first_missed_at, sla, calendar)
        if due is None or due > now:
            run.not_yet += 1
            continue
        run.count(store.mark_overdue(callback, due, sla, calendar is not None))
    return run


__all__ = ["DEFAULT_SLA", "Marked", "OverdueRun", "OverdueStore", "due_at", "escalate_overdue"]
