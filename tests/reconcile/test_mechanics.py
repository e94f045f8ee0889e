"""Backoff math, error classes, the token bucket, the scheduler and the batched poller."""

from __future__ import annotations

import asyncio
import gc
import random
import time

import pytest

from cloudsnap.evs import (
    CreateSnapshotRequest,
    EVSAPIError,
    EVSConnectionError,
    EVSTimeoutError,
)
from cloudsnap.reconcile import Accounts, Backoff, Cause, Kind, Scheduler, TokenBucket, classify
from cloudsnap.reconcile.poller import BatchPoller
from cloudsnap.reconcile.scheduler import waiting_on_others
from evs_simulator.testing import RunningSimulator
from tests.fixtures.simulator import operator_client
from tests.reconcile.conftest import CLASS
from tests.waiting import eventually


def test_backoff_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.0)
    rng = random.Random(1)
    assert [backoff.delay(n, rng) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_backoff_jitter_stays_within_its_band_and_spreads() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=120.0, jitter=0.25)
    rng = random.Random(3)
    samples = [backoff.delay(4, rng) for _ in range(500)]
    assert all(12.0 <= d <= 20.0 for d in samples)  # 16 s +/- 25 %
    assert max(samples) - min(samples) > 6.0  # resources failing together drift apart
    capped = [backoff.delay(30, rng) for _ in range(200)]
    assert all(90.0 <= d <= 120.0 for d in capped)


@pytest.mark.parametrize(
    ("error", "operation", "kind"),
    [
        (EVSAPIError("boom", status_code=500, code="EVS.5500", retryable=True), "create", "t"),
        (EVSAPIError("slow", status_code=429, code="APIG.0308", retryable=True), "list", "t"),
        (EVSTimeoutError("no answer", retryable=True), "create", "t"),
        (EVSConnectionError("reset", retryable=True), "show", "t"),
        (EVSAPIError("bad id", status_code=400, code="EVS.1002"), "create", "i"),
        (EVSAPIError("bad body", status_code=400, code="EVS.1013"), "create", "i"),
        (EVSAPIError("malformed", status_code=400, code="EVS.5400"), "create", "i"),
        (EVSAPIError("no disk", status_code=404, code="EVS.5404"), "create", "b"),
        (EVSAPIError("quota", status_code=413, code="EVS.5413"), "create", "b"),
        (EVSAPIError("signature", status_code=401, code="APIG.0301"), "list", "b"),
        (EVSAPIError("forbidden", status_code=403, code="EVS.5403"), "create", "b"),
        (
            EVSAPIError(
                "Invalid volume: Volume v status must be available, but current status is: in-use.",
                status_code=400,
                code="EVS.5400",
            ),
            "create",
            "b",
        ),
        # A change of a snapshot refused for its state is retried; one refused for what the
        # request says is not (docs/evs.md, "Refusals").
        (EVSAPIError("status", status_code=400, code="EVS.1047"), "delete", "b"),
        (EVSAPIError("a valid status", status_code=400, code="EVS.5400"), "delete", "b"),
        (EVSAPIError("conflict", status_code=409, code="EVS.0409"), "delete", "b"),
        (EVSAPIError("invalid snapshot_id!", status_code=400, code="EVS.2045"), "delete", "i"),
        (EVSAPIError("locked", status_code=400, code="EVS.2068", retryable=True), "delete", "t"),
        (EVSAPIError("busy", status_code=400, code="EVS.2043"), "update", "b"),
        (EVSAPIError("sdrs", status_code=400, code="EVS.2089"), "update", "b"),
        (EVSAPIError("Invalid snapshot: x busy", status_code=400, code="EVS.5400"), "update", "b"),
        (EVSAPIError("name too long", status_code=400, code="EVS.5400"), "update", "i"),
        (EVSAPIError("bad body", status_code=400, code="EVS.1052"), "update", "i"),
        (EVSAPIError("conflict", status_code=409, code="EVS.0409"), "create", "i"),
    ],
)
def test_errors_fall_in_the_three_classes(error: EVSAPIError, operation: str, kind: str) -> None:
    expected = {"t": Kind.TRANSIENT, "i": Kind.INVALID, "b": Kind.BLOCKED}[kind]
    failure = classify(error, operation)
    assert failure.kind is expected
    assert failure.retryable is (expected is Kind.TRANSIENT)
    assert failure.code == (error.code or failure.code)
    refused = expected is Kind.BLOCKED and operation in ("update", "delete")
    assert (failure.cause is Cause.REFUSED) is refused
    assert failure.message.endswith(f"EVS says: {error.message}" if refused else error.message)


async def test_token_bucket_holds_the_rate_after_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=5)
    started = time.monotonic()
    waits = [await bucket.acquire() for _ in range(25)]
    elapsed = time.monotonic() - started
    assert waits[:5] == pytest.approx([0.0] * 5, abs=0.005)
    assert elapsed >= 20 / 100.0 * 0.95  # 20 tokens beyond the burst at 100/s
    assert sum(waits) > 0.1


async def test_scheduler_coalesces_requests_and_never_runs_a_key_twice_at_once() -> None:
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

    scheduler: Scheduler[str] = Scheduler(work, concurrency=4)
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


async def test_scheduler_serves_keys_in_flight_before_a_backlog_of_new_ones() -> None:
    """A follow-up of a resource already worked on must not queue behind every new resource."""
    order: list[str] = []
    gate = asyncio.Event()

    async def work(key: str) -> float | None:
        order.append(key)
        if key == "in-flight" and order.count(key) == 1:
            await gate.wait()
            return 0.0  # come back at once, as a poll of a creating snapshot does
        return None

    scheduler: Scheduler[str] = Scheduler(work, concurrency=1)
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

    scheduler: Scheduler[str] = Scheduler(work, concurrency=2)
    scheduler.start("test")
    try:
        for index in range(4):
            scheduler.enqueue(f"parked-{index}")
        await eventually(lambda: len(scheduler.running()) == 4, timeout=5)
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

    scheduler: Scheduler[str] = Scheduler(work, concurrency=1, parked=2)
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

    scheduler: Scheduler[str] = Scheduler(work, concurrency=1)
    scheduler.start("test")
    try:
        for index in range(3):
            scheduler.enqueue(f"parked-{index}")
        await eventually(lambda: len(scheduler.running()) == 3, timeout=5)
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


async def test_stop_ends_the_scheduler_even_when_a_request_wakes_it_in_the_same_turn() -> None:
    """A request that wakes the dispatch loop just as it is cancelled must not eat the cancel.

    This is what happens when a step finishes and requeues its key as the operator shuts down.
    The request and the cancel are sent after 0, 1, 2, ... turns of the event loop, so that
    one of them finds the loop in its timed wait for requests (a key is due later), whatever
    its exact number of turns to get there.
    """

    async def work(key: str) -> float | None:
        return None

    for turns in range(8):
        scheduler: Scheduler[str] = Scheduler(work, concurrency=1)
        scheduler.enqueue("later", delay=3600)
        scheduler.start("test")
        for _ in range(turns):
            await asyncio.sleep(0)
        scheduler.enqueue("now")
        stopping = asyncio.create_task(scheduler.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert done, f"stop() after {turns} turns never returned: the loop ate its cancel"


@pytest.fixture
async def many_snapshots(evs_sim: RunningSimulator, volume: str) -> list[str]:
    """The IDs of 150 snapshots, five on each of 30 disks."""
    async with operator_client(evs_sim) as client:
        disks = [volume] + [(await evs_sim.admin.add_volume(size=1))["id"] for _ in range(29)]
        made = await asyncio.gather(
            *(
                client.create_snapshot(CreateSnapshotRequest(volume_id=d, name=f"s{i}"))
                for i, d in enumerate(disks * 5)
            )
        )
    return [s.id for s in made]


async def test_poller_answers_many_waiters_with_few_list_calls(
    evs_sim: RunningSimulator, accounts: Accounts, many_snapshots: list[str]
) -> None:
    ids = many_snapshots
    await evs_sim.admin.remove_snapshot(ids[0])
    account = await accounts.resolve(CLASS)
    before = (await evs_sim.admin.calls()).get("list", 0)
    seen = await asyncio.gather(*(account.poller.refresh(sid) for sid in ids))
    lists = (await evs_sim.admin.calls()).get("list", 0) - before
    assert seen[0] is None  # removed: reported gone
    assert [s.id for s in seen[1:] if s is not None] == ids[1:]
    assert lists == 1  # 150 waiters: one page of the whole account, not two calls of 100 ids


async def test_poller_asks_by_id_once_the_account_outgrows_a_page(
    evs_sim: RunningSimulator, accounts: Accounts, many_snapshots: list[str]
) -> None:
    """Paging by offset could skip a snapshot deleted meanwhile (read as gone): an account larger
    than a page is answered from its first page and by id, then by id only."""
    ids = many_snapshots
    account = await accounts.resolve(CLASS)
    poller = BatchPoller(account.client, window=0.01, ids_per_call=40, page_size=100)
    for expected_lists in (1 + 2, 4):  # a page, then 50 ids; then 150 ids, 40 a call
        before = (await evs_sim.admin.calls()).get("list", 0)
        seen = await asyncio.gather(*(poller.refresh(sid) for sid in ids))
        assert [s.id for s in seen if s is not None] == ids
        assert (await evs_sim.admin.calls()).get("list", 0) - before == expected_lists


async def test_a_failed_round_nobody_waits_for_any_more_logs_no_unretrieved_error(
    evs_sim: RunningSimulator, accounts: Accounts
) -> None:
    """A step waiting on a poll round is cancelled (the replica lost the Lease or shuts down) and
    the round then fails: asyncio must not report "Future exception was never retrieved" as an
    ERROR for each snapshot of the batch."""
    unhandled: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    await evs_sim.admin.set_faults(
        [
            {"operation": "list", "kind": "latency", "latency_seconds": 0.5},
            {"operation": "list", "kind": "error", "status": 500},
        ]
    )
    account = await accounts.resolve(CLASS)
    waiter = asyncio.create_task(account.poller.refresh("snap-1"))
    await eventually(lambda: _calls(evs_sim, "list"), timeout=10, what="the round's list call")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The round ends with EVS's 500; then nothing refers to its future any more.
    await eventually(lambda: account.poller._round is None or account.poller._round.done())
    del waiter
    gc.collect()  # a future's unretrieved error is reported when it is collected
    assert unhandled == []


async def _calls(sim: RunningSimulator, operation: str) -> int:
    return int((await sim.admin.calls()).get(operation, 0))
