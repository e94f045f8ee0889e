"""A class's spec.allowedNamespaces: a CloudSnapshot in a namespace the class does not admit is
refused before the finalizer and before any EVS call, and proceeds once the class admits it."""

from __future__ import annotations

from cloudsnap.controllers.snapshot.controller import FINALIZER
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import CLASS
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
