"""A rollback whose answer was lost is never applied twice: the disk tells whether it took effect
(busy rolling back, or changed since it was sent); only a disk that stayed unchanged for the
create-doubt window, which nothing rolled back or wrote to, is rolled back again."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.controllers.restore.fakes import SNAPSHOT, SOURCE_DISK
from tests.controllers.restore.test_reconciler import ready_snapshot, restore
from tests.controllers.restore.test_unanswered_create import DOUBT, Clocked

SPEC = {"snapshotName": "db", "rollback": {"safetySnapshot": False}}
ASKED = (SNAPSHOT, SOURCE_DISK)


def detached_world() -> Clocked:
    """A rollback restore whose source disk is detached (available): the next step sends it."""
    world = Clocked()
    world.store.snapshots[("team-a", "db")] = ready_snapshot()
    source = world.disks.disks[SOURCE_DISK]
    world.disks.disks[SOURCE_DISK] = replace(source, phase="available")
    return world


async def applied_unanswered() -> Clocked:
    """A world whose rollback EVS applied without an answer."""
    world = detached_world()
    world.disks.lose_next_answer = True
    await world.step(restore(SPEC))
    assert world.disks.rollbacks == [ASKED]
    assert world.parsed().rolled_back_at is None
    assert world.parsed().rollback_requested_at == world.now
    return world


async def test_a_rollback_applied_but_unanswered_is_not_sent_again() -> None:
    world = await applied_unanswered()
    world.now += timedelta(seconds=5)
    await world.step(restore(SPEC))  # the disk is rolling back: it took effect
    assert world.parsed().rolled_back_at is not None
    world.disks.finish_rollbacks(world.now)
    world.now += timedelta(seconds=DOUBT * 2)
    await world.step(restore(SPEC))
    assert world.parsed().phase == "Ready"
    assert world.disks.rollbacks == [ASKED], "sent once"


async def test_a_rollback_that_finished_before_the_next_look_is_known_by_the_disks_change() -> None:
    world = await applied_unanswered()
    world.disks.finish_rollbacks(world.now + timedelta(seconds=1))  # done before anyone looks
    world.now += timedelta(seconds=DOUBT * 2)
    await world.step(restore(SPEC))
    assert world.parsed().phase == "Ready"
    assert world.disks.rollbacks == [ASKED], "an available disk changed since: not sent again"


async def test_a_rollback_that_never_arrived_is_sent_again_once_the_disk_stayed_unchanged() -> None:
    world = detached_world()
    world.disks.drop_next_rollback = True
    await world.step(restore(SPEC))
    assert world.disks.rollbacks == []
    assert world.parsed().rollback_requested_at == world.now

    world.now += timedelta(seconds=DOUBT / 2)
    await world.step(restore(SPEC))
    assert world.disks.rollbacks == [], "EVS may still apply it"
    assert world.parsed().phase == "RollingBack"
    assert "was not answered" in str(world.parsed().conditions)

    world.now += timedelta(seconds=DOUBT)
    await world.step(restore(SPEC))
    assert world.disks.rollbacks == [ASKED]
    assert world.parsed().rollback_requested_at is None
    assert world.parsed().rolled_back_at == world.now
