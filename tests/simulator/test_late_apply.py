"""``late_apply``: EVS applies a create after the client gave up on it.

Asserting that a create is never applied needs time to pass; instead of sleeping, each such test
sends a later create with the same delay and waits for that one: once it is applied, the earlier
one's time has come too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from cloudsnap.evs.errors import EVSConnectionError, EVSError, EVSTimeoutError
from cloudsnap.evs.models import CreateSnapshotRequest
from evs_simulator.state import MAX_SNAPSHOTS_PER_VOLUME
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.fixtures.simulator import operator_client
from tests.simulator.signed import assert_evs_error, evs_client
from tests.waiting import eventually

LATE = 1.5
MISSING = "00000000-0000-4000-8000-000000000000"


def late(then: str = "disconnect", **fields: Any) -> dict[str, Any]:
    return {
        "operation": "create",
        "kind": "late_apply",
        "then": then,
        "apply_after_seconds": LATE,
        **fields,
    }


def body(volume_id: str, name: str = "late", **fields: Any) -> dict[str, Any]:
    return {"snapshot": {"volume_id": volume_id, "name": name, **fields}}


async def live(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [s for s in await sim.admin.snapshots() if not s["deleted"]]


async def applied(sim: RunningSimulator, name: str) -> dict[str, Any]:
    """Wait for the snapshot named ``name`` to be applied; return it."""

    async def found() -> list[dict[str, Any]]:
        return [s for s in await live(sim) if s["name"] == name]

    (snapshot,) = await eventually(found, timeout=LATE + 10, what=f"late create {name!r} applied")
    return dict(snapshot)


@pytest.mark.parametrize(
    ("then", "failure"),
    [
        ("disconnect", (httpx.RemoteProtocolError, httpx.ReadError)),
        ("hang", httpx.ReadTimeout),
    ],
)
async def test_unanswered_create_appears_after_the_delay(
    evs_sim: RunningSimulator, then: str, failure: Any
) -> None:
    volume = await evs_sim.admin.add_volume(size=7)
    await evs_sim.admin.set_faults([late(then)])
    async with evs_client(evs_sim) as client:
        sent = time.monotonic()
        with pytest.raises(failure):
            await client.post(
                "/cloudsnapshots",
                json=body(volume["id"], description="d", metadata={"k": "v"}),
                timeout=0.3,
            )
    assert await live(evs_sim) == []
    assert time.monotonic() - sent < LATE, "too slow to see the snapshot still missing"
    snapshot = await applied(evs_sim, "late")
    assert time.monotonic() - sent >= LATE
    assert (snapshot["volume_id"], snapshot["size"]) == (volume["id"], 7)
    assert (snapshot["description"], snapshot["metadata"]) == ("d", {"k": "v"})
    assert snapshot["status"] == "available"
    assert (await evs_sim.admin.calls())["create"] == 1


@pytest.mark.parametrize(
    ("then", "failure"), [("disconnect", EVSConnectionError), ("hang", EVSTimeoutError)]
)
async def test_the_operators_client_sees_a_retryable_failure_yet_the_snapshot_comes(
    evs_sim: RunningSimulator, then: str, failure: type[EVSError]
) -> None:
    volume = await evs_sim.admin.add_volume()
    await evs_sim.admin.set_faults([late(then)])
    async with operator_client(evs_sim, timeout=0.3) as client:
        sent = time.monotonic()
        with pytest.raises(failure) as caught:
            await client.create_snapshot(
                CreateSnapshotRequest(volume_id=volume["id"], name="late", metadata={"k": "v"})
            )
        assert caught.value.retryable
        assert await live(evs_sim) == []
        assert time.monotonic() - sent < LATE, "too slow to see the snapshot still missing"
        snapshot = await applied(evs_sim, "late")
        shown = await client.show_snapshot(snapshot["id"])
    assert (shown.volume_id, shown.metadata) == (volume["id"], {"k": "v"})


async def test_a_refusal_at_arrival_is_answered_and_never_applied(
    evs_sim: RunningSimulator,
) -> None:
    volume = await evs_sim.admin.add_volume()
    await evs_sim.admin.set_faults([late()])
    async with evs_client(evs_sim) as client:
        missing = await client.post("/cloudsnapshots", json=body(MISSING, "refused"))
        assert_evs_error(missing, 404, "EVS.5404", "itemNotFound")
        reserved = body(volume["id"], "refused", metadata={"__system__x": "y"})
        assert_evs_error(await client.post("/cloudsnapshots", json=reserved), 400, "EVS.5400")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/cloudsnapshots", json=body(volume["id"], "after"))
    await applied(evs_sim, "after")
    assert [s["name"] for s in await live(evs_sim)] == ["after"]


async def test_the_checks_run_again_when_the_create_is_applied(
    evs_sim: RunningSimulator,
) -> None:
    full, other = await evs_sim.admin.add_volume(), await evs_sim.admin.add_volume()
    async with evs_client(evs_sim) as client:
        for index in range(MAX_SNAPSHOTS_PER_VOLUME - 1):
            created = await client.post("/cloudsnapshots", json=body(full["id"], f"s{index}"))
            assert created.status_code == 202
        await evs_sim.admin.set_faults([late(count=1)])
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/cloudsnapshots", json=body(full["id"], "over quota by then"))
        last = await client.post("/cloudsnapshots", json=body(full["id"], "last"))
        assert last.status_code == 202, "the late create took the quota too early"
        await evs_sim.admin.set_faults([late(count=1)])
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/cloudsnapshots", json=body(other["id"], "witness"))
    await applied(evs_sim, "witness")
    names = [s["name"] for s in await live(evs_sim)]
    assert len(names) == MAX_SNAPSHOTS_PER_VOLUME + 1
    assert "over quota by then" not in names


async def test_count_and_rate_pick_which_creates_go_late(evs_sim: RunningSimulator) -> None:
    volumes = [await evs_sim.admin.add_volume() for _ in range(2)]
    await evs_sim.admin.set_faults([late(rate=0.5)], seed=3)
    outcomes: list[str] = []
    async with evs_client(evs_sim) as client:
        for index in range(8):
            try:
                response = await client.post(
                    "/cloudsnapshots", json=body(volumes[index % 2]["id"], f"s{index}")
                )
                outcomes.append(str(response.status_code))
            except (httpx.RemoteProtocolError, httpx.ReadError):
                outcomes.append("cut")
        assert set(outcomes) == {"202", "cut"}
        await evs_sim.admin.set_faults([late(count=1)])
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/cloudsnapshots", json=body(volumes[0]["id"], "counted"))
        answered = await client.post("/cloudsnapshots", json=body(volumes[1]["id"], "answered"))
        assert answered.status_code == 202
    await applied(evs_sim, "counted")
    assert len(await live(evs_sim)) == 10
    assert (await evs_sim.admin.calls())["create"] == 10


async def test_reset_drops_pending_late_creates(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume(id="11111111-2222-4333-8444-555555555555")
    await evs_sim.admin.set_faults([late()])
    async with evs_client(evs_sim) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/cloudsnapshots", json=body(volume["id"], "before reset"))
        await evs_sim.admin.reset()
        volume = await evs_sim.admin.add_volume(id=volume["id"])
        await evs_sim.admin.set_faults([late()])
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/cloudsnapshots", json=body(volume["id"], "after reset"))
    await applied(evs_sim, "after reset")
    assert [s["name"] for s in await live(evs_sim)] == ["after reset"]


async def test_a_hanging_late_create_ends_when_the_server_stops() -> None:
    async with running_simulator() as sim:
        volume = await sim.admin.add_volume()
        await sim.admin.set_faults([late("hang")])
        client = evs_client(sim)
        pending = asyncio.create_task(
            client.post("/cloudsnapshots", json=body(volume["id"]), timeout=30)
        )

        async def arrived() -> bool:
            return (await sim.admin.calls())["create"] == 1

        await eventually(arrived, timeout=10, what="the create to arrive")
    try:
        response = await asyncio.wait_for(pending, timeout=10)
    finally:
        await client.aclose()
    assert_evs_error(response, 503, "EVS.5503")


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "late_apply"},
        {"kind": "late_apply", "operation": "delete"},
        {"kind": "late_apply", "operation": "create", "then": "answer"},
        {"kind": "late_apply", "operation": "create", "apply_after_seconds": -1},
    ],
)
async def test_bad_late_apply_rules_are_refused(
    evs_sim: RunningSimulator, rule: dict[str, Any]
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await evs_sim.admin.set_faults([rule])
    assert caught.value.response.status_code == 400
    if "operation" not in rule:
        assert "operations create, create_volume only" in caught.value.response.text
