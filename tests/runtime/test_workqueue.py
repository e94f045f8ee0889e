"""The keyed work queue: coalescing, fairness, parking, and a clean stop."""

from __future__ import annotations

import asyncio

import pytest

from cloudsnap.runtime.workqueue import WorkQueue, waiting_on_others, watchdog
from tests.waiting import eventually


async def park(scheduler: WorkQueue[str], count: int) -> None:
    """Queue ``count`` keys whose work parks (``parked-0``, ...), and wait until all of them run."""
    for index in range(count):
        scheduler.enqueue(f"parked-{index}")
    await eventually(lambda: len(scheduler.running()) == count, timeout=5)


async def test_queue_coalesces_requests_and_never_runs_a_key_twice_at_once() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, int] = {}
    release = asyncio.Event()

    async def work(key: str) -> float | None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs[key] = runs.get(key, 0) + 1
        if runs[key] == 1:
            await release.wait()
        running.discard(key)
        return None

    scheduler: WorkQueue[str] = WorkQueue(work, concurrency=4)
    scheduler.start("test")
    try:
        for _ in range(10):
            scheduler.enqueue("a")
        scheduler.enqueue("b", delay=3600)
        await eventually(lambda: runs.get("a") == 1, timeout=5)
        scheduler.enqueue("a")  # arrives while "a" runs: must run again afterwards, not now
        scheduler.enqueue("a")
        assert runs["a"] == 1
        release.set()
        await eventually(lambda: runs.get("a") == 2, timeout=5)
        assert overlaps == []
        assert "b" not in runs
        assert scheduler.pending("b") is not None
        scheduler.forget("b")
        assert scheduler.pending("b") is None
    finally:
        await scheduler.stop()


async def test_queue_serves_keys_in_flight_before_a_backlog_of_new_ones() -> None:
    """A follow-up of a resource already worked on must not queue behind every new resource."""
    order: list[str] = []
    gate = asyncio.Event()

    async def work(key: str) -> float | None:
        order.append(key)
        if key == "in-flight" and order.count(key) == 1:
            await gate.wait()
            return 0.0  # come back at once, as a poll of a creating snapshot does
        return None

    scheduler: WorkQueue[str] = WorkQueue(work, concurrency=1)
    scheduler.start("test")
    try:
        scheduler.enqueue("in-flight")
        await eventually(lambda: bool(order), timeout=5)
        for index in range(5):
            scheduler.enqueue(f"new-{index}")
        gate.set()
        await eventually(lambda: len(order) >= 7, timeout=5)
        assert order == ["in-flight", "in-flight"] + [f"new-{index}" for index in range(5)]
    finally:
        await scheduler.stop()


async def test_a_step_waiting_on_others_gives_its_worker_to_new_keys() -> None:
    """Steps parked on a shared answer (a poll round) must not starve keys never worked on,
    and once the answer comes no more than ``concurrency`` steps work at a time."""
    answer = asyncio.Event()
    finish_work = asyncio.Event()
    working: set[str] = set()
    most_working = 0
    done: list[str] = []

    async def work(key: str) -> float | None:
        nonlocal most_working
        if key.startswith("parked"):
            async with waiting_on_others():
                await answer.wait()
            working.add(key)
            most_working = max(most_working, len(working))
            await finish_work.wait()  # work that holds the worker until the test lets it end
            working.discard(key)
        done.append(key)
        return None

    scheduler: WorkQueue[str] = WorkQueue(work, concurrency=2)
    scheduler.start("test")
    try:
        await park(scheduler, 4)
        for index in range(3):
            scheduler.enqueue(f"new-{index}")
        await eventually(lambda: len(done) == 3, timeout=5)
        assert sorted(done) == ["new-0", "new-1", "new-2"]
        answer.set()
        await eventually(lambda: len(working) == 2, timeout=5)
        # A third parked step working beside them would take a worker nobody gave back.
        with pytest.raises(AssertionError, match="gave up"):
            await eventually(lambda: len(working) > 2, timeout=0.5)
        finish_work.set()
        await eventually(lambda: len(done) == 7, timeout=5)
        assert most_working == 2
        assert scheduler.running() == []
    finally:
        await scheduler.stop()


async def test_parked_steps_are_bounded_and_the_overflow_waits_holding_its_worker() -> None:
    """A parked step keeps its resource in memory: no more than ``parked`` at once."""
    answer = asyncio.Event()
    parked_now = 0
    most_parked = 0
    done: list[str] = []

    async def work(key: str) -> float | None:
        nonlocal parked_now, most_parked
        async with waiting_on_others():
            parked_now += 1
            most_parked = max(most_parked, parked_now)
            await answer.wait()
            parked_now -= 1
        done.append(key)
        return None

    scheduler: WorkQueue[str] = WorkQueue(work, concurrency=1, parked=2)
    scheduler.start("test")
    try:
        for index in range(5):
            scheduler.enqueue(f"key-{index}")
        # Two parked, the third holds the only worker waiting for a place, two not started.
        await eventually(lambda: len(scheduler.running()) == 3, timeout=5)
        with pytest.raises(AssertionError, match="gave up"):
            await eventually(lambda: len(scheduler.running()) > 3, timeout=0.5)
        assert parked_now == 2
        answer.set()
        await eventually(lambda: len(done) == 5, timeout=5)
        assert most_parked == 2
    finally:
        await scheduler.stop()


async def test_a_step_cancelled_while_parked_leaks_no_worker() -> None:
    """Losing the Lease cancels parked steps; afterwards there is still exactly one worker."""
    gate = asyncio.Event()
    started: list[str] = []

    async def work(key: str) -> float | None:
        started.append(key)
        if key.startswith("parked"):
            async with waiting_on_others():
                await asyncio.Event().wait()
        await gate.wait()
        return None

    scheduler: WorkQueue[str] = WorkQueue(work, concurrency=1)
    scheduler.start("test")
    try:
        await park(scheduler, 3)
        scheduler.pause()  # cancels them in their wait
        await eventually(lambda: scheduler.running() == [], timeout=5)
        scheduler.resume()
        scheduler.enqueue("first")
        scheduler.enqueue("second")
        await eventually(lambda: "first" in started, timeout=5)
        # A leaked worker would start "second" on the next turn of the loop; give it many.
        with pytest.raises(AssertionError, match="gave up"):
            await eventually(lambda: "second" in started, timeout=0.5)
        gate.set()
        await eventually(lambda: "second" in started, timeout=5)
    finally:
        await scheduler.stop()


async def test_stop_ends_the_queue_even_when_a_request_wakes_it_in_the_same_turn() -> None:
    """A request that wakes the dispatch loop just as it is cancelled must not eat the cancel.

    This is what happens when a step finishes and requeues its key as the operator shuts down.
    The request and the cancel are sent after 0, 1, 2, ... turns of the event loop, so that
    one of them finds the loop in its timed wait for requests (a key is due later), whatever
    its exact number of turns to get there.
    """

    async def work(key: str) -> float | None:
        return None

    for turns in range(8):
        scheduler: WorkQueue[str] = WorkQueue(work, concurrency=1)
        scheduler.enqueue("later", delay=3600)
        scheduler.start("test")
        for _ in range(turns):
            await asyncio.sleep(0)
        scheduler.enqueue("now")
        stopping = asyncio.create_task(scheduler.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert done, f"stop() after {turns} turns never returned: the loop ate its cancel"


async def test_stalled_for_grows_while_due_work_makes_no_progress_and_is_zero_otherwise() -> None:
    gate = asyncio.Event()
    done: list[str] = []

    async def work(key: str) -> float | None:
        if key == "hangs":
            await gate.wait()
        done.append(key)
        return None

    queue: WorkQueue[str] = WorkQueue(work, concurrency=2)
    assert queue.stalled_for() == 0.0  # idle
    queue.enqueue("later", delay=3600)
    assert queue.stalled_for() == 0.0  # queued, but not due
    queue.start("test")
    try:
        queue.enqueue("hangs")
        await eventually(lambda: queue.running() == ["hangs"], timeout=5)
        await eventually(lambda: queue.stalled_for() > 0.2, timeout=5)
        first = queue.stalled_for()
        await eventually(lambda: queue.stalled_for() > first + 0.1, timeout=5)
        queue.enqueue("quick")
        await eventually(lambda: "quick" in done, timeout=5)
        # A step finished: the hanging one is still running, but progress was just made.
        assert queue.stalled_for() < first
        gate.set()
        await eventually(lambda: "hangs" in done, timeout=5)
        assert queue.stalled_for() == 0.0
        gate.clear()
        queue.enqueue("hangs")
        await eventually(lambda: queue.stalled_for() > 0.1, timeout=5)
        queue.pause()  # a replica without the Lease is not stalled, whatever is queued
        assert queue.stalled_for() == 0.0
    finally:
        await queue.stop()


async def test_watchdog_is_unhealthy_once_any_queue_stalls_past_the_limit() -> None:
    gate = asyncio.Event()

    async def hangs(key: str) -> float | None:
        await gate.wait()
        return None

    async def idle(key: str) -> float | None:
        return None

    stuck: WorkQueue[str] = WorkQueue(hangs)
    fine: WorkQueue[str] = WorkQueue(idle)
    healthy = watchdog((fine, stuck), 0.3)
    assert healthy()
    stuck.start("test")
    try:
        stuck.enqueue("a")
        await eventually(lambda: stuck.running() == ["a"], timeout=5)
        assert healthy()  # stalled, but not yet for the limit
        await eventually(lambda: not healthy(), timeout=5)
        assert stuck.stalled_for() >= 0.3
        gate.set()
        await eventually(healthy, timeout=5)
    finally:
        await stuck.stop()
