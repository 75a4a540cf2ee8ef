"""Working time: the tenant calendar's rules and arithmetic (units and properties), and the
`setWorkingHours` / `getWorkingHours` commands through the commands function's handler."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.lambdas import LocalFunction
from local.template import Template
from pbxbridge.domain.working_time import WEEKDAYS, WorkingCalendar, WorkingTimeError, tenant_calendar

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = WorkingCalendar.parse(
    "Europe/Moscow;mon-fri 09:00-13:00,14:00-18:00;sat 10:00-15:00;holidays 2027-01-01,2027-01-07;"
    "workdays 2027-01-10 10:00-12:00"
)


def msk(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=MOSCOW)


class TestTheCalendar:
    def test_the_compact_form_and_the_fields_are_one_calendar(self) -> None:
        assert OFFICE.model_dump(mode="json") == {
            "zone": "Europe/Moscow",
            "week": {
                **{day: ["09:00-13:00", "14:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
                "sat": ["10:00-15:00"],
            },
            "holidays": ["2027-01-01", "2027-01-07"],
            "workdays": {"2027-01-10": ["10:00-12:00"]},
        }
        OFFICE.is_open(msk(2027, 1, 11, 10))  # a calendar in use is still equal to a fresh one
        assert WorkingCalendar.parse(OFFICE.compact()) == OFFICE
        assert WorkingCalendar.wall_time("Europe/Moscow") != OFFICE
        assert WorkingCalendar.read(OFFICE.model_dump(mode="json")) == OFFICE
        # Written loosely, read into one form: ranges that wrap, single digits, days in any order.
        loose = WorkingCalendar.parse(" Europe/Moscow ; sat-mon 9:00-12:00 ; wed,tue 10:00-11:00 ;")
        assert loose.compact() == "Europe/Moscow;mon,sat-sun 09:00-12:00;tue-wed 10:00-11:00"

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("Mars/Olympus;mon 09:00-18:00", "not an IANA time zone"),
            ("Europe/Moscow", "never open"),
            ("Europe/Moscow;holidays 2027-01-01", "never open"),
            ("Europe/Moscow;mon 22:00-02:00", "crosses midnight"),
            ("Europe/Moscow;mon 09:00-09:00", "empty interval"),
            ("Europe/Moscow;mon 24:00-24:00", "not a time of day"),
            ("Europe/Moscow;mon 09:60-10:00", "not a time of day"),
            ("Europe/Moscow;mon 09:00-13:00,12:00-18:00", "overlap"),
            ("Europe/Moscow;mon 9-18", "HH:MM-HH:MM"),
            ("Europe/Moscow;mon-fri 09:00-18:00;fri 10:00-11:00", "fri is given twice"),
            ("Europe/Moscow;monday 09:00-18:00", "not a rule"),
            ("Europe/Moscow;mon 09:00-18:00;holidays 2027-13-01", "YYYY-MM-DD"),
            ("Europe/Moscow;mon 09:00-18:00;holidays 2027-01-09;workdays 2027-01-09 10:00-11:00", "both"),
            ("Europe/Moscow;mon 09:00-18:00;workdays 2027-01-09", "no hours"),
            (";mon 09:00-18:00", "starts with the time zone"),
        ],
    )
    def test_a_calendar_that_cannot_be_right_is_refused_with_the_reason(self, text: str, fragment: str) -> None:
        with pytest.raises(WorkingTimeError, match=fragment):
            WorkingCalendar.read(text)

    def test_a_missing_time_zone_database_is_not_blamed_on_the_zone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import zoneinfo

        from pbxbridge.domain import working_time

        def no_data(key: str) -> zoneinfo.ZoneInfo:
            raise zoneinfo.ZoneInfoNotFoundError(key)

        monkeypatch.setattr(working_time, "ZoneInfo", no_data)
        with pytest.raises(working_time.TimeZoneDataMissingError, match="tzdata"):
            working_time.zone_of("Europe/Moscow")

    def test_an_interval_may_end_at_midnight(self) -> None:
        night = WorkingCalendar.parse("Europe/Moscow;fri 22:00-24:00;sat 00:00-02:00")
        assert night.business_seconds_between(msk(2027, 1, 15, 21), msk(2027, 1, 16, 3)) == 4 * 3600
        # Friday's end and Saturday's start are one period.
        assert list(night.open_periods(msk(2027, 1, 15), msk(2027, 1, 17))) == [
            (msk(2027, 1, 15, 22), msk(2027, 1, 16, 2))
        ]

    def test_naive_moments_are_refused(self) -> None:
        with pytest.raises(WorkingTimeError, match="no time zone"):
            OFFICE.is_open(datetime(2027, 1, 11, 10))

    def test_without_a_calendar_the_tenant_works_wall_time(self) -> None:
        assert tenant_calendar(None, None, "Europe/Moscow") == WorkingCalendar.wall_time("Europe/Moscow")
        assert tenant_calendar(None, OFFICE, "UTC") is OFFICE
        always = WorkingCalendar.wall_time("Europe/Berlin")
        start = datetime(2027, 3, 27, 12, tzinfo=BERLIN)  # across the spring-forward night
        assert always.business_time_between(start, start + timedelta(days=3)) == timedelta(days=3)
        assert always.next_opening(start) == start


class TestBusinessTime:
    def test_a_working_day(self) -> None:
        monday = msk(2027, 1, 11)
        assert OFFICE.business_seconds_between(monday, monday + timedelta(days=1)) == 8 * 3600
        # Missed at 12:50, called back at 14:10: ten minutes before lunch, ten after.
        assert OFFICE.business_seconds_between(msk(2027, 1, 11, 12, 50), msk(2027, 1, 11, 14, 10)) == 20 * 60
        assert OFFICE.business_seconds_between(msk(2027, 1, 11, 14, 10), msk(2027, 1, 11, 12, 50)) == 0

    def test_a_call_missed_at_night_is_judged_from_the_next_opening(self) -> None:
        friday_night = msk(2027, 1, 15, 23, 30)
        assert OFFICE.next_opening(friday_night) == msk(2027, 1, 16, 10)  # Saturday's hours
        # Called back at 10:05 on Saturday: five business minutes, not ten and a half hours.
        assert OFFICE.business_seconds_between(friday_night, msk(2027, 1, 16, 10, 5)) == 5 * 60
        # At lunch, the afternoon; open, the moment itself.
        assert OFFICE.next_opening(msk(2027, 1, 11, 13, 30)) == msk(2027, 1, 11, 14)
        assert OFFICE.next_opening(msk(2027, 1, 11, 9, 0)) == msk(2027, 1, 11, 9, 0)

    def test_holidays_close_and_working_dates_open(self) -> None:
        # 2026-12-31 is a Thursday; the 1st (Friday) a holiday; Saturday the 2nd works its usual hours.
        assert OFFICE.next_opening(msk(2026, 12, 31, 19)) == msk(2027, 1, 2, 10)
        assert not OFFICE.is_open(msk(2027, 1, 7, 10))  # a Thursday, but a holiday
        # Sunday the 10th is a working date with its own hours.
        assert OFFICE.is_open(msk(2027, 1, 10, 11))
        assert not OFFICE.is_open(msk(2027, 1, 10, 13))
        assert OFFICE.business_seconds_between(msk(2027, 1, 10), msk(2027, 1, 11)) == 2 * 3600
        assert OFFICE.next_opening(msk(2027, 1, 9, 16)) == msk(2027, 1, 10, 10)

    def test_is_open_at_the_edges(self) -> None:
        assert OFFICE.is_open(msk(2027, 1, 11, 9, 0))
        assert not OFFICE.is_open(msk(2027, 1, 11, 13, 0))  # an interval ends before its end
        assert OFFICE.is_open(msk(2027, 1, 11, 12, 59, 59))
        assert not OFFICE.is_open(msk(2027, 1, 17, 12))  # Sunday

    def test_daylight_saving_changes_count_real_time(self) -> None:
        berlin = WorkingCalendar.parse("Europe/Berlin;mon-sun 00:00-24:00")
        spring = WorkingCalendar.parse("Europe/Berlin;sun 01:00-04:00")
        autumn = WorkingCalendar.parse("Europe/Berlin;sun 01:00-04:00")
        # 2027-03-28: 02:00 becomes 03:00; 2027-10-31: 03:00 becomes 02:00 again.
        assert spring.business_time_between(*_day(2027, 3, 28)) == timedelta(hours=2)
        assert autumn.business_time_between(*_day(2027, 10, 31)) == timedelta(hours=4)
        assert berlin.business_time_between(*_day(2027, 3, 28)) == timedelta(hours=23)
        assert berlin.business_time_between(*_day(2027, 10, 31)) == timedelta(hours=25)
        # A time the clocks skip is the moment they jump: hours wholly inside the skipped hour open
        # nothing, and 01:00-02:30 ends at 03:00 local (one real hour).
        skipped = WorkingCalendar.parse("Europe/Berlin;sun 02:15-02:45,05:00-06:00")
        assert skipped.business_time_between(*_day(2027, 3, 28)) == timedelta(hours=1)
        into_the_gap = WorkingCalendar.parse("Europe/Berlin;sun 01:00-02:30")
        assert into_the_gap.business_time_between(*_day(2027, 3, 28)) == timedelta(hours=1)
        assert next(iter(into_the_gap.open_periods(*_day(2027, 3, 28))))[1] == datetime(2027, 3, 28, 1, tzinfo=UTC)
        assert into_the_gap.next_opening(datetime(2027, 3, 28, 1, 30, tzinfo=UTC)) == datetime(
            2027, 4, 4, 1, tzinfo=BERLIN
        )

    def test_years_of_dates_add_up(self) -> None:
        # More dates than the calendar keeps worked out at once: the answer does not depend on it.
        years = [msk(2020 + n, 1, 1) for n in range(14)]
        pieces = sum((OFFICE.business_time_between(a, b) for a, b in itertools.pairwise(years)), timedelta())
        assert OFFICE.business_time_between(years[0], years[-1]) == pieces
        assert timedelta(days=13 * 52 * 44 / 24) < pieces < timedelta(days=13 * 53 * 50 / 24)

    def test_next_opening_after_a_long_run_of_holidays(self) -> None:
        days = ",".join((date(2027, 5, 1) + timedelta(days=n)).isoformat() for n in range(40))
        closed = WorkingCalendar.parse(f"Europe/Moscow;mon 09:00-10:00;holidays {days}")
        # 2027-06-10 is a Thursday, the first day after the holidays; the Monday after is the 14th.
        assert closed.next_opening(msk(2027, 4, 30, 12)) == msk(2027, 6, 14, 9)


def _day(year: int, month: int, day: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, day, tzinfo=BERLIN)
    return start, datetime.combine(start.date() + timedelta(days=1), start.timetz())


# Properties, on calendars drawn at random (a weekday's hours, holidays, zones with DST changes).

ZONES = ["Europe/Moscow", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@st.composite
def calendars(draw: st.DrawFn) -> WorkingCalendar:
    week: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        marks = sorted(draw(st.sets(st.integers(0, 96), max_size=4)))
        pairs = [(a, b) for a, b in zip(marks[::2], marks[1::2], strict=False) if a < b]
        if pairs:
            week[day] = [f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}" for a, b in pairs]
    if not week:
        week["mon"] = ["09:00-18:00"]
    holidays = draw(st.sets(st.dates(date(2026, 12, 1), date(2027, 12, 31)), max_size=5))
    return WorkingCalendar.model_validate(
        {"zone": draw(st.sampled_from(ZONES)), "week": week, "holidays": sorted(holidays)}
    )


moments = st.datetimes(
    min_value=datetime(2027, 1, 1),
    max_value=datetime(2027, 12, 31),
    timezones=st.just(UTC),
)


@settings(max_examples=60, deadline=None)
@given(
    calendars(),
    moments,
    st.timedeltas(timedelta(0), timedelta(days=12)),
    st.timedeltas(timedelta(0), timedelta(days=12)),
)
def test_business_time_adds_up_and_never_exceeds_wall_time(
    calendar: WorkingCalendar, a: datetime, ab: timedelta, bc: timedelta
) -> None:
    b, c = a + ab, a + ab + bc
    whole = calendar.business_time_between(a, c)
    assert whole == calendar.business_time_between(a, b) + calendar.business_time_between(b, c)
    assert timedelta(0) <= whole <= c - a
    assert calendar.business_time_between(a, b) <= whole  # monotone in the end
    assert calendar.business_time_between(b, c) <= whole  # and in the start


@settings(max_examples=60, deadline=None)
@given(calendars(), moments, st.timedeltas(timedelta(0), timedelta(days=4)))
def test_closed_time_counts_nothing_and_the_next_opening_is_open(
    calendar: WorkingCalendar, a: datetime, span: timedelta
) -> None:
    periods = list(calendar.open_periods(a, a + span))
    assert all(opens < closes for opens, closes in periods)
    assert all(p[1] < q[0] for p, q in itertools.pairwise(periods))  # merged: gaps between
    for (_, closed_at), (reopens, _) in itertools.pairwise(periods):
        assert calendar.business_time_between(closed_at, reopens) == timedelta(0)
        assert not calendar.is_open(closed_at)
    opening = calendar.next_opening(a)
    assert opening >= a
    assert calendar.is_open(opening)
    assert calendar.business_time_between(a, opening) == timedelta(0)
    assert calendar.is_open(a) == (opening == a)


@settings(max_examples=60, deadline=None)
@given(calendars())
def test_the_compact_form_reads_back_as_the_same_calendar(calendar: WorkingCalendar) -> None:
    assert WorkingCalendar.parse(calendar.compact()) == calendar


# Through the commands function's handler.


@pytest.fixture
def commands(aws: dict[str, str], template: Template, monkeypatch: pytest.MonkeyPatch) -> LocalFunction:
    from tests.conftest import drop_process_caches

    monkeypatch.setenv("WORKING_HOURS", "")  # put back whatever a test sets
    drop_process_caches(keep_clients=True)
    return LocalFunction(template.functions()["CommandsFunction"])


def invoke(function: LocalFunction, payload: dict[str, Any]) -> Any:
    return function.invoke(payload)


def test_set_and_get_working_hours(commands: LocalFunction) -> None:
    assert invoke(commands, {"cmd": "getWorkingHours"}) == {
        "ok": True,
        "result": {"calendar": None, "compact": None, "source": "none"},
    }
    compact = "Europe/Moscow;mon-fri 09:00-18:00;holidays 2027-01-01"
    saved = invoke(commands, {"cmd": "setWorkingHours", "calendar": compact})
    assert saved["ok"] is True
    assert saved["result"]["compact"] == compact
    assert saved["result"]["source"] == "command"
    got = invoke(commands, {"cmd": "getWorkingHours"})["result"]
    assert got == saved["result"]
    assert got["calendar"]["week"]["mon"] == ["09:00-18:00"]
    # The fields work as well as the compact form, and replace the calendar.
    fields = {"zone": "Asia/Almaty", "week": {"sat": ["10:00-14:00"]}, "workdays": {"2027-02-01": ["9:00-12:00"]}}
    replaced = invoke(commands, {"cmd": "setWorkingHours", "calendar": fields})["result"]
    assert replaced["compact"] == "Asia/Almaty;sat 10:00-14:00;workdays 2027-02-01 09:00-12:00"
    assert invoke(commands, {"cmd": "getWorkingHours"})["result"]["compact"] == replaced["compact"]
    # The directory's users are not disturbed by the calendar's item beside them.
    assert invoke(commands, {"cmd": "listUsers"})["result"] == {"users": [], "departments": []}
    removed = invoke(commands, {"cmd": "setWorkingHours", "calendar": None})
    assert removed == {"ok": True, "result": {"calendar": None, "compact": None, "source": "none"}}


@pytest.mark.parametrize(
    ("calendar", "fragment"),
    [
        ("Europe/Moscow;mon 22:00-02:00", "crosses midnight"),
        ("Europe/Moscow", "never open"),
        ({"zone": "Nowhere/Land", "week": {"mon": ["09:00-18:00"]}}, "IANA"),
        ({"zone": "UTC", "week": {"mon": ["09:00-18:00"]}, "surprise": 1}, "surprise"),
        ({"zone": "UTC", "week": {"funday": ["09:00-18:00"]}}, "funday"),
    ],
)
def test_a_wrong_calendar_is_an_invalid_request_and_nothing_is_stored(
    commands: LocalFunction, calendar: Any, fragment: str
) -> None:
    answer = invoke(commands, {"cmd": "setWorkingHours", "calendar": calendar})
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_request"
    assert fragment in answer["error"]["message"]
    assert invoke(commands, {"cmd": "getWorkingHours"})["result"]["source"] == "none"


def test_the_template_parameter_is_the_first_calendar(
    aws: dict[str, str], template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import drop_process_caches

    first = "Europe/Moscow;mon-fri 09:00-18:00;holidays 2027-01-01,2027-01-07"
    function = LocalFunction(
        Template(parameters={**template.parameters, "WorkingHours": first}).functions()["CommandsFunction"]
    )
    monkeypatch.setenv("WORKING_HOURS", first)  # as the template set it; put back after the test
    drop_process_caches(keep_clients=True)
    assert invoke(function, {"cmd": "getWorkingHours"})["result"] == {
        "calendar": WorkingCalendar.parse(first).model_dump(mode="json"),
        "compact": first,
        "source": "parameter",
    }
    invoke(function, {"cmd": "setWorkingHours", "calendar": "UTC;sun 10:00-11:00"})
    assert invoke(function, {"cmd": "getWorkingHours"})["result"]["source"] == "command"
    # Removed by the command, the parameter's calendar is back in force.
    assert invoke(function, {"cmd": "setWorkingHours", "calendar": None})["result"]["source"] == "parameter"
    # A mistyped parameter stops only the command that reads it, and says why.
    monkeypatch.setenv("WORKING_HOURS", "Europe/Moscow;mon 18:00-09:00")
    drop_process_caches(keep_clients=True)
    broken = invoke(function, {"cmd": "getWorkingHours"})
    assert broken["error"]["code"] == "not_configured"
    assert "WorkingHours" in broken["error"]["message"]
    assert "crosses midnight" in broken["error"]["message"]
    assert invoke(function, {"cmd": "listUsers"})["ok"] is True


def test_the_template_default_is_no_calendar(template: Template) -> None:
    environment = template.functions()["CommandsFunction"].environment
    assert environment["WORKING_HOURS"] == ""


def test_the_calendar_is_built_only_where_a_calendar_command_needs_it() -> None:
    """Every import of a handler is paid on every cold start: the commands function's other commands,
    and the webhook, never build the calendar's models."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    for function in ("commands", "webhook"):
        probe = (
            f"import sys; sys.path[:0] = ['functions/{function}']; import app; "
            "print('pbxbridge.domain.working_time' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=Path(__file__).resolve().parent.parent,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == "False", function
