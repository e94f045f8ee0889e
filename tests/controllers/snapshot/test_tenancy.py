"""A class's tenancy rules: spec.allowedNamespaces, spec.volumeIDs and spec.adoption. A refused
CloudSnapshot gets no finalizer and costs no EVS call, and proceeds once the rule admits it."""

from __future__ import annotations

from typing import Any

import pytest

from cloudsnap.controllers.snapshot.controller import FINALIZER
from cloudsnap.evs.models import CreateSnapshotRequest
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import CLASS
from tests.fixtures.simulator import operator_client
from tests.fixtures.world import FakeCluster, World
from tests.waiting import eventually


async def test_a_namespace_the_class_does_not_admit_is_refused_without_evs_calls(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    fake.classes[CLASS]["spec"]["allowedNamespaces"] = {
        "names": ["team-a"],
        "selector": {"matchLabels": {"tenant": "a"}},
    }
    fake.namespaces[world.namespace] = {"tenant": "b"}
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.condition("db", "Synced") is not None, timeout=10)

    synced = world.condition("db", "Synced")
    assert synced is not None
    assert (synced["status"], synced["reason"]) == ("False", "ClassNotAllowed")
    assert f"CloudSnapshotClass {CLASS} does not admit namespace default" in synced["message"]
    assert "names team-a or a namespace selector" in synced["message"]
    stalled = world.condition("db", "Stalled")
    assert stalled is not None
    assert stalled["reason"] == "ClassNotAllowed"
    assert FINALIZER not in world.objects["db"]["metadata"].get("finalizers", [])
    assert sum((await evs_sim.admin.calls()).values()) == 0

    # The namespace gains the label: a change of a namespace retries blocked resources.
    fake.namespaces[world.namespace] = {"tenant": "a"}
    world.controller.retry_blocked()
    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert world.condition("db", "Stalled") is None


async def test_a_class_without_the_field_admits_every_namespace(world: World, volume: str) -> None:
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)


async def test_a_namespace_admitted_by_name_needs_no_labels(
    world: World, volume: str, fake: FakeCluster
) -> None:
    fake.classes[CLASS]["spec"]["allowedNamespaces"] = {"names": [world.namespace]}
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)


EVEREST = {"driver": "disk.csi.everest.io"}


async def calls(sim: RunningSimulator) -> int:
    return sum((await sim.admin.calls()).values())


async def refused(
    world: World, sim: RunningSimulator, name: str, code: str, *, calls_before: int = 0
) -> str:
    """Wait for the resource's refusal; check it held nothing and cost no EVS call; its message."""
    await eventually(lambda: world.condition(name, "Synced") is not None, timeout=10)
    synced = world.condition(name, "Synced")
    assert synced is not None
    assert (synced["status"], synced["reason"]) == ("False", code)
    assert FINALIZER not in world.objects[name]["metadata"].get("finalizers", [])
    assert await calls(sim) == calls_before
    return str(synced["message"])


async def test_raw_volume_ids_denied_by_the_class_are_refused(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    fake.classes[CLASS]["spec"]["volumeIDs"] = "Denied"
    world.apply("db", volumeID=volume)
    message = await refused(world, evs_sim, "db", "SourceNotAllowed")
    assert f"CloudSnapshotClass {CLASS} allows no raw volume IDs" in message
    assert "spec.persistentVolumeClaimName" in message


async def test_a_disk_behind_another_namespaces_claim_is_refused_by_raw_id(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    fake.bind("team-b", "data", "pv-b", {**EVEREST, "volumeHandle": volume.upper()})
    world.apply("theirs", volumeID=volume)
    message = await refused(world, evs_sim, "theirs", "SourceNotAllowed")
    assert f"disk {volume} backs PersistentVolume pv-b" in message
    assert "namespace team-b" in message

    # A class that lets every disk of the account be named (an operations team's) takes it.
    fake.classes[CLASS]["spec"]["volumeIDs"] = "Any"
    world.controller.retry_blocked()
    await eventually(lambda: world.is_ready("theirs"), timeout=10)


async def test_a_disk_behind_an_own_claim_or_no_claim_may_be_named_by_raw_id(
    world: World, evs_sim: RunningSimulator, fake: FakeCluster
) -> None:
    mine = str((await evs_sim.admin.add_volume(size=10, status="available"))["id"])
    free = str((await evs_sim.admin.add_volume(size=10, status="available"))["id"])
    fake.bind(world.namespace, "data", "pv-mine", {**EVEREST, "volumeHandle": mine})
    world.apply("mine", volumeID=mine)
    world.apply("free", volumeID=free)
    await eventually(lambda: world.is_ready("mine") and world.is_ready("free"), timeout=10)


async def outside_snapshot(sim: RunningSimulator, volume: str) -> str:
    """A snapshot made in the account by someone else, available."""
    async with operator_client(sim) as client:
        made = await client.create_snapshot(CreateSnapshotRequest(volume_id=volume, name="x"))

    async def available() -> bool:
        snapshots = await sim.admin.snapshots()
        return any(s["id"] == made.id and s["status"] == "available" for s in snapshots)

    await eventually(available, timeout=10, what="the outside snapshot available")
    return made.id


async def live(sim: RunningSimulator, snapshot_id: str) -> bool:
    return any(s["id"] == snapshot_id and not s["deleted"] for s in await sim.admin.snapshots())


@pytest.mark.parametrize(
    ("adoption", "spec", "says"),
    [
        ("Denied", {}, "allows no adoption by spec.snapshotID"),
        ("Retain", {"deletionPolicy": "Delete"}, "lets adopted snapshots be kept only"),
    ],
)
async def test_adoption_the_class_does_not_allow_is_refused(
    world: World,
    evs_sim: RunningSimulator,
    volume: str,
    fake: FakeCluster,
    adoption: str,
    spec: dict[str, Any],
    says: str,
) -> None:
    existing = await outside_snapshot(evs_sim, volume)
    fake.classes[CLASS]["spec"]["adoption"] = adoption
    before = await calls(evs_sim)
    world.apply("taken", snapshotID=existing, **spec)
    message = await refused(world, evs_sim, "taken", "SourceNotAllowed", calls_before=before)
    assert f"CloudSnapshotClass {CLASS} {says}" in message


async def test_a_retain_class_never_deletes_an_adopted_snapshot(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    existing = await outside_snapshot(evs_sim, volume)
    fake.classes[CLASS]["spec"]["adoption"] = "Retain"
    world.apply("kept", snapshotID=existing)
    await eventually(lambda: world.is_ready("kept"), timeout=10)

    # Asking for deletion power afterwards is refused in status, and ignored on delete.
    world.change_spec("kept", deletionPolicy="Delete")
    await eventually(
        lambda: (world.condition("kept", "Synced") or {}).get("reason") == "SourceNotAllowed",
        timeout=10,
    )
    world.delete("kept")
    await eventually(lambda: "kept" not in world.objects, timeout=10)
    assert "Retained" in world.reasons("kept")
    assert await live(evs_sim, existing)


async def test_a_delete_class_lets_an_adopted_snapshot_be_deleted(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    existing = await outside_snapshot(evs_sim, volume)
    fake.classes[CLASS]["spec"]["adoption"] = "Delete"
    world.apply("gone", snapshotID=existing, deletionPolicy="Delete")
    await eventually(lambda: world.is_ready("gone"), timeout=10)
    world.delete("gone")
    await eventually(lambda: "gone" not in world.objects, timeout=10)
    assert not await live(evs_sim, existing)


async def test_a_refusal_names_a_few_of_many_admitted_namespaces(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    fake.classes[CLASS]["spec"]["allowedNamespaces"] = {"names": [f"ns{i}" for i in range(40)]}
    world.apply("db", volumeID=volume)
    message = await refused(world, evs_sim, "db", "ClassNotAllowed")
    assert "names ns0, ns1, ns2, ns3, ns4 and 35 more" in message
