"""The client against the real EVS simulator over loopback: signatures, every operation, paging,
error shapes and faults as they arrive through a real HTTP stack."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from cloudsnap.evs.auth import AKSKAuth, TokenAuth
from cloudsnap.evs.client import DEFAULT_LIMITS, EVSClient
from cloudsnap.evs.errors import EVSAPIError, EVSConnectionError, EVSNotSent, EVSTimeoutError
from cloudsnap.evs.models import CreateSnapshotRequest, ListSnapshotsQuery, Snapshot
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.fixtures.simulator import operator_client
from tests.waiting import eventually

MISSING_ID = "00000000-0000-4000-8000-000000000000"


async def status_of(client: EVSClient, snapshot_id: str) -> str:
    return (await client.show_snapshot(snapshot_id)).status


async def test_every_operation_through_a_whole_lifecycle(
    sim: RunningSimulator, client: EVSClient
) -> None:
    volume = await sim.admin.add_volume(size=20)
    created = await client.create_snapshot(
        CreateSnapshotRequest(
            volume_id=volume["id"],
            name="snap + ü & co",
            description="daily",
            metadata={"cloudsnap.io/owner-uid": "uid-1"},
        )
    )
    assert (created.status, created.size, created.volume_id) == ("creating", 20, volume["id"])
    assert created.created_at.tzinfo is not None

    await eventually(
        lambda: _is(client, created.id, "available"), timeout=10, what="snapshot available"
    )
    shown = await client.show_snapshot(created.id)
    assert shown.metadata == {"cloudsnap.io/owner-uid": "uid-1"}
    assert shown.project_id == sim.project_id

    # Every filter the operator's identity lookup uses, with a name that needs encoding.
    page = await client.list_snapshots(
        ListSnapshotsQuery(volume_id=volume["id"], name="snap + ü & co", status="available")
    )
    assert [s.id for s in page.snapshots] == [created.id]
    assert (page.count, page.next_offset) == (1, None)
    by_id = await client.list_snapshots(ListSnapshotsQuery(ids=[created.id, MISSING_ID]))
    assert [s.id for s in by_id.snapshots] == [created.id]
    assert (await client.list_snapshots(ListSnapshotsQuery(name="other"))).count == 0

    renamed = await client.update_snapshot(created.id, name="renamed", description=None)
    assert (renamed.name, renamed.description) == ("renamed", None)
    described = await client.update_snapshot(created.id, description="kept name")
    assert (described.name, described.description) == ("renamed", "kept name")

    assert await client.rollback_snapshot(created.id, volume["id"]) == volume["id"]
    await eventually(
        lambda: _is(client, created.id, "available"), timeout=10, what="rollback finished"
    )

    await client.delete_snapshot(created.id)
    await eventually(lambda: _gone(client, created.id), timeout=10, what="snapshot deleted")
    calls = await sim.admin.calls()
    writes = {name: calls[name] for name in ("create", "update", "rollback", "delete")}
    assert writes == {"create": 1, "update": 2, "rollback": 1, "delete": 1}


async def _is(client: EVSClient, snapshot_id: str, status: str) -> bool:
    return await status_of(client, snapshot_id) == status


async def _gone(client: EVSClient, snapshot_id: str) -> bool:
    try:
        await client.show_snapshot(snapshot_id)
    except EVSAPIError as error:
        return error.code == "EVS.5404"
    return False


async def test_paging_walks_every_snapshot_once(sim: RunningSimulator, client: EVSClient) -> None:
    made: set[str] = set()
    for _ in range(2):
        volume = await sim.admin.add_volume(size=1)
        for _ in range(6):
            snapshot = await client.create_snapshot(CreateSnapshotRequest(volume_id=volume["id"]))
            made.add(snapshot.id)

    offsets: list[int | None] = []
    query = ListSnapshotsQuery(limit=5)
    while True:
        page = await client.list_snapshots(query)
        assert page.count == 12
        offsets.append(page.next_offset)
        if page.next_offset is None:
            break
        query = query.model_copy(update={"offset": page.next_offset})
    assert offsets == [5, 10, None]

    before = (await sim.admin.calls())["list"]
    walked: list[Snapshot] = [s async for s in client.iter_snapshots(ListSnapshotsQuery(limit=5))]
    assert sorted(s.id for s in walked) == sorted(made)
    assert (await sim.admin.calls())["list"] - before == 3


async def test_missing_snapshot_is_evs_5404(client: EVSClient) -> None:
    with pytest.raises(EVSAPIError) as caught:
        await client.show_snapshot(MISSING_ID)
    error = caught.value
    assert (error.status_code, error.code, error.retryable) == (404, "EVS.5404", False)
    assert error.request_id


async def test_bad_signature_is_the_gateway_apig_0301(sim: RunningSimulator) -> None:
    wrong = AKSKAuth(sim.access_key, "not-the-secret-key", sim.project_id)
    async with EVSClient(sim.endpoint, wrong, sim.project_id) as evs:
        with pytest.raises(EVSAPIError) as caught:
            await evs.list_snapshots()
    error = caught.value
    assert (error.status_code, error.code, error.retryable) == (401, "APIG.0301", False)
    assert error.request_id
    assert "not-the-secret-key" not in str(error)


@pytest.mark.parametrize("with_token", [True, False])
async def test_temporary_credentials_need_their_security_token(with_token: bool) -> None:
    async with running_simulator(security_token="sts-token-value") as running:
        auth = AKSKAuth(
            running.access_key,
            running.secret_key,
            running.project_id,
            "sts-token-value" if with_token else None,
        )
        async with EVSClient(running.endpoint, auth, running.project_id) as evs:
            if with_token:
                assert (await evs.list_snapshots()).count == 0
            else:
                with pytest.raises(EVSAPIError, match=r"APIG\.0301"):
                    await evs.list_snapshots()


async def test_token_auth_is_accepted() -> None:
    async with running_simulator(auth_token="iam-token-value") as running:
        auth = TokenAuth("iam-token-value", running.project_id)
        async with EVSClient(running.endpoint, auth, running.project_id) as evs:
            assert (await evs.list_snapshots()).snapshots == []


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [
        ({"kind": "error", "status": 503, "code": "EVS.5503"}, 503, "EVS.5503"),
        ({"kind": "error", "status": 429, "code": "APIG.0308"}, 429, "APIG.0308"),
        ({"kind": "error", "status": 500, "code": "EVS.2002"}, 500, "EVS.2002"),
    ],
)
async def test_injected_server_errors_are_retryable(
    sim: RunningSimulator, client: EVSClient, rule: dict[str, Any], status: int, code: str
) -> None:
    await sim.admin.set_faults([{"operation": "show", "rate": 1.0, **rule}])
    with pytest.raises(EVSAPIError) as caught:
        await client.show_snapshot(MISSING_ID)
    assert (caught.value.status_code, caught.value.code, caught.value.retryable) == (
        status,
        code,
        True,
    )


async def test_hanging_request_times_out(sim: RunningSimulator) -> None:
    await sim.admin.set_faults([{"operation": "list", "kind": "hang", "rate": 1.0}])
    seen: list[tuple[str, str]] = []
    async with operator_client(
        sim, timeout=0.3, observer=lambda op, outcome, _seconds: seen.append((op, outcome))
    ) as evs:
        with pytest.raises(EVSTimeoutError) as caught:
            await evs.list_snapshots()
    assert caught.value.retryable
    assert seen == [("list", "timeout")]


async def test_waiting_for_the_rate_limiter_does_not_count_against_the_timeout(
    sim: RunningSimulator,
) -> None:
    """A request queued behind a saturated rate limit must not time out before it is even sent."""
    waited: list[str] = []
    answers: list[str] = []

    async def slow_limiter(operation: str) -> Callable[[str], None]:
        # The queue wait under test: three times the request timeout.
        await asyncio.sleep(0.6)
        waited.append(operation)
        return answers.append

    async with operator_client(sim, timeout=0.2, limiter=slow_limiter) as evs:
        page = await evs.list_snapshots()
    assert page.count == 0
    assert waited == ["list"]
    assert answers == ["200"]  # and the limiter heard how it went
    assert (await sim.admin.calls())["list"] == 1


async def test_only_a_throttled_request_is_sent_again(sim: RunningSimulator) -> None:
    """The gateway refused it before EVS saw it, so even a create may go again; a 503 may not."""
    volume = await sim.admin.add_volume(size=1)
    throttled = {"operation": "create", "kind": "error", "status": 429, "code": "APIG.0308"}
    await sim.admin.set_faults([throttled | {"count": 2}])
    heard: list[str] = []

    async def limiter(operation: str) -> Callable[[str], None]:
        return heard.append

    request = CreateSnapshotRequest(volume_id=volume["id"], name="paced")
    async with operator_client(sim, limiter=limiter, throttle_retries=2) as evs:
        await evs.create_snapshot(request)
        assert heard == ["429", "429", "202"]  # each attempt waited its turn and was heard
        await sim.admin.set_faults([throttled | {"count": 3}])
        with pytest.raises(EVSAPIError) as caught:
            await evs.create_snapshot(request)
        assert caught.value.throttled
        await sim.admin.set_faults([{"operation": "create", "kind": "error", "status": 503}])
        with pytest.raises(EVSAPIError):
            await evs.create_snapshot(request)
    assert (await sim.admin.calls())["create"] == 3 + 3 + 1
    assert len([s for s in await sim.admin.snapshots() if not s.get("deleted")]) == 1


async def test_lost_response_is_a_connection_error_yet_the_snapshot_exists(
    sim: RunningSimulator, client: EVSClient
) -> None:
    """Why the client never retries a create by itself: the first attempt may have worked."""
    volume = await sim.admin.add_volume(size=1)
    await sim.admin.set_faults([{"operation": "create", "kind": "lost_response", "rate": 1.0}])
    with pytest.raises(EVSConnectionError) as caught:
        await client.create_snapshot(CreateSnapshotRequest(volume_id=volume["id"], name="lost"))
    assert caught.value.retryable
    await sim.admin.clear_faults()
    [found] = (await client.list_snapshots(ListSnapshotsQuery(volume_id=volume["id"]))).snapshots
    assert found.name == "lost"


async def test_the_guard_is_asked_when_the_bytes_would_leave_not_when_the_call_starts(
    sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A create that passed every earlier point and then waited (here for a pooled connection;
    in life also a process paused by SIGSTOP) is not sent once the guard says no, and says so:
    a replica that lost its Lease meanwhile must not create beside its successor."""
    caplog.set_level(logging.DEBUG, logger="cloudsnap.evs.client")
    volume = await sim.admin.add_volume(size=1)
    await sim.admin.set_faults([{"operation": "list", "kind": "latency", "latency_seconds": 3.0}])
    open_until = math.inf
    pool = DEFAULT_LIMITS.max_connections
    async with operator_client(
        sim, timeout=10.0, guard=lambda: time.monotonic() < open_until
    ) as evs:
        lists = [asyncio.create_task(evs.list_snapshots()) for _ in range(pool)]
        await eventually(
            lambda: _count(sim, "list", pool), timeout=10, what="every connection busy"
        )
        open_until = time.monotonic() + 1.0  # no from here on; the lists are answered at 3 s
        with pytest.raises(EVSNotSent) as caught:
            await evs.create_snapshot(CreateSnapshotRequest(volume_id=volume["id"], name="late"))
        assert caught.value.retryable
        # The log tells a create the fence kept back from one cancelled while in flight.
        assert any(r.getMessage().startswith("EVS create -> fenced in ") for r in caplog.records)
        assert all(page.count == 0 for page in await asyncio.gather(*lists))
    assert (await sim.admin.calls()).get("create", 0) == 0
    assert await sim.admin.snapshots() == []


async def _count(sim: RunningSimulator, operation: str, expected: int) -> bool:
    return (await sim.admin.calls()).get(operation, 0) >= expected
