"""Leader election on a coordination.k8s.io/v1 Lease, with fencing, as client-go does it.

Only the holder of the Lease reconciles; the others keep their watch caches warm and wait. The
timing follows controller-runtime's defaults and reasoning (docs/operations.md, "High
availability"):

- A candidate takes the Lease only when its record has not changed for ``lease_duration`` *as
  measured on the candidate's own clock* since it last saw it change. No clock is compared with
  another machine's: only durations, each on one clock.
- The holder renews every ``retry_period``, with one write at the version it last saw and no read
  (client-go's fast path); only a refused write makes it read the Lease. If it has not renewed
  successfully for ``renew_deadline`` (< ``lease_duration``), it stops acting: ``may_act()``
  turns False at once, which stops steps, writes and EVS calls, and ``on_stopped`` cancels steps
  in flight. The ``lease_duration - renew_deadline`` margin (5 s with the defaults) absorbs the
  time a cancelled call needs to stop and the rate at which two clocks drift apart (well under
  1 % on real hosts: under 0.15 s over 15 s).
- A renewal counts from the moment its write was *sent*, not from when its answer came back: the
  API server may have applied it long before the answer reaches a paused or partitioned replica,
  and a successor counts its lease duration from when it saw that write. Counting from the answer
  would let a replica that wakes up to a late answer act again beside its successor.
- A leader that reads the Lease held by someone else stops at once; each try is bounded by the
  renew deadline, so a request that never returns cannot hang the campaign.
- Every update names the Lease's UID as a precondition, so it lands only on the Lease object that
  was read: a renewal never re-creates a deleted Lease (the API server creates one on a PUT to a
  missing name otherwise). Lease objects are born only by a create, after a read found none.
- A Lease that does not exist says nothing about who may still act: the holder of a deleted one
  acts until its renew deadline, and nothing left tells when that is. So a replica that creates
  the Lease holds and renews it, but acts only once ``lease_duration`` has passed since it saw the
  Lease missing, on its own clock, as after a takeover. The exception is a leader still inside its
  renew deadline: it was that holder, and nobody else can have begun acting since its last
  renewal (a takeover waits ``lease_duration`` after seeing it, a creation ``lease_duration``
  after the deletion), so it re-creates the Lease and goes on.
- On shutdown the holder releases the Lease (empty holder, 1 s duration), so a rolling update hands
  over within about one ``retry_period`` instead of a whole ``lease_duration``; not a Lease it was
  still waiting to act on, since a successor takes a released Lease at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTiming:
    """controller-runtime's defaults."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry period < renew deadline < lease duration")


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease that election reads and writes."""

    holder: str
    duration: int
    transitions: int
    resource_version: str
    uid: str
    """The Lease object's UID: a deleted Lease created again is another object."""


class LeaseStore(Protocol):
    """Reads and writes the one Lease (the Kubernetes API in the operator; a dict in tests)."""

    async def get(self) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        ...

    async def create(self, holder: str, duration: int) -> LeaseRecord:
        """Create it held by ``holder``; raises LeaseConflict when someone else did first."""
        ...

    async def update(
        self, old: LeaseRecord, holder: str, duration: int, transitions: int
    ) -> LeaseRecord:
        """Write holder and renew time at ``old``'s version and UID; LeaseConflict when it moved
        on or is gone (never create it)."""
        ...


class LeaseConflict(Exception):
    """Someone else wrote the Lease first, or it was deleted."""


class Elector:
    """Campaigns for the Lease and tells the operator when it leads and when it must stop."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        *,
        timing: LeaseTiming | None = None,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        on_holder: Callable[[str], None] = lambda holder: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.on_started = on_started
        self.on_stopped = on_stopped
        self._on_holder = on_holder
        self._clock = clock
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")
        self._renewed_at = float("-inf")
        # Holding: our last write made us the holder and the renew deadline has not passed.
        # Leading: holding, and allowed to act (see _create).
        self._holding = False
        self._leading = False
        self._acts_from = float("-inf")
        self._holder = ""

    @property
    def leading(self) -> bool:
        """Whether this replica leads: it holds the Lease as far as it knows and may act on it
        (a replica that created a missing Lease holds it a while before it leads)."""
        return self._leading

    def may_act(self) -> bool:
        """Whether this replica may send anything now: it leads and renewed within the deadline.

        Checked before every step, every Kubernetes write and every EVS call, so a replica that
        stalled (say, SIGSTOP) sends nothing after it wakes, even before its loop notices.
        """
        return self._leading and self._clock() - self._renewed_at < self.timing.renew_deadline

    async def run(self) -> None:
        """Campaign and renew until cancelled; then release the Lease if held."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timing.renew_deadline):
                        await self._try_once()
                except TimeoutError:
                    # A renewal this late could not have kept the Lease anyway (may_act counts
                    # from the send); the next try stops leading if the deadline has passed.
                    log.warning("leader election: no answer within %gs", self.timing.renew_deadline)
                await asyncio.sleep(self.timing.retry_period)
        finally:
            leading = self._leading
            if self._holding:
                self._let_go("shutting down")
            if leading:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release())

    async def _try_once(self) -> None:
        now = self._clock()
        if self._holding and now - self._renewed_at >= self.timing.renew_deadline:
            self._let_go(f"no renewal for {self.timing.renew_deadline:g}s")
        try:
            if await self._renewed():
                return
            record = await self._store.get()
            if record is None:
                await self._create(missing_since=self._clock())
                return
            if record != self._observed:
                self._observed, self._observed_at = record, self._clock()
                self._holder_is(record.holder)
            mine = record.holder == self.identity
            if self._holding and not mine:
                self._let_go(f"the Lease is held by {record.holder or 'nobody'}")
            expired = self._clock() - self._observed_at >= max(record.duration, 1)
            if not (mine or not record.holder or expired):
                return
            transitions = record.transitions + (0 if mine else 1)
            sent = self._clock()
            fresh = await self._store.update(record, self.identity, self._duration(), transitions)
            self._won(fresh, sent_at=sent)
        except LeaseConflict:
            return
        except Exception as exc:
            log.warning("leader election: %s: %s", type(exc).__name__, exc)

    async def _create(self, missing_since: float) -> None:
        """No Lease exists (``missing_since``: when that was seen): create it, held by us.

        Whoever held the deleted one may act until its own renew deadline. A leader that may still
        act was that holder and goes on. Any other replica holds the new Lease without acting for
        a lease duration from ``missing_since``: by then that holder has stopped, with the same
        margin as a takeover (lease duration minus renew deadline).
        """
        if not self.may_act():
            if self._holding:
                self._let_go("the Lease was deleted")
            self._acts_from = max(self._acts_from, missing_since + self.timing.lease_duration)
        sent = self._clock()
        record = await self._store.create(self.identity, self._duration())
        if sent < self._acts_from:
            log.info(
                "leader election: %s created the Lease and acts in %.1fs, when the holder of a"
                " Lease deleted before it would have stopped",
                self.identity,
                self._acts_from - sent,
            )
        self._won(record, sent_at=sent)

    async def _renewed(self) -> bool:
        """A holder's renewal at the version it last saw; False: refused, read the Lease."""
        record = self._observed
        if not self._holding or record is None or record.holder != self.identity:
            return False
        sent = self._clock()
        try:
            fresh = await self._store.update(
                record, self.identity, self._duration(), record.transitions
            )
        except LeaseConflict:
            return False
        self._won(fresh, sent_at=sent)
        return True

    def _won(self, record: LeaseRecord, *, sent_at: float) -> None:
        """Our write of the Lease succeeded; it was sent at ``sent_at`` (our clock). Leading
        begins with the first one sent once this replica may act."""
        self._observed, self._observed_at = record, self._clock()
        self._renewed_at = sent_at
        self._holding = True
        self._holder_is(record.holder)
        if not self._leading and sent_at >= self._acts_from:
            self._leading = True
            log.info("leader election: %s now leads", self.identity)
            self.on_started()

    def _holder_is(self, holder: str) -> None:
        if holder != self._holder:
            self._holder = holder
            log.info("leader election: the Lease is held by %s", holder or "nobody")
            self._on_holder(holder)

    def _let_go(self, why: str) -> None:
        """No longer the holder as far as we can prove; stop acting if we did."""
        self._holding = False
        if self._leading:
            self._leading = False
            log.warning("leader election: %s stops leading (%s)", self.identity, why)
            self.on_stopped()

    async def _release(self) -> None:
        record = self._observed
        if record is not None and record.holder == self.identity:
            await self._store.update(record, "", 1, record.transitions)
            log.info("leader election: %s released the Lease", self.identity)

    def _duration(self) -> int:
        return max(1, round(self.timing.lease_duration))
