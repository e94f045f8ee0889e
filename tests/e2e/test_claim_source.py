"""A PersistentVolumeClaim as the source of a CloudSnapshot, against the real control plane: the
controller-manager's PV binder binds the claims, the operator resolves them to simulator disks.

The PersistentVolumes are what CCE's everest CSI driver makes for an EVS disk: CSI, driver
disk.csi.everest.io, volumeHandle the disk ID. Nothing sets a claim's status by hand.
"""

from __future__ import annotations

from typing import Any

from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack, condition
from tests.waiting import eventually

CLAIM = "postgres-data"
BINDING_SECONDS = 30.0
# Well under the operator's blocked retry (the fixture keeps its default of 120 s): a blocked
# resource that becomes Ready within this was woken by the claim's change, not by the retry.
WAKE_SECONDS = 30.0


def create(stack: Stack, *manifests: dict[str, Any]) -> None:
    """`kubectl create` the manifests in the stack's namespace."""
    stack.kubectl("create", "-f", "-", input=manifest_list(*manifests))


def claim_phase(stack: Stack, name: str) -> str:
    """The claim's status.phase as the PV binder set it."""
    return stack.kubectl("get", "pvc", name, "-o", "jsonpath={.status.phase}").stdout


async def bind_claim_to(stack: Stack, disk: str, volume_names: list[str]) -> None:
    """Make the claim and an everest volume of ``disk`` for it, and wait for the PV binder to
    bind them."""
    volume_names.append(f"pv-{stack.namespace}")
    create(
        stack,
        everest_volume(volume_names[0], disk),
        volume_claim(stack.namespace, CLAIM, volume_names[0]),
    )
    await eventually(
        lambda: claim_phase(stack, CLAIM) == "Bound", timeout=BINDING_SECONDS, what="the binding"
    )


async def test_a_claim_bound_by_the_binder_is_snapshotted_as_its_disk(
    stack: Stack, volume_names: list[str]
) -> None:
    disk = await stack.add_volume(status="in-use")  # mounted by a workload
    await bind_claim_to(stack, disk, volume_names)

    stack.apply("db", persistentVolumeClaimName=CLAIM)

    obj = await stack.wait_condition("db", "Ready", "True")
    status = obj["status"]
    assert (status["volumeID"], status["persistentVolumeName"]) == (disk, volume_names[0])
    [snapshot] = await stack.snapshots_of(disk)
    assert status["snapshotID"] == snapshot["id"]
    table = stack.kubectl("get", "csnap", "db").stdout.splitlines()
    assert table[0].split()[5] == "SOURCE"
    assert table[1].split()[5] == CLAIM


async def test_a_claim_that_binds_later_is_blocked_then_ready_on_its_binding(
    stack: Stack, volume_names: list[str]
) -> None:
    disk = await stack.add_volume(status="in-use")
    create(stack, volume_claim(stack.namespace, CLAIM))  # no volume for it yet: Pending
    stack.apply("db", persistentVolumeClaimName=CLAIM)

    obj = await stack.wait_condition("db", "Synced", "False", reason="ClaimNotBound")
    synced = condition(obj, "Synced")
    assert f"PersistentVolumeClaim {stack.namespace}/{CLAIM} is not bound" in synced["message"]
    assert "(phase Pending)" in synced["message"]
    assert condition(obj, "Ready")["status"] == "False"
    # The failure's Event is posted after the status write that shows it.
    await eventually(lambda: "Failed" in stack.event_reasons("db"), what="a Failed event")
    assert claim_phase(stack, CLAIM) == "Pending"
    assert await stack.snapshots_of(disk) == []

    # An administrator provides the volume, reserved for the claim; the binder binds them.
    volume_names.append(f"pv-{stack.namespace}")
    create(stack, everest_volume(volume_names[0], disk, (stack.namespace, CLAIM)))

    obj = await stack.wait_condition("db", "Ready", "True", timeout=WAKE_SECONDS)
    assert claim_phase(stack, CLAIM) == "Bound"
    assert (obj["status"]["volumeID"], obj["status"]["persistentVolumeName"]) == (
        disk,
        volume_names[0],
    )
    assert len(await stack.snapshots_of(disk)) == 1


async def test_a_mounted_claim_refused_for_want_of_force_says_so_and_goes_on_once_set(
    stack: Stack, volume_names: list[str]
) -> None:
    """force: false asks EVS to refuse an attached disk: the resource says which field lets it
    through, and setting it retries at once (the blocked retry is two minutes here)."""
    disk = await stack.add_volume(status="in-use")
    await bind_claim_to(stack, disk, volume_names)
    stack.apply("db", persistentVolumeClaimName=CLAIM, force=False)

    obj = await stack.wait_condition("db", "Synced", "False", reason="DiskInUse")
    assert "set spec.force: true" in obj["status"]["error"]["message"]
    failed = await eventually(
        lambda: [e for e in stack.events("db") if e["reason"] == "Failed"], what="a Failed event"
    )
    assert "set spec.force: true" in failed[0]["message"]
    assert await stack.snapshots_of(disk) == []

    stack.apply("db", persistentVolumeClaimName=CLAIM, force=True)

    obj = await stack.wait_condition("db", "Ready", "True", timeout=WAKE_SECONDS)
    [snapshot] = await stack.snapshots_of(disk)
    assert obj["status"]["snapshotID"] == snapshot["id"]
