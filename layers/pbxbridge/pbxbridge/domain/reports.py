"""The team's figures: what one call or one call-back contributes to its day and person.

A *contribution* is a function of one item's current state only (a call, or a call-back), never of
the order its changes came in. The storage keeps each item's last contribution beside the day-person
aggregates and applies the difference when the item changes; so an aggregate is always the sum of
its items' contributions, and duplicated, reordered or replayed stream records change nothing (the
storage applies a record only when it is newer than the one it last applied for that item).

Definitions (the docs' "Figures" section says the same for analysts):

- A call counts once it is finished (it has an `outcome`), on the day it started in the tenant's
  zone, for its person: who took or made it (`pbx_user`, else `accepted_by`), else who was rung
  (`rung`: the history's user, else the one user whose phone rang), else `unassigned`.
- Inbound (`direction` != `out`): `inbound`; `answered` when the outcome is `answered`, else
  `missed`; `answered_20s` when answered and it rang at most 20 s before it was answered
  (`accepted_at` - `rang_at`, else the history's `wait`).
- Outbound: `outbound`; `outbound_reached` when answered.
- `talk_seconds`: an answered call's `duration`. `wait_seconds`/`wait_count`: inbound calls with a
  `wait`. `rating_sum`/`rating_count`: calls with a `rating` (else the history's `history_rating`).
- A call-back counts on the day its first missed call started, for its owner: `callbacks`; once
  closed, `cb_15min` when its business time to call back is at most 15 min, else `cb_same_day` when
  it was closed on the business day that judged it (the local date of the first opening at or after
  the first missed call), else `cb_later`; never called back = `callbacks` - the three. Its business
  seconds are kept as one sample, so the median and 90th percentile are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from pbxbridge.domain.callbacks import parse_time, rung

if TYPE_CHECKING:
    from pbxbridge.domain.working_time import WorkingCalendar

UNASSIGNED = "unassigned"
# The zone of the days when the tenant has no calendar (neither setWorkingHours nor WorkingHours).
DEFAULT_ZONE = "Europe/Moscow"
ANSWERED_WITHIN_SECONDS = 20
CALLBACK_SLA_SECONDS = 15 * 60

CALL_COUNTERS = (
    "inbound",
    "answered",
    "missed",
    "answered_20s",
    "outbound",
    "outbound_reached",
    "talk_seconds",
    "wait_seconds",
    "wait_count",
    "rating_sum",
    "rating_count",
)
CALLBACK_COUNTERS = ("callbacks", "cb_15min", "cb_same_day", "cb_later")
COUNTERS = CALL_COUNTERS + CALLBACK_COUNTERS


@dataclass(frozen=True)
class Contribution:
    """What one call or call-back adds to one day and person. `samples`: a closed call-back's id ->
    its business seconds to call back (kept by id, so setting or removing one is idempotent and the
    seconds stay exact)."""

    day: date
    login: str
    counters: Mapping[str, int]
    samples: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[date, str]:
        return self.day, self.login


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def call_person(call: Mapping[str, Any]) -> str:
    return str(call.get("pbx_user") or call.get("accepted_by") or rung(call) or UNASSIGNED)


def call_contribution(call: Mapping[str, Any], calendar: WorkingCalendar) -> Contribution | None:
    """A finished call's contribution; None for a call still going (or one without a start)."""
    from pbxbridge.domain.working_time import zone_of  # the zone's models: paid where a figure is worked out

    started = parse_time(call.get("started_at"))
    outcome = call.get("outcome")
    if started is None or not outcome:
        return None
    counters: dict[str, int] = {}
    answered = outcome == "answered"
    if call.get("direction") == "out":
        counters["outbound"] = 1
        counters["outbound_reached"] = int(answered)
    else:
        counters["inbound"] = 1
        counters["answered" if answered else "missed"] = 1
        rang, accepted = parse_time(call.get("rang_at")), parse_time(call.get("accepted_at"))
        wait = _number(call.get("wait"))
        ringing = (accepted - rang).total_seconds() if rang and accepted else wait
        if answered and ringing is not None and ringing <= ANSWERED_WITHIN_SECONDS:
            counters["answered_20s"] = 1
        if wait is not None:
            counters["wait_seconds"] = wait
            counters["wait_count"] = 1
    if answered and (talk := _number(call.get("duration"))):
        counters["talk_seconds"] = talk
    rating = _number(call.get("rating") if call.get("rating") is not None else call.get("history_rating"))
    if rating is not None:
        counters["rating_sum"] = rating
        counters["rating_count"] = 1
    day = started.astimezone(zone_of(calendar.zone)).date()
    return Contribution(day, call_person(call), {k: v for k, v in counters.items() if v})


def callback_contribution(callback: Mapping[str, Any], calendar: WorkingCalendar) -> Contribution | None:
    """A call-back's contribution (a call-back item as stored: `id`, `owner`, `first_missed_at`,
    `closed_at`); None for anything that is not one."""
    from pbxbridge.domain.working_time import zone_of

    first = parse_time(callback.get("first_missed_at"))
    if first is None or not callback.get("id"):
        return None
    zone = zone_of(calendar.zone)
    counters = {"callbacks": 1}
    samples: dict[str, int] = {}
    closed = parse_time(callback.get("closed_at")) if callback.get("status") == "closed" else None
    if closed is not None:
        seconds = max(0, round(calendar.business_seconds_between(first, max(first, closed))))
        judged_on = calendar.next_opening(first).astimezone(zone).date()
        if seconds <= CALLBACK_SLA_SECONDS:
            counters["cb_15min"] = 1
        elif closed.astimezone(zone).date() <= judged_on:
            counters["cb_same_day"] = 1
        else:
            counters["cb_later"] = 1
        samples = {str(callback["id"]): seconds}
    owner = str(callback.get("owner") or UNASSIGNED)
    return Contribution(first.astimezone(zone).date(), owner, counters, samples)


@dataclass
class Aggregate:
    """One day and person's figures (or a sum of them)."""

    counters: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)

    def add(self, counters: Mapping[str, int], samples: Mapping[str, int]) -> None:
        for name, value in counters.items():
            self.counters[name] = self.counters.get(name, 0) + value
        self.samples.update(samples)

    def normalised(self) -> tuple[dict[str, int], dict[str, int]]:
        """Comparable: counters at zero are the same as counters never touched."""
        return {k: v for k, v in self.counters.items() if v}, dict(self.samples)


def fold(contributions: Iterable[Contribution | None]) -> dict[tuple[date, str], Aggregate]:
    """The aggregates from scratch: every item's contribution summed by day and person."""
    found: dict[tuple[date, str], Aggregate] = {}
    for contribution in contributions:
        if contribution is not None:
            found.setdefault(contribution.key, Aggregate()).add(contribution.counters, contribution.samples)
    return found


def sample_seconds(samples: Iterable[int]) -> list[int]:
    return sorted(samples)


def percentile(sorted_seconds: list[int], share: float) -> int | None:
    """The nearest-rank percentile: the smallest sample with at least `share` of the samples at or below it."""
    if not sorted_seconds:
        return None
    rank = max(1, math.ceil(share * len(sorted_seconds)))
    return sorted_seconds[rank - 1]


# --- the report: a period's aggregates summed per person and department ----------------------------

PERIODS = ("today", "yesterday", "this_week", "last_week", "this_month", "last_month")
MAX_PERIOD_DAYS = 366


class PeriodError(ValueError):
    pass


def period_days(period: str | None, first: date | None, last: date | None, today: date) -> list[date]:
    """The local dates of a named period (weeks start on Monday) or of `first`..`last` inclusive."""
    if period is not None:
        if first is not None or last is not None:
            raise PeriodError("give either a period or from/to, not both")
        first, last = _named_period(period, today)
    elif first is None or last is None:
        raise PeriodError("give a period or both from and to")
    if last < first:
        raise PeriodError("to is before from")
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise PeriodError(f"a report covers at most {MAX_PERIOD_DAYS} days")
    return [date.fromordinal(day) for day in range(first.toordinal(), last.toordinal() + 1)]


def _named_period(period: str, today: date) -> tuple[date, date]:
    one_day = timedelta(days=1)
    monday = today - timedelta(days=today.weekday())
    month = today.replace(day=1)
    spans = {
        "today": (today, today),
        "yesterday": (today - one_day, today - one_day),
        "this_week": (monday, today),
        "last_week": (monday - 7 * one_day, monday - one_day),
        "this_month": (month, today),
        "last_month": ((month - one_day).replace(day=1), month - one_day),
    }
    if period not in spans:
        raise PeriodError(f"period must be one of {', '.join(PERIODS)}")
    return spans[period]


def figures(aggregate: Aggregate) -> dict[str, int | float | None]:
    """One row's cells, from its summed counters and samples (the docs' "Figures" define each)."""
    c = aggregate.counters
    seconds = sample_seconds(aggregate.samples.values())
    closed = c.get("cb_15min", 0) + c.get("cb_same_day", 0) + c.get("cb_later", 0)
    return {
        "inbound": c.get("inbound", 0),
        "answered": c.get("answered", 0),
        "missed": c.get("missed", 0),
        "missed_share": round(c.get("missed", 0) / c["inbound"], 4) if c.get("inbound") else None,
        "answered_within_20s": c.get("answered_20s", 0),
        "callbacks": c.get("callbacks", 0),
        "called_back_within_15min": c.get("cb_15min", 0),
        "called_back_same_day": c.get("cb_same_day", 0),
        "called_back_later": c.get("cb_later", 0),
        "not_called_back": c.get("callbacks", 0) - closed,
        "time_to_call_back_median": percentile(seconds, 0.5),
        "time_to_call_back_p90": percentile(seconds, 0.9),
        "outbound": c.get("outbound", 0),
        "outbound_reached": c.get("outbound_reached", 0),
        "talk_seconds": c.get("talk_seconds", 0),
        # A sum of zero is never stored (a call answered at once waits 0 s): .get, not [].
        "average_wait_seconds": round(c.get("wait_seconds", 0) / c["wait_count"], 1) if c.get("wait_count") else None,
        "rating_average": round(c.get("rating_sum", 0) / c["rating_count"], 2) if c.get("rating_count") else None,
        "ratings": c.get("rating_count", 0),
    }


def team_report(
    aggregates: Mapping[tuple[date, str], Aggregate],
    visible: frozenset[str] | None,
    departments_of: Mapping[str, Iterable[str]],
    days: Iterable[date],
    names: Mapping[str, str] | None = None,
    department_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Per person (only `visible` ones; None: everyone, `unassigned` and groups included), per
    department (the sum of its visible members; one person in two departments counts in both), per day
    of `days` (the sum of the visible people, every date, zeros included), total. `names`: a login's
    real name, `department_names` a department's (a row without one is named by its login or id)."""
    names, department_names = names or {}, department_names or {}
    people: dict[str, Aggregate] = {}
    per_day: dict[date, Aggregate] = {day: Aggregate() for day in days}
    for (day, login), aggregate in aggregates.items():
        # An item that moved away leaves zeros behind: no row, as a recompute would have none.
        if aggregate.normalised() == ({}, {}):
            continue
        if visible is None or login in visible:
            people.setdefault(login, Aggregate()).add(aggregate.counters, aggregate.samples)
            per_day.setdefault(day, Aggregate()).add(aggregate.counters, aggregate.samples)
    departments: dict[str, Aggregate] = {}
    total = Aggregate()
    for login, aggregate in people.items():
        total.add(aggregate.counters, aggregate.samples)
        for department in departments_of.get(login, ()):
            departments.setdefault(department, Aggregate()).add(aggregate.counters, aggregate.samples)
    return {
        "managers": [
            {"login": login, "name": names.get(login) or login, **figures(people[login])} for login in sorted(people)
        ],
        "departments": [
            {"department": name, "name": department_names.get(name) or name, **figures(departments[name])}
            for name in sorted(departments)
        ],
        "total": figures(total),
        "days": [{"day": day.isoformat(), **figures(per_day[day])} for day in sorted(per_day)],
    }
