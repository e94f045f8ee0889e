"""spec.persistentVolumeClaimName: the claim resolved to its EVS disk, pinned, and blocked with a
reason naming the claim (or its volume) until it leads to an EVS disk; against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudsnap.api.constants import EVS_CSI_DRIVERS
from cloudsnap.controllers.snapshot.controller import FINALIZER
from cloudsnap.controllers.snapshot.volumes import (
    Unresolved,
    claim_key,
    resolve_claim,
    volume_key,
)
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import FAST
from tests.fixtures.world import FakeCluster, World
from tests.waiting import eventually

NAMESPACE = "default"
CLAIM = "postgres-data"
VOLUME = "pv-postgres"


def everest(disk: str) -> dict[str, str]:
    """The CSI source CCE's everest add-on gives an EVS-backed PersistentVolume."""
    return {"driver": "disk.csi.everest.io", "volumeHandle": disk}


async def snapshots_of(sim: RunningSimulator, disk: str) -> list[dict[str, Any]]:
    return [
        s for s in await sim.admin.snapshots() if s["volume_id"] == disk and not s.get("deleted")
    ]


@pytest.mark.parametrize("driver", EVS_CSI_DRIVERS)
async def test_a_bound_claim_is_snapshotted_as_its_disk(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator, volume: str, driver: str
) -> None:
    fake.bind(NAMESPACE, CLAIM, VOLUME, {"driver": driver, "volumeHandle": volume})

    world.apply("db", persistentVolumeClaimName=CLAIM)

    await eventually(lambda: world.is_ready("db"), timeout=10)
    status = world.objects["db"]["status"]
    assert (status["volumeID"], status["persistentVolumeName"]) == (volume, VOLUME)
    [snap] = await snapshots_of(evs_sim, volume)
    assert status["snapshotID"] == snap["id"]
    # One Event, Created, which names the claim and the volume the disk was resolved from.
    assert world.reasons("db") == ["Created"]
    [(_, created)] = world.events
    assert f"PersistentVolumeClaim {CLAIM}, PersistentVolume {VOLUME}" in created.message
    assert volume in created.message
    # The disk is pinned in the finalizer's step, before any create: one status write more than
    # a volumeID source (finalizer, status with the disk, status with snapshotID, status Ready),
    # five writes with the Event.
    assert world.writes == [
        ("db", "finalizers"),
        ("db", "status"),
        ("db", "status"),
        ("db", "status"),
    ]
    assert (await evs_sim.admin.calls()).get("create") == 1


NOT_A_DISK: dict[str, tuple[dict[str, Any] | None, str, str]] = {
    # case: (the claim's volume's CSI source, or None for no claim at all, code, fragment)
    "no such claim": (None, "ClaimNotFound", f"PersistentVolumeClaim {NAMESPACE}/{CLAIM} does"),
    "another csi driver": (
        {"driver": "nfs.csi.k8s.io", "volumeHandle": "server/share"},
        "UnsupportedVolume",
        f"PersistentVolume {VOLUME} of CSI driver nfs.csi.k8s.io, not an EVS disk",
    ),
    "not csi": ({}, "UnsupportedVolume", f"PersistentVolume {VOLUME}, which is not a CSI volume"),
    "handle not a disk id": (
        everest("vol-1234"),
        "UnsupportedVolume",
        "volumeHandle 'vol-1234' is not an EVS disk ID",
    ),
}


@pytest.mark.parametrize(("csi", "code", "fragment"), NOT_A_DISK.values(), ids=NOT_A_DISK.keys())
async def test_a_claim_that_leads_to_no_evs_disk_is_blocked_with_the_reason(
    world: World,
    fake: FakeCluster,
    evs_sim: RunningSimulator,
    csi: dict[str, Any] | None,
    code: str,
    fragment: str,
) -> None:
    if csi is not None:
        fake.add_volume(VOLUME, claim=(NAMESPACE, CLAIM), csi=csi or None)
        fake.add_claim(NAMESPACE, CLAIM, bound_to=VOLUME)

    world.apply("db", persistentVolumeClaimName=CLAIM)

    await eventually(lambda: world.condition("db", "Synced") is not None, timeout=10)
    synced, ready = world.condition("db", "Synced"), world.condition("db", "Ready")
    assert (synced["status"], synced["reason"]) == ("False", code)
    assert fragment in synced["message"]
    assert (ready["status"], ready["reason"]) == ("False", "Error")
    assert fragment in ready["message"]
    status = world.objects["db"]["status"]
    assert status["error"]["retryable"] is False
    assert "volumeID" not in status
    assert world.reasons("db") == ["Failed"]
    result = world.results[-1][1]
    assert result.requeue_after == FAST.blocked
    expected = (claim_key(NAMESPACE, CLAIM),) + ((volume_key(VOLUME),) if csi is not None else ())
    assert result.waits_for == expected
    # Nothing to protect yet: no finalizer, so the resource can be deleted at once.
    assert FINALIZER not in world.objects["db"]["metadata"].get("finalizers", [])
    assert sum((await evs_sim.admin.calls()).values()) == 0


async def test_a_claim_that_binds_later_is_retried_at_once_on_its_change(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator, volume: str
) -> None:
    fake.add_claim(NAMESPACE, CLAIM)  # Pending: the binder has not bound it yet
    world.apply("db", persistentVolumeClaimName=CLAIM)
    await eventually(lambda: world.condition("db", "Synced") is not None, timeout=10)
    synced = world.condition("db", "Synced")
    assert synced["reason"] == "ClaimNotBound"
    assert "is not bound to a PersistentVolume yet (phase Pending)" in synced["message"]
    steps = len(world.results)

    fake.bind(NAMESPACE, CLAIM, VOLUME, everest(volume))
    world.controller.wake(volume_key("unrelated"))  # another object's change wakes nothing
    due = world.controller.queue.pending(world.uid("db"))
    assert due is not None
    assert due - asyncio.get_running_loop().time() > FAST.blocked / 2
    assert len(world.results) == steps
    world.controller.wake(claim_key(NAMESPACE, CLAIM))

    # The blocked retry is an hour away (FAST): only the wake can make it Ready in time.
    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert world.objects["db"]["status"]["volumeID"] == volume
    assert world.results[-1][1].waits_for == ()


async def test_a_binding_that_lands_while_the_step_runs_is_not_missed(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator, volume: str
) -> None:
    """The claim is bound (and its change reported) right after the step read it, before the
    step's result says what it waits for: the step is run again, not left for the slow retry."""
    fake.add_claim(NAMESPACE, CLAIM)
    read = fake.get_claim
    bound = asyncio.Event()

    async def read_then_bind(namespace: str, name: str) -> Any:
        found = await read(namespace, name)
        if found is not None and found["status"]["phase"] == "Pending":

            def bound_now() -> None:
                fake.bind(NAMESPACE, CLAIM, VOLUME, everest(volume))
                world.controller.wake(claim_key(NAMESPACE, CLAIM))
                bound.set()

            asyncio.get_running_loop().call_soon(bound_now)
        return found

    fake.get_claim = read_then_bind  # type: ignore[method-assign]
    write = world.patch_status

    async def write_as_over_the_network(*args: Any) -> Any:
        # A real status write leaves the loop; the binding's change comes in meanwhile.
        await bound.wait()
        return await write(*args)

    world.patch_status = write_as_over_the_network  # type: ignore[method-assign]
    world.apply("db", persistentVolumeClaimName=CLAIM)

    # The blocked retry is an hour away (FAST).
    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert next(r.outcome for _, r in world.results) == "blocked"


async def test_a_claim_bound_again_later_never_moves_the_snapshot(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator, volume: str
) -> None:
    other = str((await evs_sim.admin.add_volume(size=10, status="available"))["id"])
    fake.bind(NAMESPACE, CLAIM, VOLUME, everest(volume))
    world.apply("db", persistentVolumeClaimName=CLAIM, deletionPolicy="Delete")
    await eventually(lambda: world.is_ready("db"), timeout=10)
    snapshot_id = world.objects["db"]["status"]["snapshotID"]

    # The claim is deleted and made again, bound to another disk's volume.
    fake.bind(NAMESPACE, CLAIM, "pv-other", everest(other))
    world.controller.wake(claim_key(NAMESPACE, CLAIM))
    await world.step("db")
    world.change_spec("db", description="nightly")  # a new generation: a full step again
    await eventually(
        lambda: world.objects["db"]["status"].get("observedGeneration") == 2, timeout=10
    )

    status = world.objects["db"]["status"]
    assert (status["volumeID"], status["persistentVolumeName"]) == (volume, VOLUME)
    assert status["snapshotID"] == snapshot_id
    assert await snapshots_of(evs_sim, other) == []
    world.delete("db")
    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert await snapshots_of(evs_sim, volume) == []
    assert (await evs_sim.admin.calls()).get("create") == 1


async def test_a_disk_pinned_before_a_crash_is_not_resolved_again(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator, volume: str
) -> None:
    """Status names the disk (a step pinned it) but no snapshot is known: the claim, bound
    elsewhere meanwhile, is not looked at; the disk in status is looked up and snapshotted."""
    other = str((await evs_sim.admin.add_volume(size=10, status="available"))["id"])
    fake.bind(NAMESPACE, CLAIM, "pv-other", everest(other))
    world.leading = False  # an earlier process pinned the disk, then died
    world.apply("db", finalizers=[FINALIZER], persistentVolumeClaimName=CLAIM)
    pinned = {"volumeID": volume, "persistentVolumeName": VOLUME}
    await world.patch_status(world.objects["db"], pinned)
    await eventually(lambda: world.controller.resource(world.uid("db")), timeout=10)

    world.leading = True
    world.controller.start_leading()
    await eventually(lambda: world.is_ready("db"), timeout=10)

    assert world.objects["db"]["status"]["volumeID"] == volume
    assert len(await snapshots_of(evs_sim, volume)) == 1
    assert await snapshots_of(evs_sim, other) == []
    assert (await evs_sim.admin.calls()).get("list", 0) >= 1  # looked for an earlier create


async def test_a_volume_bound_to_another_claim_is_not_this_claims_disk() -> None:
    cluster = FakeCluster()
    cluster.add_volume(VOLUME, claim=(NAMESPACE, "someone-else"), csi=everest("x"))
    cluster.add_claim(NAMESPACE, CLAIM, bound_to=VOLUME)

    with pytest.raises(Unresolved) as refused:
        await resolve_claim(cluster, NAMESPACE, CLAIM)

    assert refused.value.failure.code == "ClaimNotBound"
    assert f"names PersistentVolume {VOLUME}, which is not bound to it" in (
        refused.value.failure.message
    )
    assert refused.value.waits_for == (claim_key(NAMESPACE, CLAIM), volume_key(VOLUME))


async def test_a_claims_mounted_disk_is_snapshotted_without_asking_for_force(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator
) -> None:
    """A claim's disk is a workload's, attached (in-use) while it runs: force defaults to true
    for a claim source, as Huawei's CSI driver always forces."""
    disk = str((await evs_sim.admin.add_volume(status="in-use"))["id"])
    fake.bind(NAMESPACE, CLAIM, VOLUME, everest(disk))

    world.apply("db", persistentVolumeClaimName=CLAIM)

    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert "force" not in world.objects["db"]["spec"]
    assert len(await snapshots_of(evs_sim, disk)) == 1


async def test_a_claim_with_force_false_on_a_mounted_disk_is_told_to_set_it(
    world: World, fake: FakeCluster, evs_sim: RunningSimulator
) -> None:
    disk = str((await evs_sim.admin.add_volume(status="in-use"))["id"])
    fake.bind(NAMESPACE, CLAIM, VOLUME, everest(disk))

    world.apply("db", persistentVolumeClaimName=CLAIM, force=False)

    await eventually(
        lambda: (world.condition("db", "Synced") or {}).get("reason") == "DiskInUse", timeout=10
    )
    assert "set spec.force: true" in world.objects["db"]["status"]["error"]["message"]
    assert await snapshots_of(evs_sim, disk) == []


async def test_an_upper_case_volume_handle_is_read_as_evs_writes_its_ids(
    fake: FakeCluster, volume: str
) -> None:
    """EVS writes IDs in lower case and answers with them: a hand-made PersistentVolume with
    the ID in upper case still leads to the disk, and to a snapshot recognised as of it."""
    fake.bind(NAMESPACE, CLAIM, VOLUME, everest(volume.upper()))

    resolved = await resolve_claim(fake, NAMESPACE, CLAIM)

    assert resolved.volume_id == volume
