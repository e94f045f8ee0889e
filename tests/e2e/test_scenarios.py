"""The issue's scenario table, one test per row: the operator as a process, the simulator as EVS.

Everything is observed from outside: the CloudSnapshot through kubectl, the cloud through the
simulator's admin API (its snapshot set and per-operation call counters).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from hack.sandbox import class_manifests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkevs.v2 import (
    CreateSnapshotOption,
    CreateSnapshotRequest,
    CreateSnapshotRequestBody,
    EvsClient,
)

from tests.fixtures.operator import Stack, StartStack, condition, eventually

OWNER_KEY = "cloudsnap.io/owner-uid"


def parse_time(text: str) -> datetime:
    """EVS times carry no zone (they are UTC); Kubernetes ones end in Z."""
    parsed = datetime.fromisoformat(text.removesuffix("Z"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


async def test_create_becomes_ready(stack: Stack) -> None:
    volume = await stack.add_volume(size=12)
    stack.apply("create", volumeID=volume, description="e2e create", metadata={"team": "db"})

    waited = stack.kubectl(
        "wait", "--for=condition=Ready", "csnap/create", "--timeout=60s", check=False
    )
    assert waited.returncode == 0, waited.stderr

    obj = stack.must_get("create")
    status = obj["status"]
    [snap] = await stack.snapshots_of(volume)
    assert status["snapshotID"] == snap["id"]
    assert status["phase"] == "available" == snap["status"]
    assert status["size"] == 12 == snap["size"]
    assert parse_time(status["createdAt"]) == parse_time(snap["created_at"])
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Synced")["status"] == "True"
    assert condition(obj, "Ready")["reason"] == "Available"
    assert "error" not in status or not status["error"]
    assert snap["metadata"][OWNER_KEY] == obj["metadata"]["uid"]
    assert snap["metadata"]["team"] == "db"
    assert snap["description"] == "e2e create"
    assert {"Creating", "Created", "Available"} <= set(stack.event_reasons("create"))
    assert {e["source"]["component"] for e in stack.events("create")} == {"cloudsnap-operator"}
    assert (await stack.calls())["create"] == 1


async def test_in_use_disk_without_force_is_blocked(stack: Stack) -> None:
    volume = await stack.add_volume(status="in-use")
    stack.apply("inuse", volumeID=volume)

    obj = await stack.wait_condition("inuse", "Synced", "False", reason="ReconcileError")
    message = condition(obj, "Synced")["message"]
    assert obj["status"]["error"]["code"] in message
    assert "in-use" in message
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["error"]["retryable"] is False
    await eventually(lambda: "Failed" in stack.event_reasons("inuse"), what="a Failed event")
    creates = (await stack.calls())["create"]

    await stack.resync_window()
    assert (await stack.calls())["create"] == creates + 1  # the witness's, none for "inuse"
    assert await stack.snapshots_of(volume) == []


async def test_in_use_disk_with_force_becomes_ready(stack: Stack) -> None:
    volume = await stack.add_volume(status="in-use")
    stack.apply("forced", volumeID=volume, force=True)

    obj = await stack.wait_condition("forced", "Ready", "True")
    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]


async def test_disk_not_found_is_terminal(stack: Stack) -> None:
    stack.apply("nodisk", volumeID=str(uuid.uuid4()))

    obj = await stack.wait_condition("nodisk", "Synced", "False")
    error = obj["status"]["error"]
    assert error["code"] == "EVS.5404"
    assert error["retryable"] is False
    assert "EVS.5404" in condition(obj, "Synced")["message"]
    assert condition(obj, "Ready")["status"] == "False"
    creates = (await stack.calls())["create"]

    await stack.resync_window()
    assert (await stack.calls())["create"] == creates + 1  # the witness's only: no retry loop
    assert stack.must_get("nodisk")["status"]["error"]["code"] == "EVS.5404"


async def test_name_and_description_change_is_one_put(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("rename", volumeID=volume, name="before", description="old")
    await stack.wait_condition("rename", "Ready", "True")
    assert (await stack.calls()).get("update", 0) == 0

    stack.apply("rename", volumeID=volume, name="after", description="new")

    def followed() -> dict[str, Any] | None:
        obj = stack.must_get("rename")
        synced = condition(obj, "Synced")
        current = synced.get("status") == "True" and synced.get("observedGeneration") == 2
        return obj if current and obj["status"].get("observedGeneration") == 2 else None

    await eventually(followed, what="status to follow generation 2")
    [snap] = await stack.snapshots_of(volume)
    assert (snap["name"], snap["description"]) == ("after", "new")
    assert (await stack.calls())["update"] == 1
    assert "Updated" in stack.event_reasons("rename")

    await stack.resync_window()
    assert (await stack.calls())["update"] == 1  # resyncs see no difference, so no second PUT


async def test_delete_with_policy_delete_removes_snapshot(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("gone", volumeID=volume, deletionPolicy="Delete")
    obj = await stack.wait_condition("gone", "Ready", "True")
    assert obj["metadata"].get("finalizers"), "a finalizer holds a resource with a cloud snapshot"

    deleted = stack.kubectl("delete", "csnap", "gone", "--timeout=60s", check=False)
    assert deleted.returncode == 0, deleted.stderr

    assert stack.get("gone") is None
    assert await stack.snapshots_of(volume) == []
    assert (await stack.calls())["delete"] == 1
    assert {"Deleting", "Deleted"} <= set(stack.event_reasons("gone"))


async def test_delete_with_policy_retain_keeps_snapshot(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("kept", volumeID=volume, deletionPolicy="Retain")
    obj = await stack.wait_condition("kept", "Ready", "True")

    deleted = stack.kubectl("delete", "csnap", "kept", "--timeout=60s", check=False)
    assert deleted.returncode == 0, deleted.stderr

    assert stack.get("kept") is None
    [snap] = await stack.snapshots_of(volume)
    assert snap["id"] == obj["status"]["snapshotID"]
    assert snap["status"] == "available"
    assert (await stack.calls()).get("delete", 0) == 0


async def test_delete_while_creating_waits_then_deletes(start_stack: StartStack) -> None:
    stack = await start_stack(create_seconds=8.0)
    volume = await stack.add_volume()
    stack.apply("early", volumeID=volume)
    await eventually(
        lambda: stack.must_get("early").get("status", {}).get("snapshotID"),
        what="the snapshot id in status",
    )
    [snap] = await stack.snapshots_of(volume)
    assert snap["status"] == "creating"

    stack.kubectl("delete", "csnap", "early", "--wait=false")

    async def deleting_while_creating() -> bool:
        obj = stack.get("early")
        return bool(obj and "Deleting" in stack.event_reasons("early")) and any(
            s["status"] == "creating" for s in await stack.snapshots_of(volume)
        )

    await eventually(deleting_while_creating, what="the resource held while EVS still creates")
    await eventually(lambda: stack.get("early") is None, timeout=90, what="csnap/early gone")
    assert await stack.snapshots_of(volume) == []
    assert (await stack.calls())["delete"] == 1  # no DELETE was sent while it was creating


def make_snapshot_outside(stack: Stack, volume_id: str) -> str:
    """A snapshot made by someone else, with the official SDK, as a user adopting it would have."""
    config = HttpConfig.get_default_config()
    config.timeout = 10
    client = (
        EvsClient.new_builder()
        .with_http_config(config)
        .with_credentials(
            BasicCredentials(stack.sim.access_key, stack.sim.secret_key, stack.sim.project_id)
        )
        .with_endpoints([stack.sim.endpoint])
        .build()
    )
    body = CreateSnapshotRequestBody(CreateSnapshotOption(volume_id=volume_id, name="handmade"))
    response = client.create_snapshot(CreateSnapshotRequest(body=body))
    return str(response.snapshot.id)


async def test_adopt_existing_snapshot_id(stack: Stack) -> None:
    volume = await stack.add_volume(size=7)
    snapshot_id = await asyncio.to_thread(make_snapshot_outside, stack, volume)
    creates = (await stack.calls())["create"]

    stack.apply("adopted", snapshotID=snapshot_id)

    obj = await stack.wait_condition("adopted", "Ready", "True")
    assert obj["status"]["snapshotID"] == snapshot_id
    assert obj["status"]["size"] == 7
    assert (await stack.calls())["create"] == creates
    assert [s["id"] for s in await stack.snapshots_of(volume)] == [snapshot_id]
    assert "Adopted" in stack.event_reasons("adopted")


async def test_snapshot_removed_behind_our_back_is_not_recreated(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("drift", volumeID=volume)
    obj = await stack.wait_condition("drift", "Ready", "True")
    creates = (await stack.calls())["create"]

    await stack.admin.remove_snapshot(obj["status"]["snapshotID"])

    await stack.wait_condition("drift", "Ready", "False", reason="NotFound")
    await eventually(lambda: "NotFound" in stack.event_reasons("drift"), what="a NotFound event")
    await stack.resync_window()
    assert (await stack.calls())["create"] == creates + 1  # the witness's only
    assert await stack.snapshots_of(volume) == []
    assert condition(stack.must_get("drift"), "Ready")["reason"] == "NotFound"


async def test_5xx_and_429_bursts_end_ready_with_one_snapshot(stack: Stack) -> None:
    rules: list[dict[str, Any]] = [
        {"operation": "create", "kind": "error", "rate": 1.0, "status": 503, "count": 2},
        {
            "operation": "*",
            "kind": "error",
            "rate": 1.0,
            "status": 429,
            "code": "APIG.0308",
            "count": 3,
        },
        {"operation": "*", "kind": "error", "rate": 0.3, "status": 500, "count": 6},
    ]
    await stack.admin.set_faults(rules, seed=7)
    volume = await stack.add_volume()
    stack.apply("bursty", volumeID=volume)

    obj = await stack.wait_condition("bursty", "Ready", "True", timeout=120)
    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]
    assert not obj["status"].get("error")
    calls = await stack.calls()
    assert calls["create"] >= 3, calls  # the two 503s were answered and retried
    assert sum(calls.values()) >= 2 + 3 + 1, calls  # every 503 and 429 was met, then success
    failed = [e for e in stack.events("bursty") if e["reason"] == "Failed"]
    assert sum(e.get("count", 1) for e in failed) <= 5, "transient errors must not storm events"


async def test_operator_killed_after_create_call_makes_one_snapshot(stack: Stack) -> None:
    # The create is applied but its answer lost, and every list (the identity lookup) is slow:
    # when the create call is counted the operator cannot have learnt the snapshot's id yet.
    await stack.admin.set_faults(
        [
            {"operation": "create", "kind": "lost_response", "rate": 1.0, "count": 1},
            {"operation": "list", "kind": "latency", "rate": 1.0, "latency_seconds": 5.0},
        ]
    )
    volume = await stack.add_volume()
    stack.apply("crash", volumeID=volume)

    async def create_sent() -> bool:
        return (await stack.calls()).get("create", 0) >= 1

    await eventually(create_sent, what="the create call to reach the simulator")
    stack.operator.process.kill()
    assert len(await stack.snapshots_of(volume)) == 1
    assert not stack.must_get("crash").get("status", {}).get("snapshotID")

    await stack.admin.clear_faults()
    stack.operator.restart()
    obj = await stack.wait_condition("crash", "Ready", "True")
    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]
    assert snap["metadata"][OWNER_KEY] == obj["metadata"]["uid"]
    assert (await stack.calls())["create"] == 1


async def test_wrong_secret_key_names_class_and_never_leaks(start_stack: StartStack) -> None:
    wrong = "wrong-" + secrets.token_hex(20)
    stack = await start_stack(secret_key=wrong)
    volume = await stack.add_volume()
    stack.apply("badkey", volumeID=volume)

    obj = await stack.wait_condition("badkey", "Synced", "False")
    assert stack.class_name in condition(obj, "Synced")["message"]
    assert obj["status"]["error"]["code"] in {"APIG.0301", "InvalidCredentials"}
    assert condition(obj, "Ready")["status"] == "False"
    assert await stack.snapshots_of(volume) == []
    stack.assert_secret_absent(wrong)

    # Fixing the Secret retries at once, not after the blocked interval (minutes).
    fixed = class_manifests(
        stack.sim, class_name=stack.class_name, operator_namespace=stack.namespace
    )
    stack.cluster.kubectl("apply", "-f", "-", input=fixed)
    await stack.wait_condition("badkey", "Ready", "True", timeout=30)
    stack.assert_secret_absent(stack.sim.secret_key)
