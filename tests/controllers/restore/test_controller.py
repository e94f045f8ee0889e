"""The restore controller's persistence: the finalizer before any create, and a step that runs
on a body the watch has not yet updated still knows the create the previous step sent."""

from __future__ import annotations

import copy

from cloudsnap import metrics
from cloudsnap.controllers.restore.controller import RESTORE_FINALIZER, RestoreController
from cloudsnap.controllers.restore.reconciler import Reconciler
from tests.controllers.restore.fakes import SNAPSHOT, FakeConnector, FakeDisks, MemoryStore
from tests.controllers.restore.test_reconciler import restore
from tests.fixtures.world import FakeCluster

KEY = "team-a/db-restore"


def leading_controller(disks: FakeDisks, store: MemoryStore) -> RestoreController:
    """A controller over the fakes, on a replica that leads."""
    return RestoreController(
        Reconciler(
            FakeConnector(disks),
            store,
            finalizer=RESTORE_FINALIZER,
            namespaces=FakeCluster(),
            volumes=FakeCluster(),
        ),
        store,
        max_workers=1,
        may_act=lambda: True,
    )


async def test_the_finalizer_comes_first_and_a_stale_body_never_repeats_the_create() -> None:
    disks, store = FakeDisks(), MemoryStore()
    controller = leading_controller(disks, store)
    body = restore({"snapshotID": SNAPSHOT, "newVolume": {}}, finalizer=False)
    store.add(copy.deepcopy(body))
    controller.observe(None, body)

    assert await controller.step(KEY) == 0.0
    assert store.writes == [("db-restore", "finalizers"), ("db-restore", "status")]
    assert disks.creates == 0

    await controller.step(KEY)  # the create
    assert disks.creates == 1
    stale = copy.deepcopy(body)
    stale["metadata"]["finalizers"] = [RESTORE_FINALIZER]
    controller.observe("MODIFIED", stale)  # the watch has not seen the status with the job yet
    disks.list_lag = True  # nor does EVS's list show the disk yet
    await controller.step(KEY)
    assert disks.creates == 1, "the job written by the last step is followed, not sent again"


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_leader_publishes_phases_completions_failures_and_durations() -> None:
    disks, store = FakeDisks(), MemoryStore()
    controller = leading_controller(disks, store)
    body = restore({"snapshotID": SNAPSHOT, "newVolume": {}})
    body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    store.add(copy.deepcopy(body))
    controller.observe(None, body)
    completed = sample("cloudsnap_restores_completed_total", target="newVolume")
    failed = sample("cloudsnap_restores_failed_total", target="newVolume")
    timed = sample("cloudsnap_restore_duration_seconds_count", target="newVolume")
    spent = sample("cloudsnap_restore_duration_seconds_sum", target="newVolume")

    await controller.step(KEY)  # the create
    assert sample("cloudsnap_restores", phase="Creating") == 1
    disks.finish_creates()
    await controller.step(KEY)
    await controller.step(KEY)  # a resync finds all as it was: counted once
    assert sample("cloudsnap_restores", phase="Ready") == 1
    assert sample("cloudsnap_restores", phase="Creating") == 0
    assert sample("cloudsnap_restores_completed_total", target="newVolume") == completed + 1
    assert sample("cloudsnap_restore_duration_seconds_count", target="newVolume") == timed + 1
    since_creation = sample("cloudsnap_restore_duration_seconds_sum", target="newVolume") - spent
    assert since_creation > 3600, "the time since the restore's creation, not the last step's"

    (disk,) = disks.made()
    del disks.disks[disk.id]
    await controller.step(KEY)
    await controller.step(KEY)
    assert sample("cloudsnap_restores", phase="Failed") == 1
    assert sample("cloudsnap_restores_failed_total", target="newVolume") == failed + 1

    controller.stop_leading()
    assert sample("cloudsnap_restores", phase="Failed") == 0, "the next leader publishes them"
