"""The batched poller: one list call answers many waiting resources."""

from __future__ import annotations

import asyncio
import gc

import pytest

from cloudsnap.evs.models import CreateSnapshotRequest
from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.poller import BatchPoller
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import CLASS
from tests.fixtures.simulator import operator_client
from tests.waiting import eventually


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
