"""Five-field cron expressions, read in an IANA time zone.

The syntax is Vixie cron's: minute, hour, day of month, month, day of week; each a list of `*`,
values, ranges `a-b` and steps (`*/n`, `a-b/n`, `a/n` meaning `a-max/n`); month and weekday
names (JAN, mon); 0 or 7 for Sunday; and the macros @hourly, @daily (@midnight), @weekly,
@monthly, @yearly (@annually). As in cron, when both day of month and day of week are restricted
(neither starts with `*`), a day matching either one matches.

Times are matched on the zone's wall clock, then turned into instants:

- a wall time a daylight-saving change skips (02:30 on the spring-forward night in
  Europe/Berlin) runs at the first instant after the gap (03:00 CEST), once however many slots
  fell in the gap;
- a wall time that happens twice (02:30 on the fall-back night) runs once, at its first pass.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# A search for the next or previous slot gives up after this many days: "0 0 31 2 *" never
# matches, and 29 February is at most eight years away (2096 to 2104).
SEARCH_DAYS = 8 * 366 + 1
# Dates repeat their weekdays and leap days every 28 years from 1901 to 2099: one such cycle holds
# every pair of neighbouring matching days a schedule will have this century.
_CYCLE_START = date(2001, 1, 1)
_CYCLE_DAYS = (date(2029, 1, 1) - _CYCLE_START).days


class CronError(ValueError):
    """A cron expression that cron would refuse; the message names the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_from: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
)


def _value(text: str, field: _Field) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.names_from
    if not text.isdigit():
        raise CronError(f"{field.name}: {text!r} is not a number or a name")
    number = int(text)
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name}: {number} is outside {field.low}-{field.high}")
    return number


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field.name}: empty list item in {text!r}")
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field.name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if span == "*":
            low, high = field.low, field.high
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise CronError(f"{field.name}: range {span!r} runs backwards")
        else:
            low = _value(span, field)
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the matching values of each field."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse five fields or a macro; CronError names the field that is wrong."""
        expanded = MACROS.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise CronError(
                f"expected five fields (minute hour day-of-month month day-of-week) or one of"
                f" {', '.join(MACROS)}, got {len(parts)} field(s)"
            )
        minute, hour, day, month, weekday = (
            _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
        )
        return cls(
            minutes=tuple(sorted(minute)),
            hours=tuple(sorted(hour)),
            days=day,
            months=month,
            weekdays=frozenset(d % 7 for d in weekday),
            days_restricted=not parts[2].startswith("*"),
            weekdays_restricted=not parts[4].startswith("*"),
        )

    def matches_day(self, day: date) -> bool:
        """Whether any slot falls on this local date (cron's day-of-month OR day-of-week)."""
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def slots_on(self, day: date, zone: tzinfo) -> list[datetime]:
        """The instants (UTC) of the slots on one local date, in order, each once."""
        if not self.matches_day(day):
            return []
        instants: list[datetime] = []
        for hour in self.hours:
            for minute in self.minutes:
                instant = wall_to_instant(datetime.combine(day, time(hour, minute)), zone)
                if not instants or instant > instants[-1]:
                    instants.append(instant)
        return instants

    def next_after(self, moment: datetime, zone: tzinfo) -> datetime:
        """The first slot strictly after ``moment``; CronError if there is none within years."""
        for day in _days(moment, zone, forward=True):
            slots = self.slots_on(day, zone)
            index = bisect.bisect_right(slots, moment)
            if index < len(slots):
                return slots[index]
        raise CronError(f"the schedule has no slot within {SEARCH_DAYS // 366} years")

    def latest_at_or_before(self, moment: datetime, zone: tzinfo) -> datetime | None:
        """The last slot at or before ``moment``, or None if there is none within years."""
        for day in _days(moment, zone, forward=False):
            slots = self.slots_on(day, zone)
            index = bisect.bisect_right(slots, moment)
            if index:
                return slots[index - 1]
        return None

    def count_between(self, after: datetime, until: datetime, zone: tzinfo, *, limit: int) -> int:
        """How many slots lie in (``after``, ``until``], counting no further than ``limit``."""
        count = 0
        last_day = until.astimezone(zone).date() + timedelta(days=1)
        for day in _days(after, zone, forward=True):
            slots = self.slots_on(day, zone)
            count += bisect.bisect_right(slots, until) - bisect.bisect_right(slots, after)
            if count >= limit or day >= last_day:
                return min(count, limit)
        return min(count, limit)


@functools.lru_cache(maxsize=256)
def shortest_interval(cron: Cron) -> timedelta:
    """The shortest time between two neighbouring slots on a wall clock (daylight-saving changes
    aside): a run's jittered creates must all fall within it, before the next slot's run.

    Within a day, the closest two times of day; across midnight, the last time of a matching day
    to the first of the next matching one.
    """
    times = [hour * 60 + minute for hour in cron.hours for minute in cron.minutes]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    days = [
        day
        for day in (_CYCLE_START + timedelta(days=n) for n in range(_CYCLE_DAYS))
        if cron.matches_day(day)
    ]
    day_gaps = [(later - earlier).days for earlier, later in pairwise(days)]
    if day_gaps:
        gaps.append(min(day_gaps) * 24 * 60 - times[-1] + times[0])
    return timedelta(minutes=min(gaps)) if gaps else timedelta(days=_CYCLE_DAYS)


def _days(moment: datetime, zone: tzinfo, *, forward: bool) -> Iterator[date]:
    """Local dates to search from ``moment``'s, starting a day early (or late): a slot moved
    out of a daylight-saving gap can land on the next date."""
    local = moment.astimezone(zone).date()
    step = timedelta(days=1 if forward else -1)
    day = local - step
    for _ in range(SEARCH_DAYS):
        yield day
        day += step


def wall_to_instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of a naive local time: its first pass if it happens twice, the end of
    the gap if a daylight-saving change skips it."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Skipped: fold=0 reads it with the offset before the change, fold=1 with the one after.
    # The change itself lies between the two readings; find it to the second.
    early = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    late = instant
    if early > late:
        early, late = late, early
    after_offset = late.astimezone(zone).utcoffset()
    while (late - early) > timedelta(seconds=1):
        middle = early + (late - early) / 2
        if middle.astimezone(zone).utcoffset() == after_offset:
            late = middle
        else:
            early = middle
    return late.replace(microsecond=0)
