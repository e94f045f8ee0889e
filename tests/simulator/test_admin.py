"""The ``/_sim/`` admin API, and that no EVS path can ever reach it."""

from __future__ import annotations

import httpx
import pytest

from evs_simulator.config import VolumeSeed
from evs_simulator.faults import OPERATIONS
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.simulator.signed import assert_evs_error, evs_client
from tests.simulator.wire import raw_request

SEED_VOLUME = "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize(
    "target",
    [
        "/v2/{pid}/../../_sim/reset",
        "/v2/{pid}/cloudsnapshots/../../../_sim/reset",
        "/v2/{pid}/%2e%2e/%2e%2e/_sim/reset",
        "/v2/{pid}/cloudsnapshots/..%2f..%2f..%2f_sim%2freset",
        "/v2/{pid}/cloudsnapshots/%2e%2e%2f%2e%2e%2f%2e%2e%2f_sim%2freset",
        "/v2/{pid}/cloudsnapshots/..;/..;/..;/_sim/reset",
        "/%5fsim/reset",
        "/%5Fsim/reset",
        "/_sim/./reset",
        "/_sim//reset",
        "//_sim/reset",
        "/_sim/%72eset",
        "/v2/..%5c..%5c_sim/reset",
        "{endpoint}/_sim/reset",
    ],
)
async def test_admin_is_unreachable_through_evs_paths(target: str) -> None:
    async with running_simulator(volumes=[f"{SEED_VOLUME}:5"]) as sim:
        await sim.admin.add_volume(size=3)
        status = await raw_request(
            sim.endpoint, "POST", target.format(pid=sim.project_id, endpoint=sim.endpoint)
        )
        assert status in (401, 404)
        assert len(await sim.admin.volumes()) == 2, "the reset went through"
        assert await raw_request(sim.endpoint, "POST", "/_sim/reset") == 200
        assert [v["id"] for v in await sim.admin.volumes()] == [SEED_VOLUME]


async def test_reset_restores_seed_disks_and_clears_everything() -> None:
    seeds = [VolumeSeed(SEED_VOLUME, 8, "in-use")]
    async with running_simulator(volumes=seeds) as sim, evs_client(sim) as client:
        body = {"snapshot": {"volume_id": SEED_VOLUME, "force": True}}
        assert (await client.post("/cloudsnapshots", json=body)).status_code == 202
        await sim.admin.add_volume()
        await sim.admin.set_faults([{"kind": "error", "status": 503}])
        await sim.admin.reset()
        assert (await client.get("/cloudsnapshots/detail")).json()["count"] == 0
        assert await sim.admin.snapshots() == []
        assert await sim.admin.calls() == dict.fromkeys(OPERATIONS, 0) | {"list": 1}
        (volume,) = await sim.admin.volumes()
        assert (volume["id"], volume["size"], volume["status"]) == (SEED_VOLUME, 8, "in-use")


async def test_ids_replay_from_the_seed() -> None:
    async def first_ids(seed: int) -> list[str]:
        async with running_simulator(seed=seed) as sim, evs_client(sim) as client:
            volume = await sim.admin.add_volume()
            body = {"snapshot": {"volume_id": volume["id"]}}
            made = [await client.post("/cloudsnapshots", json=body) for _ in range(2)]
            return [volume["id"], *(r.json()["snapshot"]["id"] for r in made)]

    assert await first_ids(3) == await first_ids(3)
    assert await first_ids(3) != await first_ids(4)


async def test_remove_snapshot_behind_the_back(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume()
    async with evs_client(evs_sim) as client:
        body = {"snapshot": {"volume_id": volume["id"]}}
        snap_id = (await client.post("/cloudsnapshots", json=body)).json()["snapshot"]["id"]
        await evs_sim.admin.remove_snapshot(snap_id)
        assert_evs_error(
            await client.get(f"/cloudsnapshots/{snap_id}"), 404, "EVS.5404", "itemNotFound"
        )
        assert (await client.get("/cloudsnapshots/detail")).json()["count"] == 0
    (record,) = await evs_sim.admin.snapshots()
    assert (record["id"], record["deleted"]) == (snap_id, True)


async def test_remove_volume_behind_the_back(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume()
    await evs_sim.admin.remove_volume(volume["id"])
    async with evs_client(evs_sim) as client:
        assert_evs_error(
            await client.get(f"/cloudvolumes/{volume['id']}"), 404, "EVS.5404", "itemNotFound"
        )
    assert await evs_sim.admin.volumes() == []


async def test_forced_status_stays_put(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume()
    async with evs_client(evs_sim) as client:
        body = {"snapshot": {"volume_id": volume["id"]}}
        snap_id = (await client.post("/cloudsnapshots", json=body)).json()["snapshot"]["id"]
        forced = await evs_sim.admin.set_snapshot_status(snap_id, "creating")
        assert forced["status"] == "creating"
        for _ in range(3):
            shown = (await client.get(f"/cloudsnapshots/{snap_id}")).json()["snapshot"]
            assert shown["status"] == "creating"


async def test_volume_admin_validation(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume(size=4, name="disk")
    assert (volume["size"], volume["name"], volume["status"]) == (4, "disk", "available")
    changed = await evs_sim.admin.set_volume(volume["id"], status="in-use", size=6)
    assert (changed["status"], changed["size"], changed["name"]) == ("in-use", 6, "disk")
    for call, status in [
        (evs_sim.admin.add_volume(id=volume["id"]), 409),
        (evs_sim.admin.add_volume(size=0), 400),
        (evs_sim.admin.add_volume(colour="red"), 400),
        (evs_sim.admin.set_volume(volume["id"], size="big"), 400),
        (evs_sim.admin.set_volume("missing", status="error"), 404),
        (evs_sim.admin.remove_snapshot("missing"), 404),
        (evs_sim.admin.remove_volume("missing"), 404),
    ]:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await call
        assert caught.value.response.status_code == status
    (unchanged,) = await evs_sim.admin.volumes()
    assert (unchanged["status"], unchanged["size"]) == ("in-use", 6)


async def test_secrets_stay_out_of_reprs() -> None:
    async with running_simulator(
        secret_key="sk-hidden-1", security_token="st-hidden-2", auth_token="at-hidden-3"
    ) as sim:
        shown = repr(sim)
    assert sim.access_key in shown
    for secret in ("sk-hidden-1", "st-hidden-2", "at-hidden-3"):
        assert secret not in shown
