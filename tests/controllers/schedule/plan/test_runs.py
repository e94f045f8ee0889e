"""Which run is due on a fake clock: catch-up after downtime (one run, never a burst), the
starting deadline, suspend and resume, jitter bounds, child names and durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudsnap.controllers.schedule.plan.cron import Cron
from cloudsnap.controllers.schedule.plan.runs import (
    MISSED_COUNT_LIMIT,
    RunPlan,
    child_name,
    jitter_delay,
    label_value,
    parse_duration,
    plan_run,
)

HOURLY = Cron.parse("0 * * * *")
BERLIN = ZoneInfo("Europe/Berlin")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 6, day, hour, minute, second, tzinfo=UTC)


class FakeClock:
    """A schedule's life on a fake clock: looks at the clock, records what a run would record."""

    def __init__(self, cron: Cron, created: datetime, deadline: timedelta | None = None) -> None:
        self.cron, self.deadline = cron, deadline
        self.now = created
        self.handled_until = created
        self.suspended = False
        self.runs: list[datetime] = []
        self.missed = 0

    def look(self) -> RunPlan:
        plan = plan_run(
            self.cron,
            UTC,
            now=self.now,
            handled_until=self.handled_until,
            suspended=self.suspended,
            starting_deadline=self.deadline,
        )
        if plan.slot is not None:
            self.runs.append(plan.slot)
            self.handled_until = plan.slot
        elif plan.latest_missed is not None:
            self.handled_until = plan.latest_missed
        self.missed += plan.missed
        return plan

    def advance(self, by: timedelta) -> RunPlan:
        self.now += by
        return self.look()


def test_each_slot_runs_once_and_not_before_it_comes() -> None:
    clock = FakeClock(HOURLY, at(9, 10))
    assert clock.look().slot is None
    assert clock.look().next_slot == at(10)
    assert clock.advance(timedelta(minutes=49, seconds=59)).slot is None
    assert clock.advance(timedelta(seconds=1)).slot == at(10)
    assert clock.advance(timedelta(seconds=5)).slot is None  # looked at again: no second run
    assert clock.runs == [at(10)]


def test_downtime_makes_one_catch_up_run_never_a_burst() -> None:
    clock = FakeClock(HOURLY, at(9, 10))
    plan = clock.advance(timedelta(hours=5, minutes=20))  # down over 10:00 .. 14:00
    assert plan.slot == at(14)
    assert plan.missed == 4
    assert plan.latest_missed == at(13)
    assert clock.advance(timedelta(minutes=1)).slot is None
    assert clock.runs == [at(14)]
    assert clock.missed == 4


def test_a_run_older_than_the_starting_deadline_is_skipped() -> None:
    clock = FakeClock(HOURLY, at(9, 10), deadline=timedelta(minutes=10))
    plan = clock.advance(timedelta(minutes=50, seconds=600))  # 10:10:00, exactly the deadline
    assert plan.slot == at(10)
    plan = clock.advance(timedelta(hours=1, seconds=1))  # 11:10:01: a second too late
    assert plan.slot is None
    assert (plan.missed, plan.latest_missed) == (1, at(11))
    assert clock.advance(timedelta(minutes=5)).missed == 0  # counted once, never run
    assert clock.advance(timedelta(minutes=50)).slot == at(12)
    assert clock.runs == [at(10), at(12)]


def test_after_downtime_beyond_the_deadline_nothing_runs_until_the_next_slot() -> None:
    clock = FakeClock(HOURLY, at(9, 10), deadline=timedelta(minutes=5))
    plan = clock.advance(timedelta(hours=3))  # 12:10: 10:00, 11:00, 12:00 all missed
    assert plan.slot is None
    assert plan.missed == 3
    assert plan.latest_missed == at(12)
    assert clock.advance(timedelta(minutes=50)).slot == at(13)


def test_suspend_and_resume() -> None:
    clock = FakeClock(HOURLY, at(9, 10), deadline=timedelta(minutes=30))
    clock.suspended = True
    plan = clock.advance(timedelta(hours=3))  # 12:10, suspended since 9:10
    assert plan == RunPlan(None, 0, None, None)
    clock.suspended = False
    plan = clock.look()  # resumed at 12:10: the latest slot is within the deadline
    assert plan.slot == at(12)
    assert plan.missed == 2
    clock.suspended = True
    clock.advance(timedelta(hours=2))  # 14:10
    clock.suspended = False
    clock.advance(timedelta(minutes=40))  # resumed at 14:50: 14:00 is too late now
    assert clock.runs == [at(12)]
    assert clock.advance(timedelta(minutes=10)).slot == at(15)


def test_downtime_of_a_year_on_a_minute_schedule_is_counted_with_a_bound() -> None:
    cron = Cron.parse("* * * * *")
    plan = plan_run(
        cron,
        UTC,
        now=at(0) + timedelta(days=365),
        handled_until=at(0),
        suspended=False,
        starting_deadline=None,
    )
    assert plan.slot == at(0) + timedelta(days=365)
    assert plan.missed == MISSED_COUNT_LIMIT


def test_runs_across_the_spring_forward_night_in_berlin() -> None:
    cron = Cron.parse("30 2 * * *")
    night = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
    plan = plan_run(
        cron,
        BERLIN,
        now=night + timedelta(hours=1, seconds=30),  # 03:00:30 CEST
        handled_until=night,
        suspended=False,
        starting_deadline=timedelta(minutes=5),
    )
    assert plan.slot == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert plan.missed == 0


@given(
    jitter=st.integers(0, 3600),
    source=st.text(min_size=1, max_size=40),
    minutes=st.integers(0, 10**6),
)
def test_jitter_is_within_bounds_and_fixed_by_schedule_source_and_slot(
    jitter: int, source: str, minutes: int
) -> None:
    slot = at(0) + timedelta(minutes=minutes)
    delay = jitter_delay("prod/db", source, slot, jitter)
    assert 0 <= delay <= jitter
    assert jitter_delay("prod/db", source, slot.astimezone(BERLIN), jitter) == delay


def test_jitter_spreads_sources() -> None:
    delays = {jitter_delay("prod/db", f"volume/{i}", at(6), 120) for i in range(200)}
    assert len(delays) > 60
    assert min(delays) < 20
    assert max(delays) > 100
    assert jitter_delay("prod/db", "volume/1", at(6), 0) == 0


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@given(
    schedule=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,200}[a-z0-9])?", fullmatch=True),
    source=st.from_regex(r"[a-zA-Z0-9]([-a-zA-Z0-9.]{0,200}[a-zA-Z0-9])?", fullmatch=True),
    minutes=st.integers(0, 10**7),
)
def test_child_names_are_dns_labels_fixed_by_their_inputs(
    schedule: str, source: str, minutes: int
) -> None:
    slot = at(0) + timedelta(minutes=minutes)
    name = child_name(schedule, source, slot)
    assert len(name) <= 63, name
    assert DNS_LABEL.match(name), name
    assert name == child_name(schedule, source, slot.astimezone(BERLIN))
    assert name != child_name(schedule, source, slot + timedelta(minutes=1))
    assert name != child_name(schedule, source + "x", slot)


def test_child_names_read_well_when_they_fit() -> None:
    name = child_name("db-every-6h", "data-postgres-0", at(6))
    assert re.fullmatch(r"db-every-6h-data-postgres-0-[0-9a-f]{8}-20260601-0600", name)
    # Names that concatenate alike stay apart.
    assert child_name("db", "data-x", at(6)) != child_name("db-data", "x", at(6))


def test_label_values() -> None:
    assert label_value("db-every-6h") == "db-every-6h"
    long = "a" * 100
    assert len(label_value(long)) == 63
    assert label_value(long) != label_value(long + "b")
    assert label_value("volume/5aa1") != "volume/5aa1"
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", label_value("volume/5aa1"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("168h", timedelta(days=7)), ("1h30m", timedelta(minutes=90)), ("90s", timedelta(0, 90))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7d", "0h", "1.5h", "h", "30m1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
