"""The restore reconciler's decisions, step by step, against an EVS-like fake that honours
create tokens: one disk per restore through lost answers and lagging lists, defaults from the
source disk, the claim made and bound by name, a claim it did not make left alone, and deletion
by policy."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from cloudsnap.api.models import StatusError
from cloudsnap.api.objects import Owner
from cloudsnap.api.restore import CloudSnapshotRestoreStatus, NewVolume, RestoreClaim
from cloudsnap.controllers.restore.controller import RESTORE_FINALIZER
from cloudsnap.controllers.restore.decisions import (
    RESTORE_UID_LABEL,
    TOKEN_NAMESPACE,
    InputError,
    client_token,
    disk_request,
    persistent_volume,
    volume_name,
)
from cloudsnap.controllers.restore.external import Disk, DiskState, SourceSnapshot
from cloudsnap.controllers.restore.reconciler import Reconciler, Result
from cloudsnap.runtime.backoff import Timing
from cloudsnap.runtime.failures import Failure, Kind
from tests.controllers.restore.fakes import (
    SNAPSHOT,
    SOURCE_DISK,
    FakeConnector,
    FakeDisks,
    MemoryStore,
)
from tests.fixtures.world import FakeCluster

UID = "3c9d2e1f-0a4b-4c5d-8e6f-7a8b9c0d1e2f"
OWNER = Owner(UID, "team-a", "db-restore")


def restore(
    spec: dict[str, Any], *, finalizer: bool = True, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": OWNER.name,
        "namespace": OWNER.namespace,
        "uid": UID,
        "generation": 1,
        "resourceVersion": "1",
        "finalizers": [RESTORE_FINALIZER] if finalizer else [],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshotRestore",
        "metadata": meta,
        "spec": spec,
    }


def ready_snapshot() -> dict[str, Any]:
    return {
        "metadata": {"name": "db", "namespace": OWNER.namespace},
        "status": {
            "snapshotID": SNAPSHOT,
            "account": {"className": "default"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class World:
    """A reconciler over the fakes, and the status carried from step to step."""

    def __init__(self) -> None:
        self.disks = FakeDisks()
        self.store = MemoryStore()
        self.cluster = FakeCluster()
        self.connector = FakeConnector(self.disks)
        self.reconciler = Reconciler(
            self.connector,
            self.store,
            finalizer=RESTORE_FINALIZER,
            namespaces=self.cluster,
            volumes=self.cluster,
        )
        self.status: dict[str, Any] = {}

    async def step(self, body: dict[str, Any]) -> Result:
        result = await self.reconciler.reconcile(body, self.status)
        self.status = result.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return result

    def parsed(self) -> CloudSnapshotRestoreStatus:
        return CloudSnapshotRestoreStatus.model_validate(self.status)


CLAIMED = {"snapshotName": "db", "newVolume": {"claim": {"name": "data"}}}


def test_the_create_token_is_a_uuid5_of_the_restore_uid() -> None:
    token = uuid.UUID(client_token(UID))
    assert token.version == 5
    assert token == uuid.uuid5(TOKEN_NAMESPACE, UID)
    assert client_token(UID) == client_token(UID)
    assert client_token(UID) != client_token(str(uuid.uuid4()))


SNAP = SourceSnapshot(SNAPSHOT, True, "available", 10, SOURCE_DISK)
SOURCE = Disk(SOURCE_DISK, DiskState.READY, "in-use", 10, "az-1", "SSD", None)


def test_unset_fields_follow_the_snapshot_and_its_source_disk() -> None:
    request = disk_request(OWNER, NewVolume(), SNAP, SOURCE)
    assert (request.size, request.availability_zone, request.volume_type) == (10, "az-1", "SSD")
    assert request.name == "team-a-db-restore"
    mine = disk_request(OWNER, NewVolume(size=20, availabilityZone="az-2", name="x"), SNAP, SOURCE)
    assert (mine.size, mine.availability_zone, mine.name) == (20, "az-2", "x")


@pytest.mark.parametrize(
    ("target", "snapshot", "source", "code", "kind"),
    [
        (NewVolume(size=5), SNAP, SOURCE, "SizeTooSmall", Kind.INVALID),
        (NewVolume(), None, SOURCE, "SnapshotNotFound", Kind.BLOCKED),
        (
            NewVolume(),
            SourceSnapshot(SNAPSHOT, False, "creating", 10, SOURCE_DISK),
            SOURCE,
            "SnapshotNotReady",
            Kind.BLOCKED,
        ),
        (NewVolume(), SNAP, None, "SourceDiskUnknown", Kind.BLOCKED),
    ],
)
def test_bad_input_is_explained(
    target: NewVolume, snapshot: SourceSnapshot | None, source: Disk | None, code: str, kind: Kind
) -> None:
    with pytest.raises(InputError) as caught:
        disk_request(OWNER, target, snapshot, source)
    assert (caught.value.failure.code, caught.value.failure.kind) == (code, kind)


def test_the_volume_is_a_static_everest_volume_reserved_for_the_claim() -> None:
    disk = Disk("d-1", DiskState.READY, "available", 10, "az-1", "SSD", UID)
    volume = persistent_volume(OWNER, disk, RestoreClaim(name="data"))
    spec = volume["spec"]
    assert volume["metadata"] == {"name": volume_name(UID), "labels": {RESTORE_UID_LABEL: UID}}
    assert spec["csi"] == {"driver": "disk.csi.everest.io", "volumeHandle": "d-1", "fsType": "ext4"}
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["claimRef"]["namespace"] == "team-a"
    assert spec["claimRef"]["name"] == "data"
    assert spec["capacity"] == {"storage": "10Gi"}
    zone = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert zone["values"] == ["az-1"]


async def test_a_restore_makes_one_disk_then_its_volume_and_claim() -> None:
    world = World()
    world.store.snapshots[("team-a", "db")] = ready_snapshot()
    first = await world.step(restore(CLAIMED, finalizer=False))
    assert first.add_finalizer
    assert world.disks.creates == 0, "no create before the finalizer"
    await world.step(restore(CLAIMED))
    assert world.disks.creates == 1
    assert world.parsed().phase == "Creating"
    await world.step(restore(CLAIMED))
    assert world.disks.creates == 1, "a running job is followed, not repeated"
    world.disks.finish_creates()
    await world.step(restore(CLAIMED))
    (disk,) = world.disks.made()
    status = world.parsed()
    assert status.volume_id == disk.id
    assert status.phase == "Binding"
    claim = world.store.claims[("team-a", "data")]
    assert claim["spec"]["volumeName"] == volume_name(UID)
    assert world.store.volumes[volume_name(UID)]["spec"]["csi"]["volumeHandle"] == disk.id
    claim["status"] = {"phase": "Bound"}
    result = await world.step(restore(CLAIMED))
    status = world.parsed()
    assert status.phase == "Ready"
    assert (status.claim_name, status.persistent_volume_name) == ("data", volume_name(UID))
    assert [c.type for c in status.conditions] == ["Ready", "Synced"]
    assert result.requeue is not None, "a Ready restore is looked at again (drift)"
    assert 0.5 * Timing().resync <= result.requeue <= 1.5 * Timing().resync
    assert world.store.written.count("create pv") == 1
    assert world.store.written.count("create pvc") == 1


@pytest.mark.parametrize("list_lag", [False, True])
async def test_a_lost_create_answer_ends_with_one_disk(list_lag: bool) -> None:
    """Found by its owner tag, or (the list lagging) asked again with the same token: either
    way EVS makes no second disk."""
    world = World()
    world.disks.lose_next_answer = True
    world.disks.list_lag = list_lag
    spec = {"snapshotID": SNAPSHOT, "newVolume": {}}
    failed = await world.step(restore(spec))
    assert world.parsed().error is not None
    assert failed.requeue is not None
    assert world.parsed().job_id is None
    for _ in range(3):
        await world.step(restore(spec))
        world.disks.finish_creates()
    assert len(world.disks.made()) == 1
    assert world.parsed().volume_id == world.disks.made()[0].id
    assert world.parsed().phase == "Ready"
    assert world.disks.creates == (2 if list_lag else 1)


async def test_a_restore_with_a_new_uid_makes_its_own_disk() -> None:
    """A restore deleted and re-created under the same name is another UID: another token."""
    world = World()
    spec = {"snapshotID": SNAPSHOT, "newVolume": {}}
    await world.step(restore(spec))
    other = restore(spec)
    other["metadata"]["uid"] = str(uuid.uuid4())
    world.status = {}
    await world.step(other)
    assert len(world.disks.made()) == 2


async def test_a_claim_it_did_not_make_is_left_alone() -> None:
    world = World()
    world.store.snapshots[("team-a", "db")] = ready_snapshot()
    theirs = {"metadata": {"name": "data", "namespace": "team-a", "uid": "x"}, "spec": {}}
    world.store.claims[("team-a", "data")] = theirs
    for _ in range(3):
        await world.step(restore(CLAIMED))
        world.disks.finish_creates()
    status = world.parsed()
    assert status.error is not None
    assert status.error.code == "ClaimExists"
    assert "team-a/data" in status.error.message
    assert world.store.claims[("team-a", "data")] is theirs
    assert world.disks.made() == [], "checked before the create: nothing is made"
    assert "create pvc" not in world.store.written
    assert "create pv" not in world.store.written
    stalled = [c for c in status.conditions if c.type == "Stalled"]
    assert stalled
    assert stalled[0].status == "True"


async def test_a_snapshot_not_ready_blocks_without_a_create() -> None:
    world = World()
    pending = ready_snapshot()
    pending["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    world.store.snapshots[("team-a", "db")] = pending
    result = await world.step(restore(CLAIMED))
    assert world.parsed().error is not None
    assert world.parsed().error.code == "SnapshotNotReady"
    assert world.disks.creates == 0
    assert result.requeue is not None
    world.store.snapshots.clear()
    await world.step(restore(CLAIMED))
    assert world.parsed().error is not None
    assert world.parsed().error.code == "SnapshotNotFound"


async def test_an_evs_refusal_is_reported_with_its_code() -> None:
    world = World()
    world.disks.refuse = Failure("EVS.2054", "zone mismatch", Kind.INVALID)
    result = await world.step(
        restore({"snapshotID": SNAPSHOT, "newVolume": {"availabilityZone": "az-9"}})
    )
    error = world.parsed().error
    assert error is not None
    assert (error.code, error.retryable) == ("EVS.2054", False)
    assert result.requeue is None


async def _made(world: World, spec: dict[str, Any]) -> None:
    world.store.snapshots[("team-a", "db")] = ready_snapshot()
    for _ in range(2):
        await world.step(restore(spec))
        world.disks.finish_creates()
    await world.step(restore(spec))
    world.store.claims[("team-a", "data")]["status"] = {"phase": "Bound"}
    await world.step(restore(spec))
    assert world.parsed().phase == "Ready"


async def test_retain_keeps_disk_volume_and_claim() -> None:
    world = World()
    await _made(world, CLAIMED)
    result = await world.step(restore(CLAIMED, deleting=True))
    assert result.remove_finalizer
    assert len(world.disks.made()) == 1
    assert world.store.claims
    assert world.store.volumes


async def test_delete_removes_claim_volume_then_disk() -> None:
    world = World()
    spec = {**CLAIMED, "deletionPolicy": "Delete"}
    await _made(world, spec)
    result = await world.step(restore(spec, deleting=True))
    assert not result.remove_finalizer, "the disk is still being deleted"
    assert not world.store.claims
    assert not world.store.volumes
    world.disks.finish_deletes()
    result = await world.step(restore(spec, deleting=True))
    assert result.remove_finalizer
    assert world.disks.made() == []
    assert SOURCE_DISK in world.disks.disks, "the source disk is never touched"


ROLLBACK = {"snapshotName": "db", "rollback": {}}


async def blocked_rollback(world: World) -> StatusError:
    """The status.error of a rollback's step on the attached source disk."""
    world.store.snapshots[("team-a", "db")] = ready_snapshot()
    await world.step(restore(ROLLBACK))
    error = world.parsed().error
    assert error is not None
    return error


async def test_a_rollback_waits_for_a_detached_disk_and_its_safety_snapshot() -> None:
    world = World()
    error = await blocked_rollback(world)
    assert error.code == "DiskInUse"
    assert SOURCE_DISK in error.message
    assert world.disks.rollbacks == []
    assert "create csnap" not in world.store.written, "no safety snapshot of an attached disk"

    source = world.disks.disks[SOURCE_DISK]
    world.disks.disks[SOURCE_DISK] = replace(source, phase="available")
    await world.step(restore(ROLLBACK))
    safety = world.store.snapshots[("team-a", "db-restore-safety")]
    assert safety["spec"]["volumeID"] == SOURCE_DISK
    assert safety["spec"]["deletionPolicy"] == "Retain"
    assert world.parsed().phase == "SafetySnapshot"
    assert world.disks.rollbacks == [], "never before the safety snapshot is Ready"

    safety["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    await world.step(restore(ROLLBACK))
    await world.step(restore(ROLLBACK))
    assert world.disks.rollbacks == [(SNAPSHOT, SOURCE_DISK)], "asked once"
    assert world.parsed().phase == "RollingBack"
    world.disks.disks[SOURCE_DISK] = replace(source, phase="available")
    await world.step(restore(ROLLBACK))
    status = world.parsed()
    assert status.phase == "Ready"
    assert status.safety_snapshot_name == "db-restore-safety"
    assert world.disks.made() == []


async def test_a_safety_snapshot_that_cannot_be_made_blocks_the_rollback() -> None:
    world = World()
    world.store.snapshots[("team-a", "db")] = ready_snapshot()
    source = world.disks.disks[SOURCE_DISK]
    world.disks.disks[SOURCE_DISK] = replace(source, phase="available")
    await world.step(restore(ROLLBACK))
    full = {"code": "EVS.5413", "message": "the disk has 7 snapshots", "retryable": False}
    world.store.snapshots[("team-a", "db-restore-safety")]["status"] = {"error": full}
    await world.step(restore(ROLLBACK))
    error = world.parsed().error
    assert error is not None
    assert error.code == "EVS.5413"
    assert "db-restore-safety" in error.message
    assert world.disks.rollbacks == []


def pod(namespace: str, name: str, *claims: str) -> dict[str, Any]:
    volumes = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
    ]
    volumes.append({"name": "config", "configMap": {"name": "settings"}})
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"volumes": volumes}}


async def test_a_blocked_rollback_names_the_claim_and_pods_that_hold_the_disk() -> None:
    world = World()
    volume = {
        "metadata": {"name": "pv-a"},
        "spec": {
            "csi": {"driver": "disk.csi.everest.io", "volumeHandle": SOURCE_DISK.upper()},
            "claimRef": {"namespace": "team-a", "name": "data"},
        },
    }
    world.cluster.volumes["pv-a"] = volume
    other_driver = {
        "metadata": {"name": "pv-x"},
        "spec": {"csi": {"driver": "other", "volumeHandle": SOURCE_DISK}},
    }
    world.cluster.volumes["pv-x"] = other_driver
    for index in range(7):
        world.store.pods[("team-a", f"web-{index}")] = pod("team-a", f"web-{index}", "data")
    world.store.pods[("team-a", "cache")] = pod("team-a", "cache", "other")
    world.store.pods[("team-b", "web-9")] = pod("team-b", "web-9", "data")
    error = await blocked_rollback(world)
    assert error.code == "DiskInUse"
    assert error.message.startswith(
        f"disk {SOURCE_DISK} is in-use: it backs PersistentVolume pv-a bound to claim team-a/data,"
        " used by pods team-a/web-0, team-a/web-1, team-a/web-2, team-a/web-3, team-a/web-4"
        " and 2 more; stop them (scale to 0) and the rollback goes on"
    ), error.message
    assert "cache" not in error.message
    assert "team-b/web-9" not in error.message
    assert "pv-x" not in error.message, "a volume of another CSI driver is not the disk's"
    assert world.store.pod_lists == ["team-a"], "one list, in the claim's namespace"
    world.store.unlisted.add("team-a")
    await world.step(restore(ROLLBACK))
    error = world.parsed().error
    assert error is not None
    assert "claim team-a/data (the operator may not list that namespace's pods);" in error.message
    world.store.unlisted.clear()
    world.store.pod_lists.clear()

    source = world.disks.disks[SOURCE_DISK]
    world.disks.disks[SOURCE_DISK] = replace(source, phase="available")
    await world.step(restore(ROLLBACK))
    assert world.store.pod_lists == [], "no pods are listed once the disk is detached"


async def test_a_disk_in_use_outside_kubernetes_is_named_alone() -> None:
    world = World()
    error = await blocked_rollback(world)
    assert error.message.startswith(
        f"disk {SOURCE_DISK} is in-use; stop the workload that uses it (scale it to 0)"
    ), error.message
    assert world.store.pod_lists == []


async def test_a_disk_deleted_behind_a_ready_restore_is_reported_not_made_again() -> None:
    world = World()
    await _made(world, CLAIMED)
    before = world.status
    ready = await world.step(restore(CLAIMED))
    assert ready.requeue is not None, "a Ready restore is looked at again"
    assert ready.events == [], "a look that finds all as it was says nothing"
    assert world.status == before, "and changes no status (nothing is written)"
    (disk,) = world.disks.made()
    del world.disks.disks[disk.id]
    result = await world.step(restore(CLAIMED))
    status = world.parsed()
    ready_condition = next(c for c in status.conditions if c.type == "Ready")
    assert (status.phase, ready_condition.status, ready_condition.reason) == (
        "Failed",
        "False",
        "DiskNotFound",
    )
    assert disk.id in ready_condition.message
    assert "delete the restore and create it again" in ready_condition.message
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "DiskNotFound")]
    assert result.requeue is None
    again = await world.step(restore(CLAIMED))
    assert again.events == [], "reported once"
    assert world.disks.creates == 1, "never made again"


@pytest.mark.parametrize(("deleted", "reason"), [("volume", "VolumeLost"), ("claim", "ClaimLost")])
async def test_a_volume_or_claim_deleted_behind_a_ready_restore_is_reported_not_made_again(
    deleted: str, reason: str
) -> None:
    world = World()
    await _made(world, CLAIMED)
    if deleted == "volume":
        world.store.volumes.clear()
    else:
        world.store.claims.clear()
    result = await world.step(restore(CLAIMED))
    status = world.parsed()
    ready_condition = next(c for c in status.conditions if c.type == "Ready")
    assert (status.phase, ready_condition.reason) == ("Failed", reason)
    assert f"disk {status.volume_id} is kept" in ready_condition.message
    assert [e.reason for e in result.events] == [reason]
    await world.step(restore(CLAIMED))
    assert world.store.written.count("create pv") == 1
    assert world.store.written.count("create pvc") == 1
    result = await world.step(restore({**CLAIMED, "deletionPolicy": "Delete"}, deleting=True))
    assert not result.remove_finalizer, "the kept disk is still deleted with the restore"
    world.disks.finish_deletes()
    assert world.disks.made() == []
