"""Disks made from snapshots, EVS's job API, disk show/list/delete, rollback, and the content
versions that tell which data a restore or rollback brought back."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from evs_simulator.config import SimulatorConfig
from evs_simulator.errors import SimError
from evs_simulator.state import CLIENT_TOKEN_SECONDS, Store
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.simulator.clock import FakeClock
from tests.simulator.signed import assert_evs_error, evs_client, evs_query
from tests.waiting import eventually

MISSING = "00000000-0000-4000-8000-000000000000"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JOB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ZONE = "cn-north-4a"


def spec(snapshot_id: str | None, size: int = 10, **fields: Any) -> dict[str, Any]:
    """A disk create body: zone and type of the admin API's default disk."""
    volume = {"availability_zone": ZONE, "volume_type": "SAS", "size": size, **fields}
    if snapshot_id is not None:
        volume["snapshot_id"] = snapshot_id
    return {"volume": volume}


async def create_volume(
    client: httpx.AsyncClient, body: Any, token: str | None = None
) -> httpx.Response:
    """POST /v2.1/{project}/cloudvolumes (the client's base URL is /v2/{project})."""
    headers = {"X-Client-Token": token} if token is not None else {}
    return await client.post(_v(client, "v2.1", "cloudvolumes"), json=body, headers=headers)


async def job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(_v(client, "v1", f"jobs/{job_id}"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _v(client: httpx.AsyncClient, version: str, path: str) -> str:
    base = str(client.base_url).rstrip("/")
    return f"{base.rsplit('/v2/', 1)[0]}/{version}/{base.rsplit('/', 1)[1]}/{path}"


async def snapshot_of(client: httpx.AsyncClient, volume_id: str) -> str:
    body = {"snapshot": {"volume_id": volume_id, "force": True}}
    response = await client.post("/cloudsnapshots", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["snapshot"]["id"])


async def disk_count(sim: RunningSimulator) -> int:
    return len(await sim.admin.volumes())


async def test_a_disk_from_a_snapshot_is_made_by_a_job_and_carries_the_snapshots_data() -> None:
    async with (
        running_simulator(volume_create_seconds=0.3) as sim,
        evs_client(sim) as client,
    ):
        source = await sim.admin.add_volume(size=20, volume_type="SSD")
        await sim.admin.write(source["id"])
        snapshot_id = await snapshot_of(client, source["id"])
        await sim.admin.write(source["id"])
        body = spec(
            snapshot_id,
            size=30,
            volume_type="SSD",
            name="restored",
            description="from a snapshot",
            metadata={"cloudsnap.io/restore-uid": "u-1"},
        )
        response = await create_volume(client, body, str(uuid.uuid4()))
        assert response.status_code == 202, response.text
        assert list(response.json()) == ["job_id"]
        job_id = response.json()["job_id"]
        assert JOB_ID.match(job_id)
        running = await job(client, job_id)
        assert (running["status"], running["job_type"]) == ("RUNNING", "createVolume")
        assert JOB_TIME.match(running["begin_time"])
        volume_id = running["entities"]["volume_id"]
        shown = (await client.get(f"/cloudvolumes/{volume_id}")).json()["volume"]
        assert shown["status"] == "creating"

        async def succeeded() -> bool:
            return bool((await job(client, job_id))["status"] == "SUCCESS")

        await eventually(succeeded, timeout=10, what="the create job to succeed")
        done = await job(client, job_id)
        assert done["entities"] == {
            "volume_id": volume_id,
            "size": 30,
            "name": "restored",
            "volume_type": "SSD",
        }
        assert JOB_TIME.match(done["end_time"])
        assert (done["error_code"], done["fail_reason"]) == (None, None)
        shown = (await client.get(f"/cloudvolumes/{volume_id}")).json()["volume"]
        assert shown["status"] == "available"
        assert (shown["size"], shown["availability_zone"], shown["volume_type"]) == (
            30,
            ZONE,
            "SSD",
        )
        assert (shown["snapshot_id"], shown["name"], shown["description"]) == (
            snapshot_id,
            "restored",
            "from a snapshot",
        )
        assert shown["metadata"] == {"cloudsnap.io/restore-uid": "u-1"}
        assert shown["os-vol-tenant-attr:tenant_id"] == sim.project_id
        # The snapshot was taken at version 1; the source disk has moved on to 2 since.
        assert (await sim.admin.volume(volume_id))["content_version"] == 1
        assert (await sim.admin.volume(source["id"]))["content_version"] == 2


async def test_create_for_volume_id_answers_the_disk_id_at_once(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    response = await create_volume(evs, spec(None, metadata={"create_for_volume_id": "true"}))
    assert response.status_code == 202, response.text
    (volume_id,) = response.json()["volume_ids"]
    assert (await job(evs, response.json()["job_id"]))["entities"]["volume_id"] == volume_id
    blank = await evs_sim.admin.volume(volume_id)
    assert (blank["content_version"], blank["snapshot_id"]) == (0, None)


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"availability_zone": "xx-nowhere-1a"}, 400, "EVS.1036"),
        ({"availability_zone": "cn-north-4b"}, 400, "EVS.2054"),
        ({"volume_type": "FLOPPY"}, 400, "EVS.1020"),
        ({"volume_type": "SSD"}, 400, "EVS.2096"),
        ({"size": 7}, 400, "EVS.1010"),
        ({"size": None}, 400, "EVS.1010"),
        ({"size": "10"}, 400, "EVS.1010"),
        ({"snapshot_id": MISSING}, 404, "EVS.5404"),
        ({"snapshot_id": "not-a-uuid"}, 400, "EVS.2045"),
        ({"count": 2}, 400, "EVS.5400"),
        ({"name": "n" * 256}, 400, "EVS.1003"),
        ({"description": "d" * 256}, 400, "EVS.1004"),
        ({"metadata": {"__system__encrypted": "1"}}, 400, "EVS.5400"),
    ],
)
async def test_bad_disk_creates_are_refused_and_make_nothing(
    evs_sim: RunningSimulator,
    evs: httpx.AsyncClient,
    change: dict[str, Any],
    status: int,
    code: str,
) -> None:
    source = await evs_sim.admin.add_volume(size=8)
    snapshot_id = await snapshot_of(evs, source["id"])
    body = spec(snapshot_id)
    body["volume"].update(change)
    key = "itemNotFound" if status == 404 else "error"
    assert_evs_error(await create_volume(evs, body), status, code, key)
    assert await disk_count(evs_sim) == 1


@pytest.mark.parametrize("body", [[], {"volume": "x"}, {"disk": {}}])
async def test_a_body_without_a_volume_object_is_evs_1009(
    evs: httpx.AsyncClient, body: Any
) -> None:
    assert_evs_error(await create_volume(evs, body), 400, "EVS.1009")


async def test_a_snapshot_still_creating_cannot_make_a_disk() -> None:
    async with running_simulator(create_seconds=60) as sim, evs_client(sim) as client:
        source = await sim.admin.add_volume()
        snapshot_id = await snapshot_of(client, source["id"])
        assert_evs_error(await create_volume(client, spec(snapshot_id)), 400, "EVS.2043")


async def test_a_snapshot_is_not_deleted_while_a_disk_is_being_made_from_it() -> None:
    async with running_simulator(volume_create_seconds=0.3) as sim, evs_client(sim) as client:
        source = await sim.admin.add_volume()
        snapshot_id = await snapshot_of(client, source["id"])
        assert (await create_volume(client, spec(snapshot_id))).status_code == 202
        refused = await client.delete(f"/cloudsnapshots/{snapshot_id}")
        message = assert_evs_error(refused, 400, "EVS.5400", "badRequest")
        assert message.startswith("Invalid snapshot")

        async def deleted() -> bool:
            response = await client.delete(f"/cloudsnapshots/{snapshot_id}")
            return response.status_code == 202

        await eventually(deleted, timeout=10, what="the delete once the disk is made")


async def test_the_disk_quota_counts_every_disk_and_follows_the_settings() -> None:
    async with running_simulator(volume_quota=2) as sim, evs_client(sim) as client:
        await sim.admin.add_volume()
        assert (await create_volume(client, spec(None))).status_code == 202
        assert_evs_error(await create_volume(client, spec(None)), 400, "EVS.1034")
        assert await disk_count(sim) == 2
        assert (await sim.admin.set_volume_quota(3))["volume_quota"] == 3
        assert (await create_volume(client, spec(None))).status_code == 202
        await sim.admin.set_volume_quota(None)
        assert (await create_volume(client, spec(None))).status_code == 202
        await sim.admin.reset()
        assert (await sim.admin.settings())["volume_quota"] == 2


async def test_the_same_client_token_and_body_answer_the_first_job_and_make_one_disk(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    token = str(uuid.uuid4())
    first = await create_volume(evs, spec(None, name="once"), token)
    again = await create_volume(evs, spec(None, name="once"), token)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert await disk_count(evs_sim) == 1
    other = await create_volume(evs, spec(None, name="once"), str(uuid.uuid4()))
    untokened = await create_volume(evs, spec(None, name="once"))
    assert len({first.json()["job_id"], other.json()["job_id"], untokened.json()["job_id"]}) == 3
    assert await disk_count(evs_sim) == 3


async def test_a_client_token_with_another_body_or_not_a_uuid_is_refused(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    token = str(uuid.uuid4())
    assert (await create_volume(evs, spec(None, name="a"), token)).status_code == 202
    assert_evs_error(await create_volume(evs, spec(None, name="b"), token), 400, "EVS.2219")
    assert_evs_error(await create_volume(evs, spec(None), "token-1"), 400, "EVS.2218")
    assert await disk_count(evs_sim) == 1


def test_a_client_token_is_honoured_for_8_hours_then_refused() -> None:
    clock = FakeClock()
    store = Store(SimulatorConfig(), clock=clock)
    token, body = str(uuid.uuid4()), spec(None)
    answer = store.create_volume(body, token)
    clock.advance(CLIENT_TOKEN_SECONDS)
    assert store.create_volume(body, token) == answer
    clock.advance(1)
    with pytest.raises(SimError) as refused:
        store.create_volume(body, token)
    assert (refused.value.status, refused.value.code) == (400, "EVS.2220")
    assert len(store.admin_volumes()) == 1


async def test_an_unknown_job_is_common_0011(evs: httpx.AsyncClient) -> None:
    assert_evs_error(await evs.get(_v(evs, "v1", "jobs/ff80808169")), 400, "Common.0011")


async def test_show_volume_refuses_a_malformed_id_and_misses_an_unknown_one(
    evs: httpx.AsyncClient,
) -> None:
    assert_evs_error(await evs.get("/cloudvolumes/not-a-uuid"), 400, "EVS.1002")
    assert_evs_error(await evs.get(f"/cloudvolumes/{MISSING}"), 404, "EVS.5404", "itemNotFound")


async def test_list_filters_by_metadata_name_and_status_newest_first(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    seed = await evs_sim.admin.add_volume(status="in-use")
    tagged = {"cloudsnap.io/restore-uid": "u-1", "team": "ü"}
    for name, metadata in [("a", tagged), ("b", {"team": "ü"}), ("c", tagged)]:
        assert (await create_volume(evs, spec(None, name=name, metadata=metadata))).is_success

    async def names(*pairs: tuple[str, Any]) -> list[str]:
        response = await evs.get(f"/cloudvolumes/detail?{evs_query(pairs)}")
        assert response.status_code == 200, response.text
        listing = response.json()
        assert listing["count"] == len(listing["volumes"])
        return [volume["name"] for volume in listing["volumes"]]

    wanted = json.dumps({"cloudsnap.io/restore-uid": "u-1"})
    assert await names(("metadata", wanted)) == ["c", "a"]
    assert await names(("metadata", json.dumps({"team": "ü"}))) == ["c", "b", "a"]
    assert await names(("metadata", wanted), ("name", "a")) == ["a"]
    assert await names(("status", "in-use")) == [seed["name"]]
    assert await names(("id", seed["id"])) == [seed["name"]]
    assert len(await names()) == 4
    for bad in ["{", "[]", '{"k": 1}']:
        response = await evs.get(f"/cloudvolumes/detail?{evs_query([('metadata', bad)])}")
        assert_evs_error(response, 400, "EVS.1058")


async def test_list_pages_by_offset_with_a_next_link(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    for _ in range(3):
        await evs_sim.admin.add_volume()
    first = (await evs.get("/cloudvolumes/detail?limit=2")).json()
    assert (first["count"], len(first["volumes"])) == (3, 2)
    (link,) = first["volumes_links"]
    assert link["rel"] == "next"
    assert "offset=2" in link["href"]
    last = (await evs.get("/cloudvolumes/detail?limit=2&offset=2")).json()
    assert (len(last["volumes"]), last["volumes_links"]) == (1, [])
    assert_evs_error(await evs.get("/cloudvolumes/detail?limit=1001"), 400, "EVS.1023")


async def test_delete_runs_a_job_and_the_disk_is_gone_after() -> None:
    async with (
        running_simulator(volume_delete_seconds=0.3) as sim,
        evs_client(sim) as client,
    ):
        volume = await sim.admin.add_volume()
        response = await client.delete(f"/cloudvolumes/{volume['id']}")
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        running = await job(client, job_id)
        assert (running["status"], running["job_type"]) == ("RUNNING", "deleteVolume")
        shown = (await client.get(f"/cloudvolumes/{volume['id']}")).json()["volume"]
        assert shown["status"] == "deleting"

        async def gone() -> bool:
            return (await client.get(f"/cloudvolumes/{volume['id']}")).status_code == 404

        await eventually(gone, timeout=10, what="the disk to be gone")
        assert (await job(client, job_id))["status"] == "SUCCESS"
        assert await sim.admin.volumes() == []


@pytest.mark.parametrize("status", ["in-use", "creating", "rollbacking", "deleting"])
async def test_delete_refuses_a_disk_in_use_or_busy(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, status: str
) -> None:
    volume = await evs_sim.admin.add_volume(status=status)
    assert_evs_error(await evs.delete(f"/cloudvolumes/{volume['id']}"), 400, "EVS.1046")
    assert (await evs_sim.admin.volume(volume["id"]))["status"] == status


async def test_delete_refuses_a_disk_with_snapshots_and_one_in_error_deleting(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    volume = await evs_sim.admin.add_volume()
    await snapshot_of(evs, volume["id"])
    response = await evs.delete(f"/cloudvolumes/{volume['id']}")
    assert "have snapshots" in assert_evs_error(response, 400, "EVS.5400", "badRequest")
    broken = await evs_sim.admin.add_volume(status="error_deleting")
    assert_evs_error(await evs.delete(f"/cloudvolumes/{broken['id']}"), 500, "EVS.2020")
    assert await disk_count(evs_sim) == 2


async def test_a_disk_that_breaks_while_being_made_fails_its_job() -> None:
    async with running_simulator(volume_create_seconds=60) as sim, evs_client(sim) as client:
        response = await create_volume(client, spec(None))
        job_id = response.json()["job_id"]
        volume_id = (await job(client, job_id))["entities"]["volume_id"]
        await sim.admin.set_volume(volume_id, status="error")
        failed = await job(client, job_id)
        assert (failed["status"], failed["error_code"]) == ("FAIL", "EVS.2024")
        assert (await client.get(f"/cloudvolumes/{volume_id}")).json()["volume"][
            "status"
        ] == "error"


async def test_rollback_shows_rollbacking_then_gives_the_disk_the_snapshots_data() -> None:
    async with running_simulator(rollback_seconds=0.3) as sim, evs_client(sim) as client:
        volume = await sim.admin.add_volume()
        snapshot_id = await snapshot_of(client, volume["id"])
        assert await sim.admin.write(volume["id"]) == 1
        body = {"rollback": {"volume_id": volume["id"]}}
        response = await client.post(f"/cloudsnapshots/{snapshot_id}/rollback", json=body)
        assert response.status_code == 202, response.text
        snap = (await client.get(f"/cloudsnapshots/{snapshot_id}")).json()["snapshot"]
        disk = (await client.get(f"/cloudvolumes/{volume['id']}")).json()["volume"]
        assert (snap["status"], disk["status"]) == ("rollbacking", "rollbacking")
        assert (await sim.admin.volume(volume["id"]))["content_version"] == 1

        async def rolled_back() -> bool:
            return bool((await sim.admin.volume(volume["id"]))["status"] == "available")

        await eventually(rolled_back, timeout=10, what="the rollback to finish")
        assert (await sim.admin.volume(volume["id"]))["content_version"] == 0
        snap = (await client.get(f"/cloudsnapshots/{snapshot_id}")).json()["snapshot"]
        assert snap["status"] == "available"


async def test_rollback_refusals_leave_disk_and_data_alone(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    volume = await evs_sim.admin.add_volume()
    other = await evs_sim.admin.add_volume()
    snapshot_id = await snapshot_of(evs, volume["id"])
    await evs_sim.admin.write(volume["id"])
    url = f"/cloudsnapshots/{snapshot_id}/rollback"

    async def rollback(volume_id: str) -> httpx.Response:
        return await evs.post(url, json={"rollback": {"volume_id": volume_id}})

    assert_evs_error(await rollback(other["id"]), 400, "EVS.5400")
    await evs_sim.admin.set_volume(volume["id"], status="in-use")
    assert_evs_error(await rollback(volume["id"]), 400, "EVS.5400", "badRequest")
    await evs_sim.admin.set_volume(volume["id"], status="available")
    await evs_sim.admin.set_snapshot_status(snapshot_id, "error")
    assert_evs_error(await rollback(volume["id"]), 400, "EVS.2043")
    assert (await evs_sim.admin.volume(volume["id"]))["content_version"] == 1
    await evs_sim.admin.set_snapshot_status(snapshot_id, "available")
    await evs_sim.admin.set_volume(volume["id"], status="error_rollbacking")
    assert (await rollback(volume["id"])).status_code == 202
    assert (await evs_sim.admin.volume(volume["id"]))["content_version"] == 0


async def test_a_snapshot_captures_the_version_its_disk_had_when_taken(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    volume = await evs_sim.admin.add_volume()
    versions = []
    for _ in range(3):
        versions.append(await evs_sim.admin.write(volume["id"]))
        await snapshot_of(evs, volume["id"])
    assert [snap["content_version"] for snap in await evs_sim.admin.snapshots()] == [1, 2, 3]
    assert versions == [1, 2, 3]


async def test_faults_and_throttling_apply_to_the_disk_calls(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults(
        [{"kind": "refusal", "operation": "create_volume", "code": "EVS.2071", "count": 1}]
    )
    assert_evs_error(await create_volume(evs, spec(None)), 400, "EVS.2071")
    assert await disk_count(evs_sim) == 0
    await evs_sim.admin.set_faults([{"kind": "error", "operation": "show_job", "status": 503}])
    assert_evs_error(await evs.get(_v(evs, "v1", "jobs/x")), 503, "EVS.5503")
    await evs_sim.admin.clear_faults()
    await evs_sim.admin.set_rate_limits({"list_volumes": (1, 1)})
    assert (await evs.get("/cloudvolumes/detail")).status_code == 200
    assert_evs_error(await evs.get("/cloudvolumes/detail"), 429, "APIG.0308", "gateway")
    assert (await evs_sim.admin.throttled())["list_volumes"] == 1
    calls = await evs_sim.admin.calls()
    assert (calls["create_volume"], calls["show_job"], calls["list_volumes"]) == (1, 1, 2)


async def test_a_lost_create_answer_retried_with_its_token_makes_one_disk(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults(
        [{"kind": "lost_response", "operation": "create_volume", "count": 1}]
    )
    token = str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        await create_volume(evs, spec(None), token)
    assert await disk_count(evs_sim) == 1
    retried = await create_volume(evs, spec(None), token)
    assert retried.status_code == 202
    assert await disk_count(evs_sim) == 1
    volume_id = (await job(evs, retried.json()["job_id"]))["entities"]["volume_id"]
    assert [volume["id"] for volume in await evs_sim.admin.volumes()] == [volume_id]


async def test_a_create_applied_after_its_answer_was_lost_is_what_its_retry_answers(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults(
        [
            {
                "kind": "late_apply",
                "operation": "create_volume",
                "apply_after_seconds": 0.2,
                "count": 1,
            }
        ]
    )
    token = str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        await create_volume(evs, spec(None), token)

    async def applied_late() -> bool:
        return await disk_count(evs_sim) == 1

    await eventually(applied_late, timeout=10, what="the late create")
    retried = await create_volume(evs, spec(None), token)
    assert retried.status_code == 202
    (volume,) = await evs_sim.admin.volumes()
    assert (await job(evs, retried.json()["job_id"]))["entities"]["volume_id"] == volume["id"]


async def test_a_late_applied_create_refused_on_arrival_is_answered(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults([{"kind": "late_apply", "operation": "create_volume"}])
    assert_evs_error(await create_volume(evs, spec(None, size=0)), 400, "EVS.1010")
    assert await disk_count(evs_sim) == 0
