"""Cron expressions: parsing with the field named on error, cron's day rule, time zones and the
daylight-saving changes of Europe/Berlin and America/New_York in both directions."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudsnap.controllers.schedule.plan.cron import Cron, CronError, shortest_interval

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def following(cron: str, start: datetime, count: int, zone: ZoneInfo = BERLIN) -> list[datetime]:
    """The next ``count`` slots after ``start``, as local times."""
    parsed, moment, found = Cron.parse(cron), start, []
    for _ in range(count):
        moment = parsed.next_after(moment, zone)
        found.append(moment.astimezone(zone))
    return found


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24"),
        ("* * 0 * *", "day of month: 0"),
        ("* * * 13 *", "month: 13"),
        ("* * * * 8", "day of week: 8"),
        ("* * * FOO *", "month: 'FOO' is not a number or a name"),
        ("*/0 * * * *", "minute: step '0'"),
        ("5-1 * * * *", "minute: range '5-1' runs backwards"),
        ("1,,2 * * * *", "minute: empty list item"),
        ("* * * *", "expected five fields"),
        ("@every", "expected five fields"),
    ],
)
def test_bad_expressions_name_the_field(text: str, field: str) -> None:
    with pytest.raises(CronError, match=field.replace("(", r"\(")):
        Cron.parse(text)


def test_ranges_steps_lists_and_names() -> None:
    cron = Cron.parse("5,35 9-17/4 * jan-MAR,Dec Mon-fri")
    assert cron.minutes == (5, 35)
    assert cron.hours == (9, 13, 17)
    assert cron.months == frozenset({1, 2, 3, 12})
    assert cron.weekdays == frozenset({1, 2, 3, 4, 5})
    assert Cron.parse("0 0 * * 7").weekdays == frozenset({0})  # 7 is Sunday too
    assert Cron.parse("10/20 * * * *").minutes == (10, 30, 50)


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
    ],
)
def test_macros(macro: str, same_as: str) -> None:
    assert Cron.parse(macro) == Cron.parse(same_as)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # The 13th, and every Friday, as cron reads it (not "Friday the 13th").
    slots = following("0 0 13 * 5", utc(2026, 2, 1), 4, ZoneInfo("UTC"))
    assert [s.date() for s in slots] == [
        date(2026, 2, 6),
        date(2026, 2, 13),  # a Friday and the 13th: once
        date(2026, 2, 20),
        date(2026, 2, 27),
    ]
    # A '*'-led day of week leaves the day of month alone in charge.
    assert [s.day for s in following("0 0 13 * */1", utc(2026, 2, 1), 2, ZoneInfo("UTC"))] == [
        13,
        13,
    ]


def test_29_february_comes_only_in_leap_years() -> None:
    slots = following("0 12 29 2 *", utc(2026, 1, 1), 3)
    assert [s.date() for s in slots] == [date(2028, 2, 29), date(2032, 2, 29), date(2036, 2, 29)]
    assert following("0 0 * * *", utc(2028, 2, 28, 12), 2, ZoneInfo("UTC"))[1].date() == date(
        2028, 3, 1
    )


def test_a_date_that_never_comes_is_an_error() -> None:
    with pytest.raises(CronError, match="no slot"):
        Cron.parse("0 0 30 2 *").next_after(utc(2026, 1, 1), BERLIN)
    assert Cron.parse("0 0 31 2 *").latest_at_or_before(utc(2026, 1, 1), BERLIN) is None


def test_the_zone_moves_the_instant() -> None:
    [slot] = following("0 6 * * *", utc(2026, 1, 10), 1)
    assert slot.astimezone(UTC) == utc(2026, 1, 10, 5)  # 06:00 CET
    [summer] = following("0 6 * * *", utc(2026, 7, 10), 1)
    assert summer.astimezone(UTC) == utc(2026, 7, 10, 4)  # 06:00 CEST


@pytest.mark.parametrize(
    ("zone", "night", "gap_end_utc"),
    [
        (BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),  # 02:00 CET -> 03:00 CEST
        (NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),  # 02:00 EST -> 03:00 EDT
    ],
)
def test_spring_forward_runs_a_skipped_time_once_at_the_end_of_the_gap(
    zone: ZoneInfo, night: datetime, gap_end_utc: datetime
) -> None:
    daily = following("30 2 * * *", night, 2, zone)
    assert daily[0].astimezone(UTC) == gap_end_utc
    assert daily[0].hour == 3
    assert daily[0].minute == 0
    assert (daily[1].hour, daily[1].minute) == (2, 30)  # the next night is normal again
    # Every 15 minutes: the four slots of the missing hour become the run at its end, which is
    # the 03:00 slot itself, so a 23-hour day has 92 runs, 15 minutes apart.
    quarter = Cron.parse("*/15 * * * *")
    day_slots = quarter.slots_on(gap_end_utc.astimezone(zone).date(), zone)
    assert len(day_slots) == 23 * 4
    assert gap_end_utc in day_slots
    gaps = {b - a for a, b in itertools.pairwise(day_slots)}
    assert gaps == {timedelta(minutes=15)}


@pytest.mark.parametrize(
    ("zone", "night", "first_pass_utc"),
    [
        (BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),  # 02:30 CEST, not CET
        (NEW_YORK, utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT, not EST
    ],
)
def test_fall_back_runs_a_repeated_time_once(
    zone: ZoneInfo, night: datetime, first_pass_utc: datetime
) -> None:
    local = first_pass_utc.astimezone(zone)
    daily = following(f"{local.minute} {local.hour} * * *", night, 2, zone)
    assert daily[0].astimezone(UTC) == first_pass_utc
    assert daily[1].astimezone(UTC) - daily[0].astimezone(UTC) == timedelta(hours=25)
    hourly = Cron.parse("0 * * * *").slots_on(local.date(), zone)
    assert len(hourly) == 24  # a 25-hour day: the repeated hour runs once


@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from([BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]),
)
def test_next_and_latest_agree(minute: int, hour: int, start: datetime, zone: ZoneInfo) -> None:
    """next_after is strictly later and nothing matches in between; latest_at_or_before of it
    finds it again; slots land on the expression's local time or at the end of a gap."""
    cron = Cron.parse(f"{minute} {hour} * * *")
    slot = cron.next_after(start, zone)
    assert slot > start
    assert cron.latest_at_or_before(slot, zone) == slot
    before = cron.latest_at_or_before(slot - timedelta(microseconds=1), zone)
    assert before is None or before <= start
    local = slot.astimezone(zone)
    if (local.hour, local.minute) != (hour, minute):
        wall = datetime.combine(local.date(), time(hour, minute))
        assert (
            wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall
        ), "moved although the local time exists"


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("*/5 * * * *", timedelta(minutes=5)),
        ("0,30 9-17 * * *", timedelta(minutes=30)),
        ("0,59 0,23 * * *", timedelta(minutes=1)),  # 23:59, then 00:00 the next day
        ("30 23 * * 1-5", timedelta(days=1)),
        ("0 0 13 * 5", timedelta(days=1)),  # Thursday the 13th, then Friday
        ("0 0 1 * *", timedelta(days=28)),  # 1 February to 1 March
        ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),
    ],
)
def test_shortest_interval_between_neighbouring_slots(expression: str, interval: timedelta) -> None:
    assert shortest_interval(Cron.parse(expression)) == interval
