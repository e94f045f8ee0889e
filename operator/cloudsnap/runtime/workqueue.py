"""A keyed, delayed work queue in the spirit of controller-runtime's workqueue.

One entry per resource however often it is requested (memory grows with resources, not with
events), the earliest requested time wins, a key is never worked on twice at once, and a request
that arrives while the key is being worked on runs it again right after. Workers are coroutines
bounded by a semaphore, so a thousand resources waiting on EVS cost a thousand small futures, not
a thousand threads or per-resource daemons.

A step that waits on something shared rather than working (a batched poll round, answered
together for many resources every poll interval) gives its worker back while it waits
(``waiting_on_others``): otherwise ten thousand Ready resources, each resyncing every few minutes
and each holding a worker until the next round, would fill every worker and leave new resources
unstarted.

Keys already worked on at least once go ahead of keys never worked on: when a thousand new
resources arrive at once and their creates queue on a class's rate limit, the follow-up polls of
the snapshots already created still get a worker, so resources turn Ready as they finish instead
of all at the end of the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)

# Steps that may wait on others (a poll round) per worker: enough that drift checks and polls
# never hold the workers, few enough that a whole restart's steps are not all held at once.
PARKED_PER_WORKER = 8

Work = Callable[[K], Awaitable[float | None]]
"""Process one key; return seconds until it should run again, or None to wait for a new request."""


class _Worker:
    """The worker slot a step holds, given back while the step (or every one of its concurrent
    parts) waits on others, and taken again before it goes on.

    Giving it back takes one of the scheduler's parking places first: a parked step still holds
    its resource, decoded and parsed, so parked steps are bounded too (a restart at 10,000
    resources would otherwise park them all at once).
    """

    def __init__(self, slots: asyncio.Semaphore, parking: asyncio.Semaphore) -> None:
        self._slots = slots
        self._parking = parking
        self._held = True
        self._parked = False
        self._away = 0

    async def __aenter__(self) -> None:
        self._away += 1
        if self._held and not self._parked:
            try:
                await self._parking.acquire()  # full: wait as before, holding the worker
            except BaseException:
                self._away -= 1
                raise
            self._parked = True
            self._held = False
            self._slots.release()

    async def __aexit__(self, error: type[BaseException] | None, *_: object) -> None:
        self._away -= 1
        if self._away > 0 or not self._parked:
            return
        # The place first: a step waiting for a place holds a worker this one may need.
        self._parked = False
        self._parking.release()
        # A cancelled step does no more work: it must not wait for a worker to unwind.
        if error is None or not issubclass(error, asyncio.CancelledError):
            await self._slots.acquire()  # cancelled here: nothing taken, nothing to give back
            self._held = True

    def finish(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


_worker: contextvars.ContextVar[_Worker | None] = contextvars.ContextVar(
    "cloudsnap_scheduler_worker", default=None
)


@contextlib.asynccontextmanager
async def waiting_on_others() -> AsyncIterator[None]:
    """Give the current step's worker back for the duration of a wait that does no work.

    The key stays in the running set (never worked on twice at once); the step takes a worker
    again before it goes on, so no more than ``concurrency`` steps do work at a time. Outside a
    WorkQueue's step this does nothing.
    """
    worker = _worker.get()
    if worker is None:
        yield
        return
    async with worker:
        yield


class WorkQueue(Generic[K]):
    """Run ``work(key)`` for due keys, at most ``concurrency`` at a time, and at most ``parked``
    more waiting on others (default: PARKED_PER_WORKER per worker)."""

    def __init__(self, work: Work[K], *, concurrency: int = 64, parked: int | None = None) -> None:
        self._work = work
        self._slots = asyncio.Semaphore(concurrency)
        self._parking = asyncio.Semaphore(
            parked if parked is not None else concurrency * PARKED_PER_WORKER
        )
        self._due: dict[K, tuple[float, int]] = {}
        # One heap per lane: index 0 for keys worked on before, 1 for keys never worked on yet.
        self._lanes: tuple[list[tuple[float, int, K]], ...] = ([], [])
        self._known: set[K] = set()
        self._seq = 0
        self._running: dict[K, float] = {}
        self._last_progress = float("-inf")
        self._again: dict[K, float] = {}
        self._dropped: set[K] = set()
        self._wakeup = asyncio.Event()
        self._paused = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def enqueue(self, key: K, delay: float = 0.0) -> None:
        """Ask for ``key`` to be worked on in ``delay`` seconds (or earlier if already due)."""
        when = asyncio.get_running_loop().time() + max(0.0, delay)
        self._dropped.discard(key)
        if key in self._running:
            self._again[key] = min(when, self._again.get(key, when))
            return
        current = self._due.get(key)
        if current is not None and current[0] <= when:
            return
        lane = 0 if key in self._known else 1
        self._due[key] = (when, lane)
        self._seq += 1
        heapq.heappush(self._lanes[lane], (when, self._seq, key))
        self._compact()
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """Drop any pending request for ``key`` (the resource is gone)."""
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._known.discard(key)
        if key in self._running:
            self._dropped.add(key)
        self._compact()

    def _compact(self) -> None:
        """Rebuild the heaps once most of their entries are stale.

        A superseded or forgotten request stays in its heap until its time comes, which for a
        deleted resource is its drift resync minutes away: without this, deleting a thousand
        resources would leave a thousand entries holding their keys until then. Rebuilding only
        when stale entries outnumber live ones keeps the cost amortised constant per request.
        """
        if sum(map(len, self._lanes)) <= 2 * len(self._due):
            return
        for index, lane in enumerate(self._lanes):
            lane[:] = [entry for entry in lane if self._due.get(entry[2]) == (entry[0], index)]
            heapq.heapify(lane)

    def pause(self) -> None:
        """Start nothing more and cancel the work in flight (a replica that lost its Lease).

        Keys stay queued; a cancelled key is not requeued: whoever resumes enqueues what it needs.
        """
        self._paused = True
        for task in list(self._tasks):
            task.cancel()

    def resume(self) -> None:
        """Dispatch again."""
        self._paused = False
        self._wakeup.set()

    def stalled_for(self) -> float:
        """Seconds that work has been due or running with no step finishing; 0 when idle.

        The watchdog behind /healthz: a scheduler whose steps all hang, or that stopped
        dispatching, shows a growing figure, and the liveness probe restarts the pod.
        """
        if self._paused:
            return 0.0
        now = asyncio.get_running_loop().time()
        waiting = [when for when, _lane in self._due.values() if when <= now]
        waiting.extend(self._running.values())
        if not waiting:
            return 0.0
        return max(0.0, now - max(self._last_progress, min(waiting)))

    def running(self) -> list[K]:
        """The keys being worked on now."""
        return list(self._running)

    def pending(self, key: K) -> float | None:
        """Loop time at which ``key`` is due, if it is queued."""
        due = self._due.get(key)
        return None if due is None else due[0]

    def start(self, name: str) -> None:
        """Run the dispatch loop in a task called ``name``, once however often this is called."""
        if self._runner is None:
            self._runner = asyncio.create_task(self.run(), name=name)

    async def stop(self) -> None:
        """Cancel the dispatch loop and the work in flight."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    async def run(self) -> None:
        """Dispatch due keys until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wakeup.clear()
                while not self._paused:
                    # Take the slot first, then the key: whatever is most urgent once a worker
                    # is free goes, not what was first in line when the wait began.
                    await self._slots.acquire()
                    key = self._pop_due(loop.time())
                    if key is None:
                        self._slots.release()
                        break
                    self._running[key] = loop.time()
                    task = asyncio.create_task(self._process(key))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                tops = [lane[0][0] for lane in self._lanes if lane]
                timeout = min(tops) - loop.time() if tops and not self._paused else None
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result when
                # the request and a cancel (stop) land in the same turn, and the loop runs on.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _pop_due(self, now: float) -> K | None:
        """The next due key, from the lane of keys worked on before first."""
        for lane_index, lane in enumerate(self._lanes):
            while lane and lane[0][0] <= now:
                when, _, key = heapq.heappop(lane)
                if self._due.get(key) == (when, lane_index):
                    del self._due[key]
                    return key
                # else: superseded by an earlier request, or forgotten
        return None

    async def _process(self, key: K) -> None:
        self._known.add(key)
        worker = _Worker(self._slots, self._parking)
        _worker.set(worker)
        delay: float | None = None
        try:
            delay = await self._work(key)
        except Exception:
            log.exception("Unexpected failure while reconciling %s; retrying in 30s", key)
            delay = 30.0
        finally:
            self._running.pop(key, None)
            self._last_progress = asyncio.get_running_loop().time()
            worker.finish()
        again = self._again.pop(key, None)
        if key in self._dropped:
            # Forgotten while it ran, possibly before the line above marked it known.
            self._dropped.discard(key)
            self._known.discard(key)
        elif again is not None:
            self.enqueue(key, again - asyncio.get_running_loop().time())
        elif delay is not None:
            self.enqueue(key, delay)


def watchdog(queues: Sequence[WorkQueue[Any]], limit: float) -> Callable[[], bool]:
    """/healthz's check: healthy while no queue has had due work without progress for ``limit``
    seconds (``WorkQueue.stalled_for``)."""
    return lambda: max((queue.stalled_for() for queue in queues), default=0.0) < limit
