"""Leader election against an in-memory Lease, with fake clocks: who leads, when, and fencing."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from cloudsnap.runtime.leader import Elector, LeaseConflict, LeaseRecord, LeaseTiming
from tests.waiting import eventually

TIMING = LeaseTiming(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class MemoryLease:
    """One Lease with resource versions and UIDs, refusing writes at a stale version, or to a
    Lease object deleted meanwhile, like the API server (with the UID as precondition).

    ``held``: an update is applied at once but its answer waits until the event is set (a paused
    process or a slow network); ``applied`` is set when such a held update has landed.
    """

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.versions = itertools.count(1)
        self.uids = itertools.count(1)
        self.down = False
        self.held: asyncio.Event | None = None
        self.applied = asyncio.Event()
        self.requests: list[str] = []

    async def get(self) -> LeaseRecord | None:
        self.requests.append("get")
        if self.down:
            raise ConnectionError("API server unreachable")
        return self.record

    async def create(self, holder: str, duration: int) -> LeaseRecord:
        self.requests.append("create")
        if self.record is not None:
            raise LeaseConflict
        uid = f"uid-{next(self.uids)}"
        self.record = LeaseRecord(holder, duration, 0, str(next(self.versions)), uid)
        return self.record

    async def update(
        self, old: LeaseRecord, holder: str, duration: int, transitions: int
    ) -> LeaseRecord:
        self.requests.append("update")
        if self.down:
            raise ConnectionError("API server unreachable")
        if self.record is None:
            raise LeaseConflict  # the API server's 409 for the UID precondition (or a 404)
        if (self.record.uid, self.record.resource_version) != (old.uid, old.resource_version):
            raise LeaseConflict
        version = str(next(self.versions))
        self.record = applied = LeaseRecord(holder, duration, transitions, version, old.uid)
        if self.held is not None:
            self.applied.set()
            await self.held.wait()
        return applied


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(lease: MemoryLease, name: str, clock: Clock, log: list[str]) -> Elector:
    return Elector(
        lease,
        name,
        timing=TIMING,
        clock=clock,
        on_started=lambda: log.append(f"{name} started"),
        on_stopped=lambda: log.append(f"{name} stopped"),
    )


async def lead(first: Elector, clock: Clock) -> None:
    """``first`` creates the Lease and, renewing it, waits out the lease duration, which a replica
    that found no Lease must (see the tests on a deleted Lease); then it leads."""
    await first._try_once()
    await waits_a_lease_duration(first, clock.now, clock)


async def waits_a_lease_duration(
    waiter: Elector, since: float, clock: Clock, *others: Elector
) -> None:
    """Trying every retry period (so does each of ``others``), ``waiter`` may not act until a
    lease duration after ``since``, and acts from then on."""
    while clock.now + TIMING.retry_period < since + TIMING.lease_duration:
        clock.now += TIMING.retry_period
        for candidate in (waiter, *others):
            await candidate._try_once()
        assert not waiter.may_act(), f"acting {clock.now - since}s after the Lease went missing"
    clock.now = since + TIMING.lease_duration
    await waiter._try_once()
    assert waiter.may_act()


async def test_first_candidate_leads_and_the_other_waits_out_the_lease() -> None:
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    await b._try_once()
    assert (a.leading, b.leading) == (True, False)
    assert a.may_act()
    assert not b.may_act()
    # a dies silently. b must see the record unchanged for a whole lease duration on its clock.
    clock.now += TIMING.lease_duration - 1
    await b._try_once()
    assert not b.leading
    clock.now += 1
    await b._try_once()
    assert b.leading
    assert lease.record is not None
    assert lease.record.holder == "b"
    assert lease.record.transitions == 1
    assert log == ["a started", "b started"]


async def test_a_renewing_leader_is_never_displaced() -> None:
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    for _ in range(30):  # a minute of renewals every retry period
        clock.now += TIMING.retry_period
        await a._try_once()
        await b._try_once()
    assert a.leading
    assert not b.leading
    assert log == ["a started"]


async def test_a_leader_renews_with_one_write_and_reads_only_when_it_is_refused() -> None:
    """client-go's fast path: the holder writes at the version it last saw, without a read."""
    lease, clock, log = MemoryLease(), Clock(), []
    a = elector(lease, "a", clock, log)
    await lead(a, clock)
    lease.requests.clear()
    for _ in range(5):
        clock.now += TIMING.retry_period
        await a._try_once()
    assert lease.requests == ["update"] * 5
    assert a.may_act()
    # Someone forced the Lease over (say, an administrator deleting and re-creating it).
    assert lease.record is not None
    lease.record = LeaseRecord("b", 15, 1, "999", "uid-other")
    lease.requests.clear()
    clock.now += TIMING.retry_period
    await a._try_once()
    assert lease.requests == ["update", "get"]
    assert not a.leading
    assert log == ["a started", "a stopped"]


async def test_a_leader_that_cannot_renew_stops_acting_before_anyone_can_take_over() -> None:
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    await b._try_once()  # b saw a's record now
    lease.down = True  # a's renewals fail from here on; b cannot read either
    clock.now += TIMING.renew_deadline - 0.1
    assert a.may_act()
    clock.now += 0.1
    # Fenced by its own clock at once, before its loop even runs again.
    assert not a.may_act()
    await a._try_once()
    assert log == ["a started", "a stopped"]
    a_stopped = clock.now
    lease.down = False
    # b tries every half second from here; at no instant may both act, and b starts only after a
    # gap that absorbs clock drift and a pause between a's last check and its write.
    b_started = None
    while b_started is None:
        await b._try_once()
        assert not (a.may_act() and b.may_act()), f"both act at {clock.now}"
        if b.may_act():
            b_started = clock.now
        clock.now += 0.5
    assert b.leading
    assert b_started - a_stopped >= 5.0, f"b acts {b_started - a_stopped}s after a stopped"


async def test_release_hands_over_at_the_next_retry() -> None:
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    await b._try_once()
    a._let_go("shutting down")
    await a._release()
    assert lease.record is not None
    assert lease.record.holder == ""
    clock.now += TIMING.retry_period
    await b._try_once()
    assert b.leading


def test_timing_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseTiming(lease_duration=10.0, renew_deadline=10.0, retry_period=2.0)


async def test_a_renewal_answered_late_counts_from_when_it_was_sent() -> None:
    """The API server applies a renewal, but its answer reaches the leader only after the
    standby has waited out the Lease and taken over (the leader was paused, or the network held
    the answer). Counted from the answer, the renewal would let the old leader act again beside
    its successor for a whole renew deadline; counted from the send, it may not act at all, and
    the next look at the Lease, held by someone else, ends its leadership."""
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    await b._try_once()
    assert a.may_act()
    assert not b.may_act()

    clock.now += TIMING.retry_period
    answer = lease.held = asyncio.Event()
    renewal = asyncio.create_task(a._try_once())
    await lease.applied.wait()  # sent and applied; the answer is held
    lease.held = None
    await b._try_once()  # b sees the renewal ...
    clock.now += TIMING.lease_duration
    await b._try_once()  # ... and a whole lease duration later takes over
    assert b.may_act()

    answer.set()  # a's renewal answer arrives only now
    await renewal
    assert not a.may_act(), "the old leader may act again beside its successor"
    clock.now += TIMING.retry_period
    await a._try_once()
    assert not a.leading
    assert b.may_act()


async def test_a_leader_whose_lease_is_deleted_creates_it_again_and_goes_on() -> None:
    """The Lease deleted under a leader inside its renew deadline: its renewal is refused (the
    API server answers the UID precondition with 409, never re-creating the Lease), it reads none
    and creates it. Nobody else can have begun acting since its last renewal, so it goes on,
    without a pause, and the standby sees an ordinary holder."""
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    await b._try_once()
    deleted = lease.record
    lease.record = None
    lease.requests.clear()
    clock.now += TIMING.retry_period
    await a._try_once()
    assert lease.requests == ["update", "get", "create"]
    assert lease.record is not None
    assert deleted is not None
    assert (lease.record.holder, lease.record.uid) == ("a", "uid-2") != ("a", deleted.uid)
    assert a.may_act()
    for _ in range(int(2 * TIMING.lease_duration / TIMING.retry_period)):
        await b._try_once()
        clock.now += TIMING.retry_period
        await a._try_once()
        assert a.may_act()
    assert not b.leading
    assert log == ["a started"]


async def test_a_standby_that_creates_a_missing_lease_waits_a_lease_duration() -> None:
    """The standby finds the Lease gone and creates it. The old leader may act until its own
    renew deadline and nothing tells the standby when that is: it holds and renews the Lease but
    acts only a lease duration after it saw it missing. The old leader, reading the new Lease,
    stops at once."""
    lease, clock, log = MemoryLease(), Clock(), []
    a, b = elector(lease, "a", clock, log), elector(lease, "b", clock, log)
    await lead(a, clock)
    await b._try_once()
    lease.record = None
    missing_seen = clock.now
    await b._try_once()
    assert lease.record is not None
    assert lease.record.holder == "b"
    assert not b.may_act()
    assert a.may_act()  # inside its renew deadline, and it does not know yet
    clock.now += TIMING.retry_period
    await a._try_once()
    assert not a.may_act()
    assert log == ["a started", "a stopped"]
    await waits_a_lease_duration(b, missing_seen, clock, a)
    assert lease.record.holder == "b"
    assert not a.leading
    assert log == ["a started", "a stopped", "b started"]


async def test_a_leader_past_its_deadline_that_finds_the_lease_gone_waits_too() -> None:
    """A leader paused beyond its renew deadline wakes to a deleted Lease: it cannot tell whether
    someone else led meanwhile, so it creates the Lease like any other replica would, and waits."""
    lease, clock, log = MemoryLease(), Clock(), []
    a = elector(lease, "a", clock, log)
    await lead(a, clock)
    lease.record = None
    clock.now += TIMING.renew_deadline + 1
    assert not a.may_act()
    missing_seen = clock.now
    await a._try_once()
    assert lease.record is not None
    assert lease.record.holder == "a"
    assert log == ["a started", "a stopped"]
    await waits_a_lease_duration(a, missing_seen, clock)
    assert log == ["a started", "a stopped", "a started"]


async def test_a_lease_not_yet_acted_on_is_not_released_on_shutdown() -> None:
    """A successor takes a released Lease at once; released while its creator still waits out
    the previous holder's term, it would let the successor act inside that term. So it is left
    to expire."""
    lease, clock, log = MemoryLease(), Clock(), []
    quick = LeaseTiming(lease_duration=15.0, renew_deadline=10.0, retry_period=0.01)
    a = Elector(lease, "a", timing=quick, clock=clock, on_started=lambda: log.append("started"))
    campaign = asyncio.create_task(a.run())
    await eventually(lambda: lease.record is not None, timeout=10, what="the Lease created")
    campaign.cancel()
    await asyncio.gather(campaign, return_exceptions=True)
    assert log == []
    assert lease.record.holder == "a", "released"
