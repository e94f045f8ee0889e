"""Snapshot lifecycle and the EVS rules on create, show, update, delete and rollback."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from evs_simulator.testing import RunningSimulator, running_simulator
from tests.simulator.signed import assert_evs_error, evs_client
from tests.waiting import eventually

EVS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
MISSING = "00000000-0000-4000-8000-000000000000"


async def create(client: httpx.AsyncClient, volume_id: str, **fields: Any) -> httpx.Response:
    return await client.post(
        "/cloudsnapshots", json={"snapshot": {"volume_id": volume_id, **fields}}
    )


async def status_of(client: httpx.AsyncClient, snapshot_id: str) -> str:
    response = await client.get(f"/cloudsnapshots/{snapshot_id}")
    return str(response.json()["snapshot"]["status"]) if response.status_code == 200 else "gone"


async def test_create_answers_202_creating_then_becomes_available() -> None:
    async with running_simulator(create_seconds=0.5) as sim, evs_client(sim) as client:
        volume = await sim.admin.add_volume(size=42)
        response = await create(
            client, volume["id"], name="n", description="d", metadata={"a": "b"}
        )
        assert response.status_code == 202
        snap = response.json()["snapshot"]
        assert snap["status"] == "creating"
        assert snap["size"] == 42
        assert snap["volume_id"] == volume["id"]
        assert (snap["name"], snap["description"], snap["metadata"]) == ("n", "d", {"a": "b"})
        assert EVS_TIME.match(snap["created_at"])
        assert snap["updated_at"] is None
        assert snap["os-extended-snapshot-attributes:project_id"] == sim.project_id
        assert snap["os-extended-snapshot-attributes:progress"] == "0%"
        await eventually(lambda: _is(client, snap["id"], "available"), timeout=10, what="available")
        shown = (await client.get(f"/cloudsnapshots/{snap['id']}")).json()["snapshot"]
        assert shown["os-extended-snapshot-attributes:progress"] == "100%"
        assert EVS_TIME.match(shown["updated_at"])
        assert shown["updated_at"] > shown["created_at"]


async def _is(client: httpx.AsyncClient, snapshot_id: str, status: str) -> bool:
    return await status_of(client, snapshot_id) == status


async def test_delete_goes_through_deleting_to_404() -> None:
    async with running_simulator(delete_seconds=0.5) as sim, evs_client(sim) as client:
        volume = await sim.admin.add_volume()
        snap_id = (await create(client, volume["id"])).json()["snapshot"]["id"]
        assert await status_of(client, snap_id) == "available"
        response = await client.delete(f"/cloudsnapshots/{snap_id}")
        assert (response.status_code, response.content) == (202, b"")
        assert await status_of(client, snap_id) == "deleting"
        await eventually(lambda: _is(client, snap_id, "gone"), timeout=10, what="gone")
        assert_evs_error(
            await client.get(f"/cloudsnapshots/{snap_id}"), 404, "EVS.5404", "itemNotFound"
        )
        (record,) = await sim.admin.snapshots()
        assert record["deleted"] is True


async def test_disk_in_error_during_creation_leaves_snapshot_in_error() -> None:
    async with running_simulator(create_seconds=0.3) as sim, evs_client(sim) as client:
        volume = await sim.admin.add_volume()
        snap_id = (await create(client, volume["id"])).json()["snapshot"]["id"]
        await sim.admin.set_volume(volume["id"], status="error")
        await eventually(lambda: _is(client, snap_id, "error"), timeout=10, what="error")
        assert (await client.delete(f"/cloudsnapshots/{snap_id}")).status_code == 202


@pytest.mark.parametrize(("field", "chars"), [("name", 64), ("description", 85)])
async def test_name_and_description_limited_as_huaweis_current_pages_say(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, field: str, chars: int
) -> None:
    """64 characters for a name, 85 for a description (docs/evs.md), and 255 UTF-8 bytes."""
    volume = await evs_sim.admin.add_volume()
    fits = "é" * chars  # two bytes each: within 255 bytes
    assert (await create(evs, volume["id"], **{field: fits})).status_code == 202
    too_long = "e" * (chars + 1)
    message = assert_evs_error(
        await create(evs, volume["id"], **{field: too_long}), 400, "EVS.5400"
    )
    assert f"longer than {chars} characters" in message
    too_heavy = "\N{GRINNING FACE}" * 64  # 256 bytes in 64 characters
    assert_evs_error(await create(evs, volume["id"], **{field: too_heavy}), 400, "EVS.5400")


async def test_backup_name_prefix_refused(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    volume = await evs_sim.admin.add_volume()
    response = await create(evs, volume["id"], name="autobk_snapshot_1")
    assert_evs_error(response, 400, "EVS.5400")


@pytest.mark.parametrize("key", ["__system__cmkid", "__system__encrypted", "__system__other"])
async def test_reserved_metadata_keys_refused(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, key: str
) -> None:
    volume = await evs_sim.admin.add_volume()
    response = await create(evs, volume["id"], metadata={key: "1"})
    assert key in assert_evs_error(response, 400, "EVS.5400")


@pytest.mark.parametrize("metadata", [{"k" * 256: "v"}, {"k": "v" * 256}, {"": "v"}])
async def test_oversized_or_empty_metadata_refused(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, metadata: dict[str, str]
) -> None:
    volume = await evs_sim.admin.add_volume()
    assert_evs_error(await create(evs, volume["id"], metadata=metadata), 400, "EVS.5400")


async def test_in_use_disk_needs_force(evs_sim: RunningSimulator, evs: httpx.AsyncClient) -> None:
    volume = await evs_sim.admin.add_volume(status="in-use")
    message = assert_evs_error(await create(evs, volume["id"]), 400, "EVS.5400", "badRequest")
    assert message == (
        f"Invalid volume: Volume {volume['id']} status must be available, "
        "but current status is: in-use."
    )
    assert (await create(evs, volume["id"], force=True)).status_code == 202


@pytest.mark.parametrize("status", ["error", "creating", "deleting"])
async def test_disk_in_other_status_refused_even_with_force(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, status: str
) -> None:
    volume = await evs_sim.admin.add_volume(status=status)
    response = await create(evs, volume["id"], force=True)
    assert status in assert_evs_error(response, 400, "EVS.5400", "badRequest")


async def test_seven_snapshots_per_disk(evs_sim: RunningSimulator, evs: httpx.AsyncClient) -> None:
    volume, other = await evs_sim.admin.add_volume(), await evs_sim.admin.add_volume()
    ids = [(await create(evs, volume["id"])).json()["snapshot"]["id"] for _ in range(7)]
    assert_evs_error(await create(evs, volume["id"]), 413, "EVS.5413")
    assert (await create(evs, other["id"])).status_code == 202
    assert (await evs.delete(f"/cloudsnapshots/{ids[0]}")).status_code == 202
    assert (await create(evs, volume["id"])).status_code == 202


async def test_unknown_disk_is_404(evs: httpx.AsyncClient) -> None:
    assert_evs_error(await create(evs, MISSING), 404, "EVS.5404", "itemNotFound")


async def test_invalid_volume_id_is_evs_1002(evs: httpx.AsyncClient) -> None:
    assert_evs_error(await create(evs, "not-a-uuid"), 400, "EVS.1002")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_invalid_snapshot_id_is_evs_2045(evs: httpx.AsyncClient, method: str) -> None:
    response = await evs.request(method, "/cloudsnapshots/not-a-uuid", json={"snapshot": {}})
    assert_evs_error(response, 400, "EVS.2045")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_snapshot_is_404_item_not_found(evs: httpx.AsyncClient, method: str) -> None:
    response = await evs.request(method, f"/cloudsnapshots/{MISSING}", json={"snapshot": {}})
    assert MISSING in assert_evs_error(response, 404, "EVS.5404", "itemNotFound")


@pytest.mark.parametrize("body", [b"", b"{not json", b"\xff\xfe"])
async def test_body_that_is_not_json_is_evs_1013(evs: httpx.AsyncClient, body: bytes) -> None:
    response = await evs.post(
        "/cloudsnapshots", content=body, headers={"Content-Type": "application/json"}
    )
    assert_evs_error(response, 400, "EVS.1013")


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"snapshot": "x"},
        {"snapshot": {}},
        {"snapshot": {"volume_id": 7}},
        {"snapshot": {"volume_id": MISSING, "force": "yes"}},
        {"snapshot": {"volume_id": MISSING, "name": 5}},
        {"snapshot": {"volume_id": MISSING, "metadata": {"a": 1}}},
    ],
)
async def test_badly_shaped_body_is_evs_1052(evs: httpx.AsyncClient, body: object) -> None:
    assert_evs_error(await evs.post("/cloudsnapshots", json=body), 400, "EVS.1052")


async def test_update_changes_name_and_description(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    volume = await evs_sim.admin.add_volume()
    snap = (await create(evs, volume["id"], name="old", description="d")).json()["snapshot"]
    response = await evs.put(f"/cloudsnapshots/{snap['id']}", json={"snapshot": {"name": "new"}})
    assert response.status_code == 200
    updated = response.json()["snapshot"]
    assert (updated["name"], updated["description"]) == ("new", "d")
    assert EVS_TIME.match(updated["updated_at"])
    cleared = await evs.put(
        f"/cloudsnapshots/{snap['id']}", json={"snapshot": {"description": None}}
    )
    assert cleared.json()["snapshot"]["description"] is None
    assert_evs_error(
        await evs.put(f"/cloudsnapshots/{snap['id']}", json={"snapshot": {"name": "x" * 256}}),
        400,
        "EVS.5400",
    )
    assert_evs_error(
        await evs.put(f"/cloudsnapshots/{snap['id']}", json={"snapshot": {}}), 400, "EVS.1052"
    )


@pytest.mark.parametrize(("status", "allowed"), [("creating", True), ("deleting", False)])
async def test_update_refused_while_deleting(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, status: str, allowed: bool
) -> None:
    volume = await evs_sim.admin.add_volume()
    snap_id = (await create(evs, volume["id"])).json()["snapshot"]["id"]
    await evs_sim.admin.set_snapshot_status(snap_id, status)
    response = await evs.put(f"/cloudsnapshots/{snap_id}", json={"snapshot": {"name": "n"}})
    if allowed:
        assert response.status_code == 200
    else:
        assert_evs_error(response, 400, "EVS.5400")


@pytest.mark.parametrize(
    ("status", "http", "code"),
    [
        ("available", 202, None),
        ("error", 202, None),
        ("creating", 400, "EVS.1047"),
        ("deleting", 400, "EVS.1047"),
        ("rollbacking", 400, "EVS.1047"),
        ("backing-up", 400, "EVS.1047"),
        ("error_deleting", 500, "EVS.2019"),
    ],
)
async def test_delete_only_from_available_or_error(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient, status: str, http: int, code: str | None
) -> None:
    volume = await evs_sim.admin.add_volume()
    snap_id = (await create(evs, volume["id"])).json()["snapshot"]["id"]
    await evs_sim.admin.set_snapshot_status(snap_id, status)
    response = await evs.delete(f"/cloudsnapshots/{snap_id}")
    if code is None:
        assert response.status_code == http
    else:
        assert_evs_error(response, http, code)


async def test_rollback_onto_its_detached_disk() -> None:
    async with running_simulator(rollback_seconds=0.3) as sim, evs_client(sim) as client:
        volume = await sim.admin.add_volume()
        snap_id = (await create(client, volume["id"])).json()["snapshot"]["id"]
        url = f"/cloudsnapshots/{snap_id}/rollback"
        response = await client.post(
            url, json={"rollback": {"volume_id": volume["id"], "name": "r"}}
        )
        assert response.status_code == 202
        assert response.json() == {"rollback": {"volume_id": volume["id"]}}
        assert await status_of(client, snap_id) == "rollbacking"
        (disk,) = await sim.admin.volumes()
        assert (disk["status"], disk["name"]) == ("rollbacking", "r")
        await eventually(lambda: _is(client, snap_id, "available"), timeout=10, what="rolled back")
        (disk,) = await sim.admin.volumes()
        assert disk["status"] == "available"


async def test_rollback_rules(evs_sim: RunningSimulator, evs: httpx.AsyncClient) -> None:
    volume, other = await evs_sim.admin.add_volume(), await evs_sim.admin.add_volume()
    snap_id = (await create(evs, volume["id"])).json()["snapshot"]["id"]
    url = f"/cloudsnapshots/{snap_id}/rollback"

    async def rollback(body: object) -> httpx.Response:
        return await evs.post(url, json=body)

    assert_evs_error(await rollback({"rollback": {}}), 400, "EVS.1052")
    assert_evs_error(await rollback({"rollback": {"volume_id": "bad"}}), 400, "EVS.1002")
    assert_evs_error(
        await rollback({"rollback": {"volume_id": MISSING}}), 404, "EVS.5404", "itemNotFound"
    )
    assert_evs_error(await rollback({"rollback": {"volume_id": other["id"]}}), 400, "EVS.5400")
    await evs_sim.admin.set_volume(volume["id"], status="in-use")
    assert_evs_error(
        await rollback({"rollback": {"volume_id": volume["id"]}}), 400, "EVS.5400", "badRequest"
    )
    await evs_sim.admin.set_volume(volume["id"], status="available")
    await evs_sim.admin.set_snapshot_status(snap_id, "creating")
    assert_evs_error(await rollback({"rollback": {"volume_id": volume["id"]}}), 400, "EVS.2043")
