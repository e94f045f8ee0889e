"""The client's disk and job calls against the simulator: a disk made from a snapshot under a
client token, its job, show, list by metadata, delete, and a rollback, as EVS answers them."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import EVSAPIError, EVSConnectionError
from cloudsnap.evs.models import CreateSnapshotRequest, CreateVolumeRequest, ListVolumesQuery
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.fixtures.simulator import operator_client
from tests.waiting import eventually

OWNER = "cloudsnap.io/restore-uid"


async def snapshot_of(client: EVSClient, volume_id: str) -> str:
    """A snapshot of the disk, once it is available."""
    snapshot = await client.create_snapshot(CreateSnapshotRequest(volume_id=volume_id))

    async def available() -> bool:
        return (await client.show_snapshot(snapshot.id)).status == "available"

    await eventually(available, timeout=10, what="the snapshot")
    return snapshot.id


def restore_of(snapshot_id: str, uid: str = "u-1", size: int = 10) -> CreateVolumeRequest:
    return CreateVolumeRequest(
        availability_zone="cn-north-4a",
        volume_type="SAS",
        size=size,
        snapshot_id=snapshot_id,
        name="restored",
        metadata={OWNER: uid},
    )


async def job_done(client: EVSClient, job_id: str) -> None:
    async def done() -> bool:
        return (await client.show_job(job_id)).status == "SUCCESS"

    await eventually(done, timeout=10, what=f"job {job_id}")


async def test_a_disk_from_a_snapshot_through_its_whole_life(
    sim: RunningSimulator, client: EVSClient
) -> None:
    source = await sim.admin.add_volume(size=10)
    await sim.admin.write(source["id"])
    snapshot_id = await snapshot_of(client, source["id"])

    created = await client.create_volume(restore_of(snapshot_id, size=12), str(uuid.uuid4()))
    assert created.volume_ids == []
    job = await client.show_job(created.job_id)
    assert (job.job_id, job.status, job.job_type) == (created.job_id, "RUNNING", "createVolume")
    volume_id = job.entities.volume_id
    assert volume_id is not None
    assert (await client.show_volume(volume_id)).status == "creating"
    await job_done(client, created.job_id)

    volume = await client.show_volume(volume_id)
    assert (volume.status, volume.size, volume.snapshot_id) == ("available", 12, snapshot_id)
    assert (volume.availability_zone, volume.volume_type) == ("cn-north-4a", "SAS")
    assert (volume.name, volume.metadata) == ("restored", {OWNER: "u-1"})
    assert volume.created_at is not None
    assert volume.created_at.tzinfo is not None
    assert (await sim.admin.volume(volume_id))["content_version"] == 1

    page = await client.list_volumes(ListVolumesQuery(metadata={OWNER: "u-1"}))
    assert (page.count, [v.id for v in page.volumes], page.next_offset) == (1, [volume_id], None)
    assert (await client.list_volumes(ListVolumesQuery(metadata={OWNER: "u-2"}))).count == 0

    delete_job = await client.delete_volume(volume_id)
    assert (await client.show_job(delete_job)).job_type == "deleteVolume"
    await job_done(client, delete_job)
    with pytest.raises(EVSAPIError) as missing:
        await client.show_volume(volume_id)
    assert (missing.value.status_code, missing.value.code) == (404, "EVS.5404")
    assert (await sim.admin.calls())["create_volume"] == 1


async def test_the_client_token_goes_on_the_wire_and_makes_a_repeat_harmless(
    sim: RunningSimulator, client: EVSClient
) -> None:
    source = await sim.admin.add_volume()
    snapshot_id = await snapshot_of(client, source["id"])
    token = str(uuid.uuid4())
    first = await client.create_volume(restore_of(snapshot_id), token)
    again = await client.create_volume(restore_of(snapshot_id), token)
    assert again == first
    assert len(await sim.admin.volumes()) == 2
    with pytest.raises(EVSAPIError) as conflict:
        await client.create_volume(restore_of(snapshot_id, uid="u-2"), token)
    assert (conflict.value.code, conflict.value.retryable) == ("EVS.2219", False)


async def test_a_lost_create_answer_is_retryable_and_its_retry_finds_the_same_disk(
    sim: RunningSimulator, client: EVSClient
) -> None:
    source = await sim.admin.add_volume()
    snapshot_id = await snapshot_of(client, source["id"])
    await sim.admin.set_faults(
        [{"kind": "lost_response", "operation": "create_volume", "count": 1}]
    )
    token = str(uuid.uuid4())
    with pytest.raises(EVSConnectionError) as lost:
        await client.create_volume(restore_of(snapshot_id), token)
    assert lost.value.retryable
    created = await client.create_volume(restore_of(snapshot_id), token)
    made = [v["id"] for v in await sim.admin.volumes() if v["id"] != source["id"]]
    assert made == [(await client.show_job(created.job_id)).entities.volume_id]


async def test_the_disk_id_comes_back_at_once_when_asked_for(
    sim: RunningSimulator, client: EVSClient
) -> None:
    source = await sim.admin.add_volume()
    snapshot_id = await snapshot_of(client, source["id"])
    request = restore_of(snapshot_id)
    request.metadata["create_for_volume_id"] = "true"
    created = await client.create_volume(request, str(uuid.uuid4()))
    (volume_id,) = created.volume_ids
    assert (await client.show_job(created.job_id)).entities.volume_id == volume_id


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"size": 5}, "EVS.1010"),
        ({"availability_zone": "cn-north-4b"}, "EVS.2054"),
        ({"availability_zone": "nowhere"}, "EVS.1036"),
        ({"volume_type": "SSD"}, "EVS.2096"),
    ],
)
async def test_bad_restores_are_typed_refusals_not_to_be_retried(
    sim: RunningSimulator, client: EVSClient, change: dict[str, object], code: str
) -> None:
    source = await sim.admin.add_volume()
    snapshot_id = await snapshot_of(client, source["id"])
    request = restore_of(snapshot_id).model_copy(update=change)
    with pytest.raises(EVSAPIError) as refused:
        await client.create_volume(request, str(uuid.uuid4()))
    assert (refused.value.status_code, refused.value.code) == (400, code)
    assert not refused.value.retryable
    assert refused.value.request_id


async def test_a_disk_with_snapshots_is_not_deleted(
    sim: RunningSimulator, client: EVSClient
) -> None:
    source = await sim.admin.add_volume()
    await snapshot_of(client, source["id"])
    with pytest.raises(EVSAPIError) as refused:
        await client.delete_volume(source["id"])
    assert (refused.value.code, refused.value.retryable) == ("EVS.5400", False)
    assert (await client.show_volume(source["id"])).status == "available"


async def test_list_volumes_pages_by_offset(sim: RunningSimulator, client: EVSClient) -> None:
    for _ in range(3):
        await sim.admin.add_volume(metadata={OWNER: "u-1"})
    first = await client.list_volumes(ListVolumesQuery(metadata={OWNER: "u-1"}, limit=2))
    assert (first.count, len(first.volumes), first.next_offset) == (3, 2, 2)
    rest = await client.list_volumes(
        ListVolumesQuery(metadata={OWNER: "u-1"}, limit=2, offset=first.next_offset)
    )
    assert (len(rest.volumes), rest.next_offset) == (1, None)
    assert {v.id for v in first.volumes + rest.volumes} == {
        v["id"] for v in await sim.admin.volumes()
    }


async def test_rollback_brings_the_snapshots_data_back_onto_its_disk(
    sim: RunningSimulator, client: EVSClient
) -> None:
    source = await sim.admin.add_volume()
    snapshot_id = await snapshot_of(client, source["id"])
    await sim.admin.write(source["id"])
    assert await client.rollback_snapshot(snapshot_id, source["id"]) == source["id"]
    assert (await client.show_volume(source["id"])).status == "rollbacking"
    assert (await client.show_snapshot(snapshot_id)).status == "rollbacking"

    async def rolled_back() -> bool:
        return (await client.show_volume(source["id"])).status == "available"

    await eventually(rolled_back, timeout=10, what="the rollback")
    assert (await sim.admin.volume(source["id"]))["content_version"] == 0
    with pytest.raises(EVSAPIError) as refused:
        await client.rollback_snapshot(snapshot_id, (await sim.admin.add_volume())["id"])
    assert (refused.value.code, refused.value.retryable) == ("EVS.5400", False)


async def test_an_unknown_job_is_a_refusal() -> None:
    async with running_simulator() as sim, operator_client(sim) as client:
        with pytest.raises(EVSAPIError) as unknown:
            await client.show_job("ff808081692a62c70169b4dcf9514264")
        assert (unknown.value.status_code, unknown.value.code) == (400, "Common.0011")


async def test_requests_on_the_wire() -> None:
    """Versions and paths of each call, the token header, the body and the metadata filter."""
    seen: list[httpx.Request] = []
    volume = {"id": "v", "status": "available", "size": 10, "metadata": None, "name": None}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method in ("POST", "DELETE"):
            return httpx.Response(202, json={"job_id": "j"})
        if "/jobs/" in request.url.path:
            return httpx.Response(200, json={"job_id": "j", "status": "INIT", "entities": None})
        if request.url.path.endswith("/detail"):
            return httpx.Response(200, json={"count": 1, "volumes": [volume]})
        return httpx.Response(200, json={"volume": volume})

    transport = httpx.MockTransport(answer)
    async with running_simulator() as sim, operator_client(sim, transport=transport) as evs:
        request = CreateVolumeRequest(availability_zone="az", volume_type="SAS", size=10)
        assert (await evs.create_volume(request, "tok")).job_id == "j"
        assert (await evs.show_job("j/../x")).entities.volume_id is None
        shown = await evs.show_volume("v")
        assert (shown.name, shown.metadata) == ("", {})
        await evs.list_volumes(ListVolumesQuery(metadata={OWNER: "ü"}, status="available"))
        assert await evs.delete_volume("v") == "j"
        project = sim.project_id

    assert [(r.method, r.url.raw_path.decode().split("?")[0]) for r in seen] == [
        ("POST", f"/v2.1/{project}/cloudvolumes"),
        ("GET", f"/v1/{project}/jobs/j%2F..%2Fx"),
        ("GET", f"/v2/{project}/cloudvolumes/v"),
        ("GET", f"/v2/{project}/cloudvolumes/detail"),
        ("DELETE", f"/v2/{project}/cloudvolumes/v"),
    ]
    assert seen[0].headers["X-Client-Token"] == "tok"
    assert "x-client-token" not in {name.lower() for r in seen[1:] for name in r.headers}
    assert json.loads(seen[0].content) == {
        "volume": {"availability_zone": "az", "volume_type": "SAS", "size": 10, "metadata": {}}
    }
    assert dict(seen[3].url.params) == {"status": "available", "metadata": f'{{"{OWNER}":"ü"}}'}
