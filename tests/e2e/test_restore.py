"""CloudSnapshotRestores on the real control plane: a Ready CloudSnapshot restored to a claim the
PV binder binds, with the snapshot's data (the simulator's content version); exactly one disk
through a lost create answer and an operator killed mid-create; each bad input explained."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloudsnap.api.constants import OWNER_UID_METADATA_KEY
from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack, StartStack, condition
from tests.waiting import eventually

RESTORE = "db-restore"
CLAIM = "db-restored"
TIMEOUT = 90.0


def apply_restore(stack: Stack, name: str = RESTORE, **spec: Any) -> None:
    """`kubectl apply` the restore with this spec, as a user would."""
    stack.apply_kind("CloudSnapshotRestore", name, spec)


def get_restore(stack: Stack, name: str = RESTORE) -> dict[str, Any]:
    out = stack.kubectl("get", "csnaprestore", name, "-o", "json")
    return dict(json.loads(out.stdout))


async def wait_restore(
    stack: Stack, kind: str, status: str, *, code: str | None = None, name: str = RESTORE
) -> dict[str, Any]:
    """The restore once its condition ``kind`` is ``status`` (and its error ``code``)."""

    def probe() -> dict[str, Any] | None:
        obj = get_restore(stack, name)
        error = (obj.get("status") or {}).get("error") or {}
        if condition(obj, kind).get("status") == status and code in (None, error.get("code")):
            return obj
        return None

    found: dict[str, Any] = await eventually(
        probe, timeout=TIMEOUT, what=f"csnaprestore/{name} {kind}={status} {code}"
    )
    return found


async def disks_of(stack: Stack, uid: str) -> list[dict[str, Any]]:
    """The simulator's disks tagged with the restore's UID."""
    return [
        v
        for v in await stack.admin.volumes()
        if (v.get("metadata") or {}).get(OWNER_UID_METADATA_KEY) == uid
    ]


async def ready_snapshot(stack: Stack) -> tuple[str, dict[str, Any]]:
    """A disk written to twice around a Ready CloudSnapshot "db" of it: its ID and the EVS
    snapshot (whose content version is the first write's, not the disk's current one)."""
    disk = await stack.add_volume(size=10)
    await stack.admin.write(disk)
    stack.apply("db", volumeID=disk)
    obj = await stack.wait_condition("db", "Ready", "True")
    await stack.admin.write(disk)
    (snapshot,) = [
        s for s in await stack.admin.snapshots() if s["id"] == obj["status"]["snapshotID"]
    ]
    return disk, snapshot


async def test_a_snapshot_is_restored_to_a_bound_claim_with_its_data(
    stack: Stack, volume_names: list[str]
) -> None:
    disk, snapshot = await ready_snapshot(stack)
    apply_restore(stack, snapshotName="db", newVolume={"claim": {"name": CLAIM}})
    obj = await wait_restore(stack, "Ready", "True")
    status = obj["status"]
    volume_names.append(status["persistentVolumeName"])
    (restored,) = await disks_of(stack, obj["metadata"]["uid"])
    assert status["volumeID"] == restored["id"]
    assert status["phase"] == "Ready"
    assert restored["content_version"] == snapshot["content_version"]
    assert restored["content_version"] != (await stack.admin.volume(disk))["content_version"]
    assert restored["snapshot_id"] == snapshot["id"]
    claim = json.loads(stack.kubectl("get", "pvc", CLAIM, "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["volumeName"] == status["persistentVolumeName"]
    pv = json.loads(
        stack.cluster.kubectl("get", "pv", status["persistentVolumeName"], "-o", "json").stdout
    )
    assert pv["spec"]["csi"]["volumeHandle"] == restored["id"]
    assert pv["spec"]["csi"]["driver"] == "disk.csi.everest.io"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    table = stack.kubectl("get", "csnaprestore", RESTORE).stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "READY", "PHASE", "SOURCE", "VOLUME-ID", "CLAIM"]
    assert table[1].split()[:6] == [RESTORE, "True", "Ready", "db", restored["id"], CLAIM]

    # Retain (the default): deleting the restore leaves disk, volume and claim.
    stack.kubectl("delete", "csnaprestore", RESTORE, "--timeout=60s")
    assert [d["id"] for d in await disks_of(stack, obj["metadata"]["uid"])] == [restored["id"]]
    assert (
        stack.kubectl("get", "pvc", CLAIM, "-o", "name").stdout.strip()
        == f"persistentvolumeclaim/{CLAIM}"
    )


async def test_delete_policy_deletes_the_claim_volume_and_disk_it_made(
    stack: Stack, volume_names: list[str]
) -> None:
    disk, _ = await ready_snapshot(stack)
    before = await stack.calls()
    apply_restore(
        stack, snapshotName="db", deletionPolicy="Delete", newVolume={"claim": {"name": CLAIM}}
    )
    obj = await wait_restore(stack, "Ready", "True")
    after = await stack.calls()
    assert after["create_volume"] - before.get("create_volume", 0) == 1
    assert after["list_volumes"] - before.get("list_volumes", 0) == 1, "one look before create"
    volume = obj["status"]["persistentVolumeName"]
    volume_names.append(volume)
    uid = obj["metadata"]["uid"]
    stack.kubectl("delete", "csnaprestore", RESTORE, "--timeout=60s")
    assert await disks_of(stack, uid) == [], "the finalizer goes once EVS has no disk left"
    await eventually(
        lambda: not stack.kubectl("get", "pvc", CLAIM, "--ignore-not-found").stdout.strip(),
        what="the claim's deletion",
    )
    await eventually(
        lambda: not stack.cluster.kubectl("get", "pv", volume, "--ignore-not-found").stdout,
        what="the volume's deletion",
    )
    assert (await stack.admin.volume(disk))["id"] == disk, "the source disk is never touched"


async def test_a_restore_waiting_for_its_snapshot_goes_on_when_it_is_ready(stack: Stack) -> None:
    """Woken by the CloudSnapshot's watch event, not by the blocked retry (two minutes here)."""
    apply_restore(stack, snapshotName="db", newVolume={})
    await wait_restore(stack, "Synced", "False", code="SnapshotNotFound")
    disk = await stack.add_volume()
    stack.apply("db", volumeID=disk)
    obj = await wait_restore(stack, "Ready", "True")
    assert obj["status"]["snapshotID"] == stack.must_get("db")["status"]["snapshotID"]


async def test_a_lost_create_answer_ends_with_one_disk(stack: Stack) -> None:
    disk = await stack.add_volume()
    stack.apply("db", volumeID=disk)
    snapshot_id = (await stack.wait_condition("db", "Ready", "True"))["status"]["snapshotID"]
    await stack.admin.set_faults(
        [{"operation": "create_volume", "kind": "lost_response", "count": 1}]
    )
    apply_restore(stack, snapshotID=snapshot_id, className=stack.class_name, newVolume={})
    obj = await wait_restore(stack, "Ready", "True")
    (restored,) = await disks_of(stack, obj["metadata"]["uid"])
    assert obj["status"]["volumeID"] == restored["id"]


async def test_an_operator_killed_during_the_create_makes_one_disk(stack: Stack) -> None:
    disk = await stack.add_volume()
    stack.apply("db", volumeID=disk)
    await stack.wait_condition("db", "Ready", "True")
    # The create is applied and its answer lost, and the owner-tag lookup is slow: when the
    # create reaches the simulator the operator cannot have recorded the job yet.
    await stack.admin.set_faults(
        [
            {"operation": "create_volume", "kind": "lost_response", "count": 1},
            {"operation": "list_volumes", "kind": "latency", "latency_seconds": 5.0},
        ]
    )
    apply_restore(stack, snapshotName="db", newVolume={})

    async def create_sent() -> bool:
        return (await stack.calls()).get("create_volume", 0) >= 1

    await eventually(create_sent, what="the disk create to reach the simulator")
    stack.operator.process.kill()
    uid = get_restore(stack)["metadata"]["uid"]
    assert len(await disks_of(stack, uid)) == 1
    await stack.admin.clear_faults()
    stack.operator.restart()
    obj = await wait_restore(stack, "Ready", "True")
    (restored,) = await disks_of(stack, uid)
    assert obj["status"]["volumeID"] == restored["id"]


BAD = {
    "snapshot-not-found": ({"snapshotName": "nothing", "newVolume": {}}, "SnapshotNotFound"),
    "size-below-the-snapshot": ({"snapshotName": "db", "newVolume": {"size": 5}}, "SizeTooSmall"),
    "unknown-zone": (
        {"snapshotName": "db", "newVolume": {"availabilityZone": "nowhere-9z"}},
        "EVS.1036",
    ),
    "another-zone": (
        {"snapshotName": "db", "newVolume": {"availabilityZone": "cn-north-4b"}},
        "EVS.2054",
    ),
    "claim-exists": (
        {"snapshotName": "db", "newVolume": {"claim": {"name": CLAIM}}},
        "ClaimExists",
    ),
}


@pytest.mark.parametrize(("spec", "code"), BAD.values(), ids=BAD.keys())
async def test_bad_input_is_explained_and_makes_nothing(
    stack: Stack, spec: dict[str, Any], code: str
) -> None:
    disk = await stack.add_volume(size=10)
    stack.apply("db", volumeID=disk)
    await stack.wait_condition("db", "Ready", "True")
    theirs = volume_claim(stack.namespace, CLAIM)
    stack.kubectl("create", "-f", "-", input=manifest_list(theirs))
    apply_restore(stack, **spec)
    obj = await wait_restore(stack, "Synced", "False", code=code)
    error = obj["status"]["error"]
    if code.startswith("EVS."):
        assert "spec.newVolume.availabilityZone" in error["message"], "what the code means"
    assert condition(obj, "Ready")["status"] != "True"
    assert await disks_of(stack, obj["metadata"]["uid"]) == []
    if code == "ClaimExists":
        assert f"{stack.namespace}/{CLAIM}" in error["message"]
        claim = json.loads(stack.kubectl("get", "pvc", CLAIM, "-o", "json").stdout)
        assert "volumeName" not in claim["spec"], "a claim it did not make is never touched"


async def content(stack: Stack, disk: str) -> int:
    return int((await stack.admin.volume(disk))["content_version"])


async def test_a_rollback_waits_for_the_detached_disk_keeps_a_safety_snapshot_and_is_undone(
    start_stack: StartStack,
) -> None:
    stack = await start_stack(settings={"CLOUDSNAP_BLOCKED_RETRY_SECONDS": "1"})
    disk, snapshot = await ready_snapshot(stack)
    later = await content(stack, disk)
    assert later != snapshot["content_version"]
    await stack.admin.set_volume(disk, status="in-use")
    apply_restore(stack, snapshotName="db", rollback={})
    obj = await wait_restore(stack, "Synced", "False", code="DiskInUse")
    assert disk in obj["status"]["error"]["message"]
    assert await content(stack, disk) == later, "nothing rolled back onto an attached disk"

    await stack.admin.set_volume(disk, status="available")
    obj = await wait_restore(stack, "Ready", "True")
    assert await content(stack, disk) == snapshot["content_version"]
    safety = obj["status"]["safetySnapshotName"]
    kept = stack.must_get(safety)
    assert kept["spec"]["deletionPolicy"] == "Retain"
    (taken,) = [s for s in await stack.admin.snapshots() if s["id"] == kept["status"]["snapshotID"]]
    assert taken["content_version"] == later, "the safety snapshot holds what the disk held"

    apply_restore(stack, "undo", snapshotName=safety, rollback={"safetySnapshot": False})
    await wait_restore(stack, "Ready", "True", name="undo")
    assert await content(stack, disk) == later


def claim_pod(namespace: str, name: str, claim: str) -> dict[str, Any]:
    """A pod mounting the claim; with no kubelet here it stays Pending, which is all a rollback
    needs to name it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


async def test_a_rollback_blocked_by_an_attached_disk_names_its_claim_and_pods(
    start_stack: StartStack, volume_names: list[str]
) -> None:
    stack = await start_stack(settings={"CLOUDSNAP_BLOCKED_RETRY_SECONDS": "1"})
    disk, _ = await ready_snapshot(stack)
    await stack.admin.set_volume(disk, status="in-use")  # the simulator's attach
    volume_names.append(f"pv-{stack.namespace}")
    ns = stack.namespace
    stack.kubectl(
        "create",
        "-f",
        "-",
        input=manifest_list(
            everest_volume(volume_names[0], disk, (ns, "data")),
            volume_claim(ns, "data", volume_names[0]),
            claim_pod(ns, "web-1", "data"),
            claim_pod(ns, "web-0", "data"),
            claim_pod(ns, "other", "not-data"),
        ),
    )
    apply_restore(stack, snapshotName="db", rollback={})
    obj = await wait_restore(stack, "Synced", "False", code="DiskInUse")
    assert obj["status"]["error"]["message"].startswith(
        f"disk {disk} is in-use: it backs PersistentVolume {volume_names[0]} bound to claim"
        f" {ns}/data, used by pods {ns}/web-0, {ns}/web-1; stop them (scale to 0) and the"
        " rollback goes on"
    ), obj["status"]["error"]["message"]

    stack.kubectl("delete", "pod", "web-0", "web-1", "--wait=false")
    await stack.admin.set_volume(disk, status="available")  # the workload stopped: detached
    await wait_restore(stack, "Ready", "True")


async def wait_lost(stack: Stack, name: str, reason: str) -> dict[str, Any]:
    """The restore once it reports what it made lost: Ready False with ``reason``."""

    def probe() -> dict[str, Any] | None:
        obj = get_restore(stack, name)
        ready = condition(obj, "Ready")
        return obj if (ready.get("status"), ready.get("reason")) == ("False", reason) else None

    found: dict[str, Any] = await eventually(
        probe, timeout=TIMEOUT, what=f"csnaprestore/{name} Ready=False {reason}"
    )
    return found


async def test_a_disk_or_claim_deleted_behind_a_ready_restore_is_reported_not_made_again(
    stack: Stack, volume_names: list[str]
) -> None:
    """Nothing else changes after the deletions: only the resync of Ready restores notices."""
    await ready_snapshot(stack)
    apply_restore(stack, snapshotName="db", newVolume={"claim": {"name": CLAIM}})
    apply_restore(stack, "kept", snapshotName="db", newVolume={"claim": {"name": "kept-data"}})
    obj = await wait_restore(stack, "Ready", "True")
    kept = await wait_restore(stack, "Ready", "True", name="kept")
    volume_names.extend(o["status"]["persistentVolumeName"] for o in (obj, kept))
    disk = obj["status"]["volumeID"]

    await stack.admin.remove_volume(disk)
    lost = await wait_lost(stack, RESTORE, "DiskNotFound")
    assert lost["status"]["phase"] == "Failed"
    assert disk in condition(lost, "Ready")["message"]
    await eventually(
        lambda: "DiskNotFound" in stack.event_reasons(RESTORE), timeout=TIMEOUT, what="the Event"
    )
    assert await disks_of(stack, obj["metadata"]["uid"]) == [], "no disk is made again"
    assert stack.metric("cloudsnap_restores_completed_total", target="newVolume") == 2
    assert stack.metric("cloudsnap_restores_failed_total", target="newVolume") == 1
    assert stack.metric("cloudsnap_restores", phase="Failed") == 1
    assert stack.metric("cloudsnap_restore_duration_seconds_count", target="newVolume") == 2

    stack.kubectl("delete", "pvc", "kept-data", "--timeout=60s")
    lost = await wait_lost(stack, "kept", "ClaimLost")
    assert f"disk {kept['status']['volumeID']} is kept" in condition(lost, "Ready")["message"]
    assert not stack.kubectl("get", "pvc", "kept-data", "--ignore-not-found").stdout.strip()
