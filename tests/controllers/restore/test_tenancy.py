"""A class's tenancy rules for restores (docs/security.md): the class must admit the restore's
namespace, a raw snapshotID follows spec.volumeIDs and may not name another namespace's snapshot
or disk, and a rollback never overwrites another namespace's disk. A refused restore gets no
finalizer, and one refused for its namespace or a Denied rule costs no EVS call."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cloudsnap.controllers.restore.reconciler import Result
from tests.controllers.restore.fakes import SNAPSHOT, SOURCE_DISK, class_spec
from tests.controllers.restore.test_reconciler import (
    CLAIMED,
    OWNER,
    ROLLBACK,
    World,
    ready_snapshot,
    restore,
)

BY_ID = {"snapshotID": SNAPSHOT, "newVolume": {"claim": {"name": "data"}}}
ROLLBACK_BY_ID = {"snapshotID": SNAPSHOT, "rollback": {}}
EVEREST = {"driver": "disk.csi.everest.io", "volumeHandle": SOURCE_DISK}


def tenant_world(**rules: Any) -> World:
    """A world whose class has these rules, with the source CloudSnapshot in the restore's
    namespace."""
    world = World()
    world.connector.rules = class_spec(**rules)
    world.store.snapshots[(OWNER.namespace, "db")] = ready_snapshot()
    return world


async def refused(world: World, spec: dict[str, Any], code: str) -> str:
    """Step a new restore once: it is refused with ``code``, blocked, and gets no finalizer;
    the message."""
    result: Result = await world.step(restore(spec, finalizer=False))
    error = world.parsed().error
    assert error is not None
    assert (error.code, error.retryable) == (code, False)
    assert not result.add_finalizer
    assert result.requeue is not None, "blocked: retried slowly and when a class changes"
    synced = next(c for c in world.parsed().conditions if c.type == "Synced")
    assert (synced.status, synced.reason) == ("False", code)
    assert world.disks.creates == 0
    assert world.disks.rollbacks == []
    assert "create csnap" not in world.store.written
    return error.message


def pv_of_source_disk(world: World, namespace: str) -> None:
    """The source disk backs a PersistentVolume bound to a claim in ``namespace``."""
    world.cluster.volumes["pv-db"] = {
        "metadata": {"name": "pv-db"},
        "spec": {"csi": EVEREST, "claimRef": {"namespace": namespace, "name": "db"}},
    }


@pytest.mark.parametrize("spec", [CLAIMED, BY_ID, ROLLBACK, ROLLBACK_BY_ID])
async def test_a_namespace_the_class_does_not_admit_costs_no_evs_call(spec: dict[str, Any]) -> None:
    world = tenant_world(allowedNamespaces={"names": ["team-b"]})
    message = await refused(world, spec, "ClassNotAllowed")
    assert message == (
        f"CloudSnapshotClass default does not admit namespace {OWNER.namespace}:"
        " its spec.allowedNamespaces admits names team-b"
    )
    assert world.disks.calls == []


async def test_a_namespace_admitted_by_its_labels_restores() -> None:
    world = tenant_world(allowedNamespaces={"selector": {"matchLabels": {"tenant": "a"}}})
    world.cluster.namespaces[OWNER.namespace] = {"tenant": "a"}
    result = await world.step(restore(CLAIMED, finalizer=False))
    assert result.add_finalizer
    assert world.parsed().error is None


@pytest.mark.parametrize("spec", [BY_ID, ROLLBACK_BY_ID])
async def test_denied_raw_ids_refuse_a_snapshot_id_without_evs_calls(spec: dict[str, Any]) -> None:
    world = tenant_world(volumeIDs="Denied")
    message = await refused(world, spec, "SourceNotAllowed")
    assert "CloudSnapshotClass default allows no raw IDs (its spec.volumeIDs is Denied)" in message
    assert world.disks.calls == []


async def test_denied_raw_ids_still_restore_a_cloudsnapshot_by_name() -> None:
    world = tenant_world(volumeIDs="Denied")
    result = await world.step(restore(CLAIMED, finalizer=False))
    assert result.add_finalizer


async def test_a_snapshot_made_by_another_namespaces_cloudsnapshot_is_refused() -> None:
    world = tenant_world()
    tagged = replace(world.disks.snapshots[SNAPSHOT], owner_namespace="team-b", owner_name="db")
    world.disks.snapshots[SNAPSHOT] = tagged
    message = await refused(world, BY_ID, "SourceNotAllowed")
    assert f"EVS snapshot {SNAPSHOT} was made by CloudSnapshot team-b/db" in message
    assert "CloudSnapshotClass default has spec.volumeIDs Allowed" in message
    assert world.disks.calls == ["snapshot"], "only the read that decides"


async def test_a_snapshot_of_another_namespaces_disk_is_refused() -> None:
    world = tenant_world()
    pv_of_source_disk(world, "team-b")
    message = await refused(world, BY_ID, "SourceNotAllowed")
    assert f"EVS snapshot {SNAPSHOT} is of another namespace's disk: disk {SOURCE_DISK}" in message
    assert "backs PersistentVolume pv-db" in message
    assert "bound to a claim in namespace team-b" in message
    assert world.disks.calls == ["snapshot"]


async def test_a_snapshot_of_the_namespaces_own_disk_or_cloudsnapshot_restores() -> None:
    world = tenant_world()
    pv_of_source_disk(world, OWNER.namespace)
    tagged = replace(
        world.disks.snapshots[SNAPSHOT], owner_namespace=OWNER.namespace, owner_name="db"
    )
    world.disks.snapshots[SNAPSHOT] = tagged
    result = await world.step(restore(BY_ID, finalizer=False))
    assert result.add_finalizer
    await world.step(restore(BY_ID))
    assert world.disks.creates == 1


async def test_any_lets_a_snapshot_id_name_any_snapshot_of_the_account() -> None:
    world = tenant_world(volumeIDs="Any")
    pv_of_source_disk(world, "team-b")
    result = await world.step(restore(BY_ID, finalizer=False))
    assert result.add_finalizer
    assert world.disks.calls == [], "nothing to decide by reading the snapshot"


@pytest.mark.parametrize("spec", [ROLLBACK, ROLLBACK_BY_ID])
async def test_a_rollback_never_overwrites_another_namespaces_disk(spec: dict[str, Any]) -> None:
    world = tenant_world(volumeIDs="Any")
    pv_of_source_disk(world, "team-b")
    world.disks.disks[SOURCE_DISK] = replace(world.disks.disks[SOURCE_DISK], phase="available")
    message = await refused(world, spec, "SourceNotAllowed")
    assert message.startswith(
        f"disk {SOURCE_DISK} backs PersistentVolume pv-db, bound to a claim in namespace team-b:"
        " only that namespace may roll it back"
    )
    assert "CloudSnapshotClass default" in message


async def test_a_rollback_of_the_namespaces_own_disk_goes_on() -> None:
    world = tenant_world()
    pv_of_source_disk(world, OWNER.namespace)
    world.disks.disks[SOURCE_DISK] = replace(world.disks.disks[SOURCE_DISK], phase="available")
    await world.step(restore(ROLLBACK))
    assert world.parsed().error is None
    assert world.parsed().phase == "SafetySnapshot"
