"""The restore controller's persistence: the finalizer before any create, and a step that runs
on a body the watch has not yet updated still knows the create the previous step sent."""

from __future__ import annotations

import copy

from cloudsnap.controllers.restore.controller import RESTORE_FINALIZER, RestoreController
from cloudsnap.controllers.restore.reconciler import Reconciler
from tests.controllers.restore.fakes import SNAPSHOT, FakeConnector, FakeDisks, MemoryStore
from tests.controllers.restore.test_reconciler import restore
from tests.fixtures.world import FakeCluster

KEY = "team-a/db-restore"


async def test_the_finalizer_comes_first_and_a_stale_body_never_repeats_the_create() -> None:
    disks, store = FakeDisks(), MemoryStore()
    controller = RestoreController(
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
    body = restore({"snapshotID": SNAPSHOT, "newVolume": {}}, finalizer=False)
    store.restores[("team-a", "db-restore")] = copy.deepcopy(body)
    controller.observe(None, body)

    assert await controller.step(KEY) == 0.0
    assert store.writes == ["finalizers", "status"]
    assert disks.creates == 0

    await controller.step(KEY)  # the create
    assert disks.creates == 1
    stale = copy.deepcopy(body)
    stale["metadata"]["finalizers"] = [RESTORE_FINALIZER]
    controller.observe("MODIFIED", stale)  # the watch has not seen the status with the job yet
    disks.list_lag = True  # nor does EVS's list show the disk yet
    await controller.step(KEY)
    assert disks.creates == 1, "the job written by the last step is followed, not sent again"
