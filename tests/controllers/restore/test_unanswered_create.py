"""Deleting a restore whose disk create went unanswered: EVS may still make the disk, so a
Delete restore is held until the create-doubt window closes, and then deletes the disk if it came;
a create EVS refused made nothing, and holds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloudsnap.controllers.restore.controller import RESTORE_FINALIZER
from cloudsnap.controllers.restore.reconciler import Reconciler
from cloudsnap.runtime.backoff import Timing
from cloudsnap.runtime.failures import Failure, Kind
from tests.controllers.restore.fakes import SNAPSHOT, FakeConnector
from tests.controllers.restore.test_reconciler import World, restore

DOUBT = 60.0
SPEC = {"snapshotID": SNAPSHOT, "newVolume": {}, "deletionPolicy": "Delete"}


class Clocked(World):
    """The reconciler on a clock the test moves, with a create-doubt window of DOUBT."""

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.reconciler = Reconciler(
            FakeConnector(self.disks),
            self.store,
            finalizer=RESTORE_FINALIZER,
            namespaces=self.cluster,
            volumes=self.cluster,
            timing=Timing(create_doubt=DOUBT),
            clock=lambda: self.now,
        )


async def test_a_disk_made_after_an_unanswered_create_is_deleted_with_the_restore() -> None:
    world = Clocked()
    world.disks.lose_next_answer = True  # EVS makes the disk, the answer is lost
    world.disks.list_lag = True  # and its list does not show it yet
    await world.step(restore(SPEC))
    assert world.parsed().job_id is None
    assert world.parsed().create_requested_at == world.now

    held = await world.step(restore(SPEC, deleting=True))
    assert not held.remove_finalizer, "released while EVS may still make the disk"
    assert world.parsed().phase == "Deleting"

    world.disks.list_lag = False
    world.disks.finish_creates()
    world.now += timedelta(seconds=DOUBT)
    deleting = await world.step(restore(SPEC, deleting=True))
    assert not deleting.remove_finalizer, "the disk that came is being deleted"
    world.disks.finish_deletes()
    released = await world.step(restore(SPEC, deleting=True))
    assert released.remove_finalizer
    assert world.disks.made() == []


async def test_nothing_came_of_an_unanswered_create_the_window_closes() -> None:
    world = Clocked()
    world.disks.refuse = Failure("Timeout", "no answer", Kind.TRANSIENT)
    await world.step(restore(SPEC))
    assert not (await world.step(restore(SPEC, deleting=True))).remove_finalizer
    world.now += timedelta(seconds=DOUBT)
    assert (await world.step(restore(SPEC, deleting=True))).remove_finalizer


async def test_a_refused_create_holds_no_deletion() -> None:
    world = Clocked()
    world.disks.refuse = Failure("EVS.1034", "quota", Kind.BLOCKED)
    await world.step(restore(SPEC))
    assert world.parsed().create_requested_at is None
    assert (await world.step(restore(SPEC, deleting=True))).remove_finalizer
