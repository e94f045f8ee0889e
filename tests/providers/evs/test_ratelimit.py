"""The adaptive pace of a class's EVS calls, on a fake clock against the simulator's gateway model.

`run_against_gateway` replays a class that always has more calls to make than its pace allows
(a thousand resources applied at once) against the simulator's own token bucket (`Bucket`, what
`--rate-limit` throttles with), in simulated time: every figure is exact and takes no wall time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import pytest

from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.ratelimit import Adaptation, AdaptiveRate, RateControl
from evs_simulator.testing import RunningSimulator
from evs_simulator.throttle import Bucket, RateLimit
from tests.fixtures.reconcile import FAST, reconciler_over
from tests.fixtures.world import FakeCluster, World
from tests.waiting import eventually

LATENCY = 0.02  # seconds from a call to its answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Run:
    admitted_per_second: float
    throttled_share: float
    final_rate: float


def run_against_gateway(
    limit: RateLimit, seconds: float, adaptation: Adaptation | None = None
) -> Run:
    """Send as fast as the pace allows for `seconds`; answers arrive LATENCY later."""
    clock = FakeClock()
    rate = AdaptiveRate(adaptation or Adaptation(), clock=clock)
    gateway = Bucket(limit, float(limit.burst), 0.0)
    answers: list[tuple[float, float, bool]] = []  # (due, sent, admitted)
    admitted = throttled = 0
    while clock.now < seconds:
        delay = rate.wait()
        due = clock.now + delay if delay > 0 else clock.now
        if answers and answers[0][0] <= due:
            clock.now, sent, ok = heapq.heappop(answers)
            rate.answered(sent, "202" if ok else "429", held=True)
            continue
        clock.now = due
        if delay > 0:
            continue
        sent = rate.take()
        ok = gateway.take(sent)
        admitted += ok
        throttled += not ok
        heapq.heappush(answers, (sent + LATENCY, sent, ok))
    return Run(admitted / seconds, throttled / (admitted + throttled), rate.rate)


@pytest.mark.parametrize("calls_per_second", [5.0, 10.0, 20.0, 100.0])
def test_a_class_converges_on_the_gateway_rate_with_few_throttled_calls(
    calls_per_second: float,
) -> None:
    """The figure the gateway allows is found from above (the initial rate is 20/s and doubling)
    or below, and held: at least 0.9 of it let through, at most 2 % of the calls throttled."""
    limit = RateLimit(rate=calls_per_second)  # the simulator's default burst: a second's worth
    run = run_against_gateway(limit, seconds=300)
    assert run.admitted_per_second >= 0.9 * calls_per_second, run
    assert run.throttled_share <= 0.02, run
    assert 0.7 * calls_per_second <= run.final_rate <= 1.5 * calls_per_second, run


def test_halving_aimd_would_waste_what_the_gateway_allows() -> None:
    """What the choice buys (docs/evs.md): with a gateway that stores no burst, cutting in half
    and climbing linearly (here: back in 10 s, then no faster) lets much less through."""
    limit = RateLimit(rate=10.0, burst=1)
    ours = run_against_gateway(limit, seconds=300)
    halving = run_against_gateway(limit, seconds=300, adaptation=Adaptation(decrease=0.5))
    assert ours.admitted_per_second > halving.admitted_per_second * 1.1, (ours, halving)


def test_slow_start_doubles_each_second_the_pace_holds_calls_back() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(Adaptation(initial=20.0, doubling_seconds=1.0), clock=clock)
    while clock.now < 1.0:  # a second of answers, each paced at the rate of its time
        clock.now += 1.0 / rate.rate
        rate.answered(clock.now, "202", held=True)
    assert rate.rate == pytest.approx(40.0, rel=0.05)


def test_calls_the_pace_did_not_hold_back_grow_nothing() -> None:
    """A class asking for less than its rate does not drift upwards while quiet."""
    clock = FakeClock()
    rate = AdaptiveRate(Adaptation(initial=20.0), clock=clock)
    for _ in range(1000):
        clock.now += 1.0
        rate.answered(clock.now, "202", held=False)
    assert rate.rate == 20.0


def test_one_overload_is_one_cut_however_many_calls_were_in_flight() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(Adaptation(initial=20.0, decrease=0.8), clock=clock)
    clock.now = 1.0
    sent_before = [0.9, 0.95, 0.99]
    assert rate.answered(sent_before[0], "429", held=True)
    assert rate.rate == pytest.approx(16.0)
    for sent in sent_before[1:]:  # sent before the cut: they say nothing about the new rate
        assert not rate.answered(sent, "429", held=True)
    assert rate.rate == pytest.approx(16.0)
    clock.now = 1.5
    assert rate.answered(1.2, "429", held=True)  # sent after it: the new rate is too fast too
    assert rate.rate < 16.0


def test_a_storm_of_server_errors_cuts_the_rate_and_a_stray_one_does_not() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(Adaptation(initial=20.0, storm_window=10, storm_failures=5), clock=clock)
    for outcome in ["500"] + ["202"] * 9 + ["503"] + ["202"] * 9:  # 10 % faults
        clock.now += 0.05
        rate.answered(clock.now, outcome, held=False)
    assert rate.rate == 20.0
    for outcome in ["500", "timeout", "503", "connection_error", "500"]:
        clock.now += 0.05
        rate.answered(clock.now, outcome, held=False)
    assert rate.rate < 20.0


def test_the_class_ceiling_bounds_every_operation() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(Adaptation(initial=20.0), ceiling=8.0, clock=clock)
    assert rate.rate == 8.0
    for _ in range(500):
        clock.now += 1.0 / rate.rate
        rate.answered(clock.now, "202", held=True)
    assert rate.rate == 8.0


def test_the_rate_never_falls_below_the_floor() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(Adaptation(initial=20.0, floor=0.5), clock=clock)
    for _ in range(100):
        clock.now += 1.0
        rate.answered(clock.now - 0.001, "429", held=True)
    assert rate.rate == 0.5


async def test_rate_control_paces_each_operation_apart_and_reports_its_rates() -> None:
    """A throttled create slows creates, not lists; each change of a rate is published."""
    rates: list[tuple[str, float]] = []
    waits: list[float] = []
    control = RateControl(
        Adaptation(initial=50.0),
        rate_observer=lambda operation, rate: rates.append((operation, rate)),
        wait_observer=waits.append,
    )
    answered = await control.acquire("create")
    await control.acquire("list")
    assert rates == [("create", 50.0), ("list", 50.0)]
    answered("429")
    assert rates[-1] == ("create", pytest.approx(40.0))
    assert control.rate("list").rate == 50.0
    assert len(waits) == 2


CREATES_PER_SECOND = 10.0


@pytest.mark.parametrize(
    "evs_sim", [{"rate_limits": f"create={CREATES_PER_SECOND:g},list=20"}], indirect=True
)
async def test_the_operator_finds_the_simulators_rate_and_reports_no_throttling(
    evs_sim: RunningSimulator, fake: FakeCluster
) -> None:
    """Sixty resources at once against a gateway that allows 10 creates a second, with the
    default pace (20 a second and growing): a few 429s while the rate comes down to the
    gateway's, each sent again, none of them in any status or Event."""
    rates: list[tuple[str, str, float]] = []
    accounts = Accounts(
        fake,
        fake,
        poll_window=0.02,
        poll_spacing=FAST.poll,
        rate_observer=lambda cls, operation, rate: rates.append((cls, operation, rate)),
    )
    reconciler = reconciler_over(accounts, fake)
    names = [f"db{i}" for i in range(60)]
    try:
        async with World(reconciler) as world:
            for name in names:
                world.apply(name, volumeID=(await evs_sim.admin.add_volume())["id"])
            await eventually(lambda: all(world.is_ready(n) for n in names), timeout=60)
    finally:
        await accounts.aclose()
    calls, throttled = await evs_sim.admin.calls(), await evs_sim.admin.throttled()
    print(f"\ncreates {calls['create']}, throttled {throttled}, create rates {creates_seen(rates)}")
    assert calls["create"] - throttled.get("create", 0) == len(names)
    assert 1 <= throttled.get("create", 0) <= 0.1 * len(names), throttled  # found, few
    creates = [rate for _, operation, rate in rates if operation == "create"]
    assert creates[0] == Adaptation().initial
    assert 0.5 * CREATES_PER_SECOND <= creates[-1] <= 1.5 * CREATES_PER_SECOND, creates
    assert [e.reason for _, e in world.events] == ["Created"] * len(names)
    assert not any("APIG.0308" in str(r.status) for _, r in world.results)


def creates_seen(rates: list[tuple[str, str, float]]) -> list[float]:
    return [round(rate, 1) for _, operation, rate in rates if operation == "create"]
