"""Memory stays flat in the number of resources: nothing per resource outlives the resource."""

from __future__ import annotations

from cloudsnap.reconcile import Reconciler
from evs_simulator.testing import RunningSimulator
from tests.reconcile.harness import World, wait_until


def held(world: World, reconciler: Reconciler) -> dict[str, int]:
    """Entries per structure that holds something per resource."""
    controller = world.controller
    scheduler = controller.scheduler
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
        "reconciler.fresh": len(reconciler._fresh),
    }


async def test_created_then_deleted_resources_leave_no_entries_behind(
    world: World, reconciler: Reconciler, evs_sim: RunningSimulator
) -> None:
    disks = [(await evs_sim.admin.add_volume(size=1))["id"] for _ in range(6)]
    names = [f"snap-{i}" for i in range(30)]
    for i, name in enumerate(names):
        world.apply(name, volumeID=disks[i % len(disks)])
    # One that never turns Ready: its failures count backoff attempts until it is deleted.
    world.apply("broken", volumeID="no-such-disk")
    await wait_until(lambda: all(world.is_ready(name) for name in names), timeout=30)
    await wait_until(lambda: world.condition("broken", "Synced") is not None)
    during = held(world, reconciler)
    assert during["bodies"] == during["seen"] == during["scheduler.known"] == len(names) + 1
    for name in [*names, "broken"]:
        world.delete(name)
    await wait_until(lambda: not world.objects, timeout=30)
    await wait_until(lambda: not world.controller.scheduler._running)
    assert held(world, reconciler) == dict.fromkeys(during, 0)
