"""Memory stays flat in the number of resources: nothing per resource outlives the resource."""

from __future__ import annotations

import json
import uuid

from cloudsnap.controllers.snapshot.reconciler import Reconciler
from evs_simulator.testing import RunningSimulator
from tests.fixtures.world import World
from tests.waiting import eventually


def held(world: World, reconciler: Reconciler) -> dict[str, int]:
    """Entries per structure that holds something per resource."""
    controller = world.controller
    scheduler = controller.queue
    return {
        "bodies": len(controller._bodies),
        "seen": len(controller._seen),
        "scheduler.due": len(scheduler._due),
        "scheduler.heaps": sum(map(len, scheduler._lanes)),
        "scheduler.known": len(scheduler._known),
        "scheduler.running": len(scheduler._running),
        "scheduler.again": len(scheduler._again),
        "scheduler.dropped": len(scheduler._dropped),
        "reconciler.attempts": len(reconciler._attempts),
        "reconciler.born": len(reconciler._born),
        "reconciler.sent": len(reconciler._sent),
        "reconciler.pending": len(reconciler._pending),
        "reconciler.deleting": len(reconciler._deleting),
        "reconciler.steady": len(reconciler._steady),
    }


async def test_created_then_deleted_resources_leave_no_entries_behind(
    world: World, reconciler: Reconciler, evs_sim: RunningSimulator
) -> None:
    disks = [(await evs_sim.admin.add_volume(size=1))["id"] for _ in range(6)]
    names = [f"snap-{i}" for i in range(30)]
    for i, name in enumerate(names):
        world.apply(name, volumeID=disks[i % len(disks)])
    # One that never turns Ready: a well-formed ID of a disk EVS does not have, so its create
    # reaches EVS, is refused, and is remembered (a create was sent) until it is deleted.
    world.apply("broken", volumeID=str(uuid.uuid4()))
    await eventually(lambda: all(world.is_ready(name) for name in names), timeout=30)
    await eventually(lambda: world.condition("broken", "Synced") is not None, timeout=10)
    during = held(world, reconciler)
    assert during["bodies"] == during["seen"] == during["scheduler.known"] == len(names) + 1
    for name in [*names, "broken"]:
        world.delete(name)
    await eventually(lambda: not world.objects, timeout=30)
    await eventually(lambda: not world.controller.queue._running, timeout=10)
    assert held(world, reconciler) == dict.fromkeys(during, 0)


async def test_only_the_fields_the_steps_read_are_kept_per_resource(
    world: World, volume: str
) -> None:
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    meta = world.objects["db"]["metadata"]
    meta["labels"] = {"team": "storage"}
    meta["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    meta["managedFields"] = [{"manager": "kubectl", "fieldsV1": {}}]
    meta["resourceVersion"] = "999"
    event = json.loads(json.dumps(world.objects["db"]))  # decoded afresh, as every watch event is
    world.controller.observe("MODIFIED", event)
    kept = world.controller._bodies.get(world.uid("db"))
    assert kept is not None
    assert set(kept) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert not {"labels", "annotations", "managedFields"} & set(kept["metadata"])
    assert {k: event["metadata"][k] for k in kept["metadata"]} == kept["metadata"]
    assert kept["metadata"]["finalizers"] == event["metadata"]["finalizers"]
    assert kept["metadata"]["resourceVersion"] == "999"
    assert kept["spec"] == event["spec"]
    assert kept["status"] == event["status"]
    # Kept encoded, smaller than the decoded event's own JSON without the dropped fields.
    stored = world.controller._bodies._encoded[world.uid("db")]
    assert len(stored) < len(json.dumps(event, separators=(",", ":")))
    assert json.loads(stored) == kept
