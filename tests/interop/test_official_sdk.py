"""The official SDK (huaweicloudsdkevs) as an outside client of the simulator.

The SDK is synchronous (requests), so each call runs in a worker thread while the simulator serves
on this test's event loop. Every success means the simulator accepted the SDK's own signature.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions as sdk_errors
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkevs.v2 import (
    CreateSnapshotOption,
    CreateSnapshotRequest,
    CreateSnapshotRequestBody,
    CreateVolumeOption,
    CreateVolumeRequest,
    CreateVolumeRequestBody,
    DeleteSnapshotRequest,
    DeleteVolumeRequest,
    EvsClient,
    ListSnapshotsRequest,
    ListVolumesRequest,
    RollbackSnapshotOption,
    RollbackSnapshotRequest,
    RollbackSnapshotRequestBody,
    ShowJobRequest,
    ShowSnapshotRequest,
    ShowVolumeRequest,
    UpdateSnapshotOption,
    UpdateSnapshotRequest,
    UpdateSnapshotRequestBody,
)

from evs_simulator.faults import OPERATIONS
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.waiting import eventually

T = TypeVar("T")
MISSING = "00000000-0000-4000-8000-000000000000"


def sdk_client(sim: RunningSimulator, timeout: float = 10.0) -> Any:
    config = HttpConfig.get_default_config()
    config.timeout = timeout
    return (
        EvsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(sim.access_key, sim.secret_key, sim.project_id))
        .with_endpoints([sim.endpoint])
        .build()
    )


async def call(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def create_request(volume_id: str, **fields: Any) -> CreateSnapshotRequest:
    option = CreateSnapshotOption(volume_id=volume_id, **fields)
    return CreateSnapshotRequest(body=CreateSnapshotRequestBody(snapshot=option))


async def test_sdk_drives_all_six_operations(evs_sim: RunningSimulator) -> None:
    client = sdk_client(evs_sim)
    volume = await evs_sim.admin.add_volume(size=16)
    created = await call(
        client.create_snapshot,
        create_request(
            volume["id"], name="sdk snap é", description="from SDK", metadata={"k": "v"}
        ),
    )
    assert created.status_code == 202
    snap = created.snapshot
    assert (snap.status, snap.size, snap.volume_id) == ("creating", 16, volume["id"])

    shown = await call(client.show_snapshot, ShowSnapshotRequest(snapshot_id=snap.id))
    assert shown.snapshot.id == snap.id
    assert shown.snapshot.metadata == {"k": "v"}
    assert shown.snapshot.os_extended_snapshot_attributesproject_id == evs_sim.project_id

    listed = await call(
        client.list_snapshots,
        ListSnapshotsRequest(name="sdk snap é", volume_id=volume["id"], limit=10, offset=0),
    )
    assert listed.count == 1
    assert [s.id for s in listed.snapshots] == [snap.id]
    assert listed.snapshots[0].service_type == "EVS"

    updated = await call(
        client.update_snapshot,
        UpdateSnapshotRequest(
            snapshot_id=snap.id,
            body=UpdateSnapshotRequestBody(snapshot=UpdateSnapshotOption(name="renamed")),
        ),
    )
    assert updated.snapshot.name == "renamed"

    rolled = await call(
        client.rollback_snapshot,
        RollbackSnapshotRequest(
            snapshot_id=snap.id,
            body=RollbackSnapshotRequestBody(
                rollback=RollbackSnapshotOption(volume_id=volume["id"])
            ),
        ),
    )
    assert rolled.status_code == 202
    assert rolled.rollback.volume_id == volume["id"]

    deleted = await call(client.delete_snapshot, DeleteSnapshotRequest(snapshot_id=snap.id))
    assert deleted.status_code == 202
    (record,) = await evs_sim.admin.snapshots()
    assert record["deleted"] is True
    assert await evs_sim.admin.calls() == dict.fromkeys(OPERATIONS, 0) | dict.fromkeys(
        ["create", "show", "list", "update", "delete", "rollback"], 1
    )


@pytest.mark.parametrize(
    ("operation", "request_obj"),
    [
        ("show_snapshot", ShowSnapshotRequest(snapshot_id=MISSING)),
        ("delete_snapshot", DeleteSnapshotRequest(snapshot_id=MISSING)),
        (
            "update_snapshot",
            UpdateSnapshotRequest(
                snapshot_id=MISSING,
                body=UpdateSnapshotRequestBody(snapshot=UpdateSnapshotOption(name="x")),
            ),
        ),
        (
            "rollback_snapshot",
            RollbackSnapshotRequest(
                snapshot_id=MISSING,
                body=RollbackSnapshotRequestBody(
                    rollback=RollbackSnapshotOption(volume_id=MISSING)
                ),
            ),
        ),
        ("create_snapshot", create_request(MISSING)),
    ],
)
async def test_sdk_sees_404_as_client_request_exception(
    evs_sim: RunningSimulator, operation: str, request_obj: Any
) -> None:
    client = sdk_client(evs_sim)
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(getattr(client, operation), request_obj)
    assert (caught.value.status_code, caught.value.error_code) == (404, "EVS.5404")
    assert caught.value.request_id


@pytest.mark.parametrize(
    ("request_obj", "code"),
    [
        (create_request("not-a-uuid"), "EVS.1002"),
        (create_request(MISSING, name="x" * 256), "EVS.5400"),
        (create_request(MISSING, metadata={"__system__cmkid": "k"}), "EVS.5400"),
    ],
)
async def test_sdk_sees_validation_errors(
    evs_sim: RunningSimulator, request_obj: Any, code: str
) -> None:
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(sdk_client(evs_sim).create_snapshot, request_obj)
    assert (caught.value.status_code, caught.value.error_code) == (400, code)


async def test_sdk_list_limit_above_1000(evs_sim: RunningSimulator) -> None:
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(sdk_client(evs_sim).list_snapshots, ListSnapshotsRequest(limit=1001))
    assert caught.value.error_code == "EVS.1023"


async def test_sdk_in_use_without_force(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume(status="in-use")
    client = sdk_client(evs_sim)
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(client.create_snapshot, create_request(volume["id"]))
    assert caught.value.status_code == 400
    assert "current status is: in-use" in caught.value.error_msg
    assert (await call(client.create_snapshot, create_request(volume["id"], force=True))).snapshot


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "EVS.5500"), (503, "EVS.5503")],
)
async def test_sdk_sees_injected_server_errors(
    evs_sim: RunningSimulator, status: int, code: str
) -> None:
    await evs_sim.admin.set_faults([{"operation": "list", "kind": "error", "status": status}])
    with pytest.raises(sdk_errors.ServerResponseException) as caught:
        await call(sdk_client(evs_sim).list_snapshots, ListSnapshotsRequest())
    assert (caught.value.status_code, caught.value.error_code) == (status, code)


@pytest.mark.parametrize(
    ("operation", "request_obj"),
    [
        ("delete_snapshot", DeleteSnapshotRequest(snapshot_id=MISSING)),
        (
            "update_snapshot",
            UpdateSnapshotRequest(
                snapshot_id=MISSING,
                body=UpdateSnapshotRequestBody(snapshot=UpdateSnapshotOption(name="renamed")),
            ),
        ),
    ],
)
async def test_sdk_reads_an_injected_refusal_as_evs_code_and_message(
    evs_sim: RunningSimulator, operation: str, request_obj: Any
) -> None:
    """A refusal fault answers in EVS's error body: the SDK finds the chosen code and message."""
    message = "snapshot is in use by a disk being created from it"
    fault = {"kind": "refusal", "status": 400, "code": "EVS.1047", "message": message}
    await evs_sim.admin.set_faults([{"operation": operation.removesuffix("_snapshot"), **fault}])
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(getattr(sdk_client(evs_sim), operation), request_obj)
    refused = caught.value
    assert (refused.status_code, refused.error_code) == (400, "EVS.1047")
    assert refused.error_msg == message
    assert refused.request_id


async def test_sdk_sees_throttling(evs_sim: RunningSimulator) -> None:
    """The SDK's own retry layer handles 429 and reports the bare status, not the APIG code."""
    await evs_sim.admin.set_faults([{"operation": "list", "kind": "error", "status": 429}])
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(sdk_client(evs_sim).list_snapshots, ListSnapshotsRequest())
    assert (caught.value.status_code, caught.value.error_code) == (429, "429")
    assert (await evs_sim.admin.calls())["list"] == 1


async def test_sdk_rejected_with_wrong_secret(evs_sim: RunningSimulator) -> None:
    config = HttpConfig.get_default_config()
    config.timeout = 10
    client = (
        EvsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(evs_sim.access_key, "wrong-secret", evs_sim.project_id))
        .with_endpoints([evs_sim.endpoint])
        .build()
    )
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        await call(client.list_snapshots, ListSnapshotsRequest())
    assert (caught.value.status_code, caught.value.error_code) == (401, "APIG.0301")


async def test_sdk_times_out_on_a_hang(evs_sim: RunningSimulator) -> None:
    await evs_sim.admin.set_faults([{"operation": "show", "kind": "hang"}])
    with pytest.raises(sdk_errors.ConnectionException, match="Read timed out"):
        await call(
            sdk_client(evs_sim, timeout=0.5).show_snapshot, ShowSnapshotRequest(snapshot_id=MISSING)
        )


async def test_sdk_lost_response_still_creates(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume()
    await evs_sim.admin.set_faults([{"operation": "create", "kind": "lost_response"}])
    with pytest.raises(sdk_errors.ConnectionException):
        await call(sdk_client(evs_sim).create_snapshot, create_request(volume["id"]))
    (made,) = await evs_sim.admin.snapshots()
    assert made["volume_id"] == volume["id"]


def volume_request(snapshot_id: str, token: str | None, **fields: Any) -> CreateVolumeRequest:
    option = CreateVolumeOption(
        availability_zone="cn-north-4a",
        volume_type="SAS",
        size=fields.pop("size", 10),
        snapshot_id=snapshot_id,
        **fields,
    )
    return CreateVolumeRequest(x_client_token=token, body=CreateVolumeRequestBody(volume=option))


async def sdk_snapshot(client: Any, volume_id: str) -> str:
    created = await call(client.create_snapshot, create_request(volume_id))
    return str(created.snapshot.id)


async def test_sdk_restores_a_disk_from_a_snapshot_and_rolls_one_back() -> None:
    async with running_simulator(volume_create_seconds=0.2, volume_delete_seconds=0.2) as sim:
        client = sdk_client(sim)
        source = await sim.admin.add_volume(size=10)
        await sim.admin.write(source["id"])
        snapshot_id = await sdk_snapshot(client, source["id"])
        created = await call(
            client.create_volume,
            volume_request(
                snapshot_id, str(uuid.uuid4()), size=20, name="sdk", metadata={"o": "u-1"}
            ),
        )
        assert created.status_code == 202

        async def job_status(job_id: str) -> Any:
            return await call(client.show_job, ShowJobRequest(job_id=job_id))

        async def succeeded(job_id: str) -> bool:
            return bool((await job_status(job_id)).status == "SUCCESS")

        await eventually(lambda: succeeded(created.job_id), timeout=10, what="the create job")
        job = await job_status(created.job_id)
        assert (job.job_type, job.entities.size, job.entities.name) == ("createVolume", 20, "sdk")
        volume_id = job.entities.volume_id

        shown = await call(client.show_volume, ShowVolumeRequest(volume_id=volume_id))
        disk = shown.volume
        assert (disk.status, disk.size, disk.snapshot_id) == ("available", 20, snapshot_id)
        assert disk.os_vol_tenant_attrtenant_id == sim.project_id
        assert (await sim.admin.volume(volume_id))["content_version"] == 1

        listed = await call(
            client.list_volumes, ListVolumesRequest(metadata=json.dumps({"o": "u-1"}), limit=5)
        )
        assert (listed.count, [v.id for v in listed.volumes]) == (1, [volume_id])

        await sim.admin.write(source["id"])
        rolled = await call(
            client.rollback_snapshot,
            RollbackSnapshotRequest(
                snapshot_id=snapshot_id,
                body=RollbackSnapshotRequestBody(
                    rollback=RollbackSnapshotOption(volume_id=source["id"])
                ),
            ),
        )
        assert rolled.rollback.volume_id == source["id"]
        assert (await sim.admin.volume(source["id"]))["content_version"] == 1

        deleted = await call(client.delete_volume, DeleteVolumeRequest(volume_id=volume_id))
        assert deleted.status_code == 202
        await eventually(lambda: succeeded(deleted.job_id), timeout=10, what="the delete job")
        with pytest.raises(sdk_errors.ClientRequestException) as gone:
            await call(client.show_volume, ShowVolumeRequest(volume_id=volume_id))
        assert (gone.value.status_code, gone.value.error_code) == (404, "EVS.5404")


async def test_sdk_client_token_makes_one_disk_of_two_requests(evs_sim: RunningSimulator) -> None:
    client = sdk_client(evs_sim)
    source = await evs_sim.admin.add_volume()
    snapshot_id = await sdk_snapshot(client, source["id"])
    token = str(uuid.uuid4())
    first = await call(client.create_volume, volume_request(snapshot_id, token))
    again = await call(client.create_volume, volume_request(snapshot_id, token))
    assert again.job_id == first.job_id
    assert len(await evs_sim.admin.volumes()) == 2
    with pytest.raises(sdk_errors.ClientRequestException) as conflict:
        await call(client.create_volume, volume_request(snapshot_id, token, size=11))
    assert conflict.value.error_code == "EVS.2219"


@pytest.mark.parametrize(
    ("fields", "code"),
    [({"size": 5}, "EVS.1010"), ({"availability_zone": "nowhere"}, "EVS.1036")],
)
async def test_sdk_sees_disk_create_refusals(
    evs_sim: RunningSimulator, fields: dict[str, Any], code: str
) -> None:
    client = sdk_client(evs_sim)
    source = await evs_sim.admin.add_volume()
    snapshot_id = await sdk_snapshot(client, source["id"])
    request = volume_request(snapshot_id, None, size=fields.pop("size", 10))
    for key, value in fields.items():
        setattr(request.body.volume, key, value)
    with pytest.raises(sdk_errors.ClientRequestException) as refused:
        await call(client.create_volume, request)
    assert (refused.value.status_code, refused.value.error_code) == (400, code)
    assert refused.value.request_id


async def test_sdk_unknown_job(evs_sim: RunningSimulator) -> None:
    with pytest.raises(sdk_errors.ClientRequestException) as unknown:
        await call(sdk_client(evs_sim).show_job, ShowJobRequest(job_id="ff80808169"))
    assert (unknown.value.status_code, unknown.value.error_code) == (400, "Common.0011")
