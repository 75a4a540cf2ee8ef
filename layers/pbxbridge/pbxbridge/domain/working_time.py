"""Working time: a tenant's calendar, and how much business time lies between two moments.

A call-back's time counts business time only, and a call missed at night is judged from the next
opening. A calendar is a time zone (IANA, so DST is the zone's), the hours of each weekday (one or
more intervals: `09:00-13:00,14:00-18:00`), holidays (closed all day) and extra working dates with
their own hours (a Saturday worked for a moved holiday). Without a calendar a tenant works wall time
in its zone: `WorkingCalendar.wall_time(zone)`, open around the clock.

Rules, decided once:

- An interval ends after it starts on the same day; `24:00` is the end of the day. One that crosses
  midnight (`22:00-02:00`) is refused: write `22:00-24:00` and `00:00-02:00` on the next day, so that
  which day a night belongs to (holidays!) is never guessed.
- A week with no hours at all is refused: such a calendar is never open, and "when does it open
  next?" would have no answer.
- Hours are local wall-clock times. On the night clocks go back, a time that happens twice is its
  first occurrence; a time the clocks skip (02:30 when 02:00 becomes 03:00) is the moment they jump
  (03:00), so hours wholly inside the skipped hour open nothing. Business time is counted in real
  elapsed seconds, so an interval across a DST change is an hour shorter or longer than its span.

Compact form (the `WorkingHours` template parameter, the console), clauses split by `;`, the zone first:
`Europe/Moscow;mon-fri 09:00-13:00,14:00-18:00;sat 10:00-15:00;holidays 2027-01-01,2027-01-07;`
`workdays 2027-02-27 09:00-18:00`
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
DAY = 24 * 60  # minutes
MAX_INTERVALS_PER_DAY = 8
# How far ahead `next_opening` looks past the calendar's last dated entry before it gives up.
_LOOKAHEAD_DAYS = 15

_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


class WorkingTimeError(ValueError):
    """A calendar that cannot be right (an interval across midnight, an empty week, a bad zone, ...)."""


def _minutes(hours: int, minutes: int, text: str, *, end: bool) -> int:
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise WorkingTimeError(f"{text}: not a time of day (00:00 to 23:59, or 24:00 as an end)")
    return hours * 60 + minutes


def parse_interval(text: str) -> tuple[int, int]:
    """`09:00-18:00` -> (540, 1080), minutes from local midnight; the end after the start, at most 24:00."""
    match = _HOURS.match(text.strip())
    if not match:
        raise WorkingTimeError(f"{text!r}: hours are written HH:MM-HH:MM, e.g. 09:00-18:00")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start = _minutes(h1, m1, text, end=False)
    end = _minutes(h2, m2, text, end=True)
    if end < start:
        raise WorkingTimeError(
            f"{text}: crosses midnight; write it as two intervals, up to 24:00 and from 00:00 on the next day"
        )
    if end == start:
        raise WorkingTimeError(f"{text}: an empty interval")
    return start, end


def _format(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def format_interval(interval: tuple[int, int]) -> str:
    return f"{_format(interval[0])}-{_format(interval[1])}"


def _normalise_interval(value: object) -> object:
    return format_interval(parse_interval(value)) if isinstance(value, str) else value


# One interval of a day as written on the wire: `HH:MM-HH:MM`, normalised (`9:00-18:00` -> `09:00-18:00`).
Interval = Annotated[
    str,
    BeforeValidator(_normalise_interval),
    Field(pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$", examples=["09:00-18:00"]),
]
DayHours = Annotated[tuple[Interval, ...], Field(max_length=MAX_INTERVALS_PER_DAY)]


def _day(intervals: tuple[str, ...], where: str) -> tuple[tuple[int, int], ...]:
    """A day's intervals in minutes, sorted; overlapping ones are refused (adjacent ones are one)."""
    parsed = sorted(parse_interval(text) for text in intervals)
    for (s1, e1), (s2, e2) in itertools.pairwise(parsed):
        if s2 < e1:
            raise WorkingTimeError(f"{where}: {format_interval((s1, e1))} and {format_interval((s2, e2))} overlap")
    return tuple(parsed)


class TimeZoneDataMissingError(RuntimeError):
    """This Python finds no time zone database at all: no zone is wrong, the environment is."""


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone `name` (`Europe/Moscow`), or a clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    try:
        ZoneInfo("UTC")
    except ZoneInfoNotFoundError:
        # Not the caller's mistake: say so rather than blame every zone name (the `tzdata` package or
        # the system's /usr/share/zoneinfo provides them).
        raise TimeZoneDataMissingError("no time zone database (tzdata) is installed") from None
    raise WorkingTimeError(f"{name!r} is not an IANA time zone (like Europe/Moscow)")


class WorkingCalendar(BaseModel):
    """A tenant's working time. `week` maps a weekday to its hours (a day not named is closed);
    `holidays` are closed all day; `workdays` are dates worked with the hours given (they win over
    the weekday's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Moscow")
    week: dict[Weekday, DayHours] = Field(description="each weekday's hours; a day not named is closed")
    holidays: tuple[date, ...] = Field(default=(), max_length=2000, description="dates closed all day")
    workdays: dict[date, DayHours] = Field(
        default_factory=dict, max_length=2000, description="extra working dates with their hours"
    )

    _tz: ZoneInfo = PrivateAttr()
    _week: tuple[tuple[tuple[int, int], ...], ...] = PrivateAttr()
    _dated: dict[date, tuple[tuple[int, int], ...]] = PrivateAttr()
    _horizon: date = PrivateAttr()
    # A local date's open periods in UTC, as worked out once (reports ask about the same days often).
    _periods: dict[date, tuple[tuple[datetime, datetime], ...]] = PrivateAttr(default_factory=dict)

    @field_validator("zone")
    @classmethod
    def _an_iana_zone(cls, value: str) -> str:
        zone_of(value)
        return value

    @field_validator("holidays")
    @classmethod
    def _sorted_dates(cls, value: tuple[date, ...]) -> tuple[date, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> WorkingCalendar:
        week = tuple(_day(self.week.get(day, ()), day) for day in WEEKDAYS)
        if not any(week):
            raise WorkingTimeError("the week has no working hours: such a calendar is never open")
        dated: dict[date, tuple[tuple[int, int], ...]] = dict.fromkeys(self.holidays, ())
        for day, hours in self.workdays.items():
            if day in dated:
                raise WorkingTimeError(f"{day} is both a holiday and a working date")
            if not hours:
                raise WorkingTimeError(f"working date {day} has no hours (a closed date is a holiday)")
            dated[day] = _day(hours, str(day))
        self._tz = zone_of(self.zone)
        self._week = week
        self._dated = dated
        self._horizon = max(dated, default=date.min)
        return self

    def __eq__(self, other: object) -> bool:
        # The fields only: pydantic would compare the private caches too, which depend on use.
        if not isinstance(other, WorkingCalendar):
            return NotImplemented
        fields = ("zone", "week", "holidays", "workdays")
        return all(getattr(self, name) == getattr(other, name) for name in fields)

    __hash__ = None  # type: ignore[assignment]  # a calendar holds dicts: unhashable, as pydantic makes it

    @classmethod
    def wall_time(cls, zone: str) -> WorkingCalendar:
        """No calendar: open around the clock in `zone` (business time is wall time)."""
        return cls(zone=zone, week=dict.fromkeys(WEEKDAYS, ("00:00-24:00",)))

    @classmethod
    def read(cls, value: Any) -> WorkingCalendar:
        """A calendar from its compact form (a string) or its fields (a mapping)."""
        try:
            return cls.parse(value) if isinstance(value, str) else cls.model_validate(value)
        except ValidationError as exc:
            raise WorkingTimeError(_problems(exc)) from None

    # The compact form

    @classmethod
    def parse(cls, text: str) -> WorkingCalendar:
        """`Europe/Moscow;mon-fri 09:00-18:00;holidays 2027-01-01` (clauses split by `;`, the zone first)."""
        clauses = [clause.strip() for clause in text.split(";")]
        zone, rules = clauses[0], [clause for clause in clauses[1:] if clause]
        if not zone:
            raise WorkingTimeError("the compact form starts with the time zone: Europe/Moscow;mon-fri 09:00-18:00")
        week: dict[str, list[str]] = {}
        holidays: list[date] = []
        workdays: dict[date, list[str]] = {}
        for clause in rules:
            head, _, rest = clause.partition(" ")
            rest = rest.strip()
            if head.lower() == "holidays":
                holidays += _dates(rest, clause)
            elif head.lower() == "workdays":
                listed, _, hours = rest.partition(" ")
                for day in _dates(listed, clause):
                    if day in workdays:
                        raise WorkingTimeError(f"{clause}: {day} is given twice")
                    workdays[day] = _intervals(hours, clause)
            else:
                for weekday in _weekdays(head, clause):
                    if weekday in week:
                        raise WorkingTimeError(f"{clause}: {weekday} is given twice")
                    week[weekday] = _intervals(rest, clause)
        return cls.model_validate({"zone": zone, "week": week, "holidays": holidays, "workdays": workdays})

    def compact(self) -> str:
        """The compact form; `parse(c.compact()) == c`. Weekdays with the same hours share a clause."""
        clauses = [self.zone]
        by_hours: dict[tuple[str, ...], list[int]] = {}
        for index in range(len(WEEKDAYS)):
            if self._week[index]:
                by_hours.setdefault(tuple(format_interval(i) for i in self._week[index]), []).append(index)
        for hours, days in by_hours.items():
            clauses.append(f"{_weekday_ranges(days)} {','.join(hours)}")
        if self.holidays:
            clauses.append("holidays " + ",".join(day.isoformat() for day in self.holidays))
        for day in sorted(self.workdays):
            clauses.append(f"workdays {day.isoformat()} " + ",".join(format_interval(i) for i in self._dated[day]))
        return ";".join(clauses)

    # Time

    def hours_on(self, day: date) -> tuple[tuple[int, int], ...]:
        """The local date's working intervals (minutes from midnight): its own if dated, else its weekday's."""
        dated = self._dated.get(day)
        return dated if dated is not None else self._week[day.weekday()]

    def open_periods(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open periods overlapping [start, end), in UTC, merged and clipped to it, in order."""
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            return
        periods: list[tuple[datetime, datetime]] = []
        day = start.astimezone(self._tz).date() - timedelta(days=1)
        last = end.astimezone(self._tz).date() + timedelta(days=1)
        while day <= last:
            for day_opens, day_closes in self._periods_on(day):
                opens, closes = max(day_opens, start), min(day_closes, end)
                if opens < closes:
                    periods.append((opens, closes))
            day += timedelta(days=1)
        periods.sort()
        pending: tuple[datetime, datetime] | None = None
        for opens, closes in periods:
            if pending is not None and opens <= pending[1]:
                pending = (pending[0], max(pending[1], closes))
                continue
            if pending is not None:
                yield pending
            pending = (opens, closes)
        if pending is not None:
            yield pending

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """The business time in [start, end) (zero when end is not after start)."""
        return sum((closes - opens for opens, closes in self.open_periods(start, end)), timedelta())

    def business_seconds_between(self, start: datetime, end: datetime) -> float:
        return self.business_time_between(start, end).total_seconds()

    def is_open(self, moment: datetime) -> bool:
        moment = _aware(moment, "moment")
        return any(True for _ in self.open_periods(moment, moment + timedelta(microseconds=1)))

    def next_opening(self, moment: datetime) -> datetime:
        """`moment` itself when open, else when the calendar next opens (in UTC)."""
        moment = _aware(moment, "moment")
        give_up = max(moment.astimezone(self._tz).date(), self._horizon) + timedelta(days=_LOOKAHEAD_DAYS)
        start = moment
        while start.astimezone(self._tz).date() <= give_up:
            window = start + timedelta(days=7)
            for opens, _ in self.open_periods(start, window):
                return opens
            start = window
        # A non-empty week always opens within a week of its last dated entry, unless every interval
        # falls in a DST gap: refuse rather than loop.
        raise WorkingTimeError(f"{self.compact()}: never opens after {moment.isoformat()}")

    def _periods_on(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The local date's open periods in UTC (a period inside a skipped DST hour is none)."""
        found = self._periods.get(day)
        if found is None:
            if len(self._periods) > 4096:  # a long-lived calendar over years of dates stays small
                self._periods.clear()
            spans = ((self._utc(day, a), self._utc(day, b)) for a, b in self.hours_on(day))
            found = self._periods[day] = tuple((opens, closes) for opens, closes in spans if opens < closes)
        return found

    def _utc(self, day: date, minute: int) -> datetime:
        if minute == DAY:
            day, minute = day + timedelta(days=1), 0
        wall = datetime.combine(day, time(minute // 60, minute % 60))
        instant = wall.replace(tzinfo=self._tz).astimezone(UTC)
        if instant.astimezone(self._tz).replace(tzinfo=None) == wall:
            return instant
        # The clocks skip this time: it is the moment they jump (02:30 -> 03:00 when 02:00 becomes 03:00).
        return _jump(self._tz, wall.replace(tzinfo=self._tz, fold=1).astimezone(UTC), instant)


def _jump(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant in (before, after] where the zone's offset changes, to the second (offsets and
    transitions are whole seconds)."""
    offset = after.astimezone(zone).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def _problems(exc: ValidationError) -> str:
    """A validation error in one line: `week.mon.0: 22:00-02:00: crosses midnight; ...`."""
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        found.append(f"{where}: {message}" if where else message)
    return "; ".join(found[:5])


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise WorkingTimeError(f"{what} has no time zone: business time needs an aware datetime")
    return moment


def _dates(text: str, clause: str) -> list[date]:
    try:
        return [date.fromisoformat(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise WorkingTimeError(f"{clause}: dates are written YYYY-MM-DD, separated by commas") from None


def _intervals(text: str, clause: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise WorkingTimeError(f"{clause}: no hours (e.g. 09:00-18:00)")
    return parts


def _weekdays(text: str, clause: str) -> list[Weekday]:
    """`mon-fri,sun` -> [mon, tue, wed, thu, fri, sun]; a range may wrap (`sat-mon`)."""
    days: list[Weekday] = []
    for part in text.lower().split(","):
        first, dash, last = part.strip().partition("-")
        if first not in WEEKDAYS or (dash and last not in WEEKDAYS):
            raise WorkingTimeError(
                f"{clause!r}: not a rule; write days and hours (mon-fri 09:00-18:00), "
                "holidays YYYY-MM-DD,... or workdays YYYY-MM-DD,... HH:MM-HH:MM"
            )
        i = WEEKDAYS.index(first)
        j = WEEKDAYS.index(last) if dash else i
        while True:
            days.append(WEEKDAYS[i])
            if i == j:
                break
            i = (i + 1) % 7
    return days


def _weekday_ranges(days: list[int]) -> str:
    """[0, 1, 2, 3, 4, 6] -> `mon-fri,sun`."""
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(WEEKDAYS[run[0]] if len(run) == 1 else f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}" for run in runs)


class CalendarStore(Protocol):
    """Where the tenant's calendar is kept (pbxbridge.storage.calendar's store is one)."""

    def working_calendar(self) -> WorkingCalendar | None: ...
    def save_working_calendar(self, calendar: WorkingCalendar) -> None: ...
    def delete_working_calendar(self) -> None: ...


def tenant_calendar(stored: WorkingCalendar | None, default: WorkingCalendar | None, zone: str) -> WorkingCalendar:
    """The calendar in force: the one `setWorkingHours` stored, else the template's, else wall time in `zone`."""
    return stored or default or WorkingCalendar.wall_time(zone)


__all__ = [
    "WEEKDAYS",
    "CalendarStore",
    "TimeZoneDataMissingError",
    "WorkingCalendar",
    "WorkingTimeError",
    "format_interval",
    "parse_interval",
    "tenant_calendar",
    "zone_of",
]
