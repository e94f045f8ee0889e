"""A CloudSnapshotSchedule against the real control plane and the simulator, on a per-minute
schedule over two PersistentVolumeClaims its selector picks and one volume ID: runs make one
child per source, retention keeps maxCount Ready children per source (rotating on a disk EVS
already holds full), and an operator SIGKILLed right after a slot's create makes no second child
or snapshot for that slot.

The claims are bound by the controller-manager's PV binder to everest CSI volumes of simulator
disks (driver disk.csi.everest.io, volumeHandle the disk ID), and their children carry
spec.persistentVolumeClaimName. All sources run in the same minutes, so they cost no extra time.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from cloudsnap.api.constants import SOURCE_ANNOTATION
from tests.e2e.support import make_snapshot_outside
from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack, condition
from tests.waiting import eventually

MAX_COUNT = 3
RUNS = 5
# Per-minute slots: a run every 60 s, plus the Lease a restarted operator waits for (15 s).
RUN_TIMEOUT = 60.0 * (RUNS + 3)
SUSPEND = json.dumps({"spec": {"suspend": True}})
# Within the first slot's minute; the PV binder may need its 15 s resync to see a volume.
BINDING_SECONDS = 60.0
CLAIM_LABELS = {"app": "postgres"}


def children(stack: Stack, schedule: str) -> list[dict[str, Any]]:
    """The schedule's children (its label), those not being deleted."""
    out = stack.kubectl(
        "get", "csnap", "-l", f"evs.cloudsnap.io/schedule={schedule}", "-o", "json"
    ).stdout
    return [c for c in json.loads(out)["items"] if not c["metadata"].get("deletionTimestamp")]


def schedule_status(stack: Stack, name: str) -> dict[str, Any]:
    out = stack.kubectl("get", "csnapsched", name, "-o", "json").stdout
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def event_messages(stack: Stack, name: str, reason: str) -> list[str]:
    out = stack.kubectl(
        "get", "events", "-o", "json", "--field-selector", f"involvedObject.name={name}"
    ).stdout
    return [e["message"] for e in json.loads(out)["items"] if e["reason"] == reason]


async def test_runs_rotate_and_survive_a_kill_across_a_slot(
    stack: Stack, volume_names: list[str]
) -> None:
    clean = await stack.add_volume()
    full = await stack.add_volume()  # behind a claim
    for _ in range(7 - MAX_COUNT):  # made outside the cluster: the disk is full at 3 of ours
        make_snapshot_outside(stack, full)
    claimed = {"data-a": full, "data-b": await stack.add_volume()}
    manifests = [volume_claim(stack.namespace, "unlabelled", labels={"app": "other"})]
    for claim, disk in claimed.items():
        volume_names.append(f"{stack.namespace}-{claim}")
        manifests += [
            everest_volume(volume_names[-1], disk),
            volume_claim(stack.namespace, claim, volume_names[-1], labels=CLAIM_LABELS),
        ]
    stack.kubectl("create", "-f", "-", input=manifest_list(*manifests))

    def claims_bound() -> bool:
        phases = stack.kubectl(
            "get", "pvc", *claimed, "-o", "jsonpath={.items[*].status.phase}"
        ).stdout.split()
        return phases == ["Bound"] * len(claimed)

    manifest = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshotSchedule",
        "metadata": {"name": "every-minute", "namespace": stack.namespace},
        "spec": {
            "schedule": "* * * * *",
            "sources": {
                "volumeIDs": [clean],
                "persistentVolumeClaimSelector": {"matchLabels": CLAIM_LABELS},
            },
            "retention": {"maxCount": MAX_COUNT, "minReady": 1},
            "snapshotTemplate": {"spec": {"description": "e2e"}},
        },
    }
    stack.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    # A claim's child made before its binding waits for it, and is woken by it.
    await eventually(claims_bound, timeout=BINDING_SECONDS, what="the PV binder binding both")

    # Two runs, then SIGKILL the operator the moment the third run's first child exists.
    def runs_made() -> set[str]:
        """The slots of the live children, as their names end: 20261127-1859."""
        return {c["metadata"]["name"][-13:] for c in children(stack, "every-minute")}

    await eventually(lambda: len(runs_made()) >= 2, timeout=3 * 60, what="two runs")
    before = runs_made()
    await eventually(lambda: runs_made() - before, timeout=90, what="the next run's first child")
    stack.operator.process.kill()
    stack.operator.restart()

    def runs_seen() -> int:
        deleted = event_messages(stack, "every-minute", "RetentionDeleted")
        return len(runs_made() | {m.split()[0][-13:] for m in deleted})

    await eventually(lambda: runs_seen() >= RUNS, timeout=RUN_TIMEOUT, what=f"{RUNS} runs")
    # No new runs from here: what is in flight settles, retention still applies.
    stack.kubectl("patch", "csnapsched", "every-minute", "--type=merge", "-p", SUSPEND)
    # Each source's disk, and the snapshots made outside the cluster on it.
    disks = {f"volume/{clean}": clean} | {f"pvc/{c}": disk for c, disk in claimed.items()}
    outside = {source: 7 - MAX_COUNT if disk == full else 0 for source, disk in disks.items()}

    async def settled() -> dict[str, list[dict[str, Any]]] | None:
        everything = json.loads(stack.kubectl("get", "csnap", "-o", "json").stdout)["items"]
        by_source: dict[str, list[dict[str, Any]]] = {}
        for child in everything:
            source = child["metadata"]["annotations"][SOURCE_ANNOTATION]
            by_source.setdefault(source, []).append(child)
        if sorted(by_source) != sorted(disks):
            return None
        for source, kids in by_source.items():
            if len(kids) != MAX_COUNT:
                return None
            if any(condition(k, "Ready").get("status") != "True" for k in kids):
                return None
            if any(k["status"].get("volumeID") != disks[source] for k in kids):
                return None
            on_disk = await stack.snapshots_of(disks[source])
            if len(on_disk) != MAX_COUNT + outside[source]:
                return None
            if not {k["status"]["snapshotID"] for k in kids} <= {s["id"] for s in on_disk}:
                return None
        status = schedule_status(stack, "every-minute")
        if condition({"status": status}, "Ready").get("status") != "True":
            return None
        return by_source

    by_source = await eventually(settled, timeout=60, what=f"{MAX_COUNT} kept per source")

    # Each slot made at most one child, and one EVS snapshot, per source: across the kill too.
    every = [s for s in await stack.admin.snapshots() if s["volume_id"] in disks.values()]
    names = Counter(s["name"] for s in every if s["name"] != "handmade")
    assert names, "no snapshot made by the schedule"
    assert max(names.values()) == 1, names

    # The oldest went: every deleted child is older than every kept one of its source.
    deleted = event_messages(stack, "every-minute", "RetentionDeleted")
    for source in disks:
        kept_names = sorted(c["metadata"]["name"] for c in by_source[source])
        named = source.split("/")[1][:8]  # the start of the disk ID or claim name
        gone = sorted(m.split()[0] for m in deleted if named in m)
        assert gone, f"nothing of {source} deleted"
        assert max(n[-13:] for n in gone) < min(n[-13:] for n in kept_names)
    # The full disk (a claim's) rotated by making room, and no child of it is left refused.
    assert any("(DiskLimit)" in m and "data-a" in m for m in deleted)
    # Each claim's children name the claim and were pinned to its bound volume.
    for claim, volume in zip(claimed, volume_names, strict=True):
        for child in by_source[f"pvc/{claim}"]:
            assert child["spec"]["persistentVolumeClaimName"] == claim
            assert child["status"]["persistentVolumeName"] == volume
    assert stack.operator.restarts == 1


def schedule_manifest(namespace: str, name: str, volume: str) -> dict[str, Any]:
    return {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshotSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": "* * * * *",
            "sources": {"volumeIDs": [volume]},
            "retention": {"maxCount": MAX_COUNT, "minReady": 1},
            "snapshotTemplate": {"spec": {"deletionPolicy": "Delete"}},
        },
    }


def dependent_of(stack: Stack, schedule: str) -> dict[str, Any]:
    """A ConfigMap naming the schedule as its owner: the garbage collector's witness."""
    owner = json.loads(stack.kubectl("get", "csnapsched", schedule, "-o", "json").stdout)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"witness-{schedule}",
            "namespace": stack.namespace,
            "ownerReferences": [
                {
                    "apiVersion": "evs.cloudsnap.io/v1alpha1",
                    "kind": "CloudSnapshotSchedule",
                    "name": schedule,
                    "uid": owner["metadata"]["uid"],
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }


def exists(stack: Stack, *ref: str) -> bool:
    return stack.kubectl("get", *ref, "--ignore-not-found", "-o", "name").stdout.strip() != ""


async def test_deleting_a_schedule_keeps_its_children_under_every_propagation_policy(
    stack: Stack,
) -> None:
    """Foreground, background and orphan deletion, and a foreground deletion while the operator
    is stopped: the schedule goes, its Ready children and their EVS snapshots stay. Each schedule
    has a witness ConfigMap naming it as owner; the garbage collector's handling of the witness
    (deleted, or orphaned) shows it processed that owner's dependents before the children are
    checked, so a child it would delete would be deleted by then."""
    cases = {
        "foreground": "--cascade=foreground",
        "background": "--cascade=background",
        "orphan": "--cascade=orphan",
        "operator-down": "--cascade=foreground",
    }
    disks = {name: await stack.add_volume() for name in cases}
    for name, disk in disks.items():
        stack.kubectl(
            "apply", "-f", "-", input=json.dumps(schedule_manifest(stack.namespace, name, disk))
        )

    def ready_children() -> dict[str, list[dict[str, Any]]] | None:
        found = {name: children(stack, name) for name in cases}
        if all(
            kids and all(condition(k, "Ready").get("status") == "True" for k in kids)
            for kids in found.values()
        ):
            return found
        return None

    before = await eventually(ready_children, timeout=150, what="a Ready child of each schedule")
    for name in cases:
        stack.kubectl("apply", "-f", "-", input=json.dumps(dependent_of(stack, name)))
        stack.kubectl("patch", "csnapsched", name, "--type=merge", "-p", SUSPEND)

    for name in ("foreground", "background", "orphan"):
        stack.kubectl("delete", "csnapsched", name, cases[name], "--wait=false")
    stack.operator.process.stop()
    stack.kubectl("delete", "csnapsched", "operator-down", cases["operator-down"], "--wait=false")

    def witness_handled(name: str) -> bool:
        if name == "orphan":
            refs = stack.kubectl(
                "get", "configmap", f"witness-{name}", "-o", "jsonpath={.metadata.ownerReferences}"
            ).stdout.strip()
            return refs == ""
        return not exists(stack, "configmap", f"witness-{name}")

    # The collector acts on the foreground deletion while the operator is down.
    await eventually(
        lambda: witness_handled("operator-down"), timeout=60, what="the collector's pass"
    )
    assert exists(stack, "csnapsched", "operator-down"), "released without the operator"
    stack.operator.restart()
    for name in cases:
        await eventually(
            lambda name=name: witness_handled(name), timeout=60, what=f"{name} witness"
        )
        await eventually(
            lambda name=name: not exists(stack, "csnapsched", name), timeout=60, what=f"{name} gone"
        )
    for name, kids in before.items():
        for kid in kids:
            stored = stack.get(kid["metadata"]["name"])
            assert stored is not None, f"{name}: child deleted"
            assert not stored["metadata"].get("deletionTimestamp"), f"{name}: child being deleted"
            assert not stored["metadata"].get("ownerReferences")
        on_disk = {s["id"] for s in await stack.snapshots_of(disks[name])}
        assert {k["status"]["snapshotID"] for k in kids} <= on_disk, f"{name}: snapshot deleted"

    def kept_events() -> list[int]:
        return [stack.event_reasons(name).count("ChildrenKept") for name in cases]

    await eventually(lambda: all(kept_events()), timeout=30, what="ChildrenKept Events")
    assert kept_events() == [1] * len(cases), "a release said more than once"


async def test_retain_children_fill_the_disk_and_the_schedule_says_so_without_deleting_any(
    stack: Stack,
) -> None:
    """A Retain template on a disk holding four snapshots made outside, maxCount 2: the third
    run fills the disk and rotates out the first child, whose snapshot stays; the fourth is
    refused by EVS. No child is deleted for room (it would free nothing): the schedule reports
    the source blocked, naming what fills the disk, through one more slot, and the disk never
    holds more than 7 snapshots."""
    disk = await stack.add_volume()
    for _ in range(4):
        make_snapshot_outside(stack, disk)
    manifest = schedule_manifest(stack.namespace, "retained", disk)
    manifest["spec"]["retention"] = {"maxCount": 2, "minReady": 1}
    manifest["spec"]["snapshotTemplate"]["spec"]["deletionPolicy"] = "Retain"
    stack.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    most_on_disk = 0

    async def blocked() -> str | None:
        nonlocal most_on_disk
        most_on_disk = max(most_on_disk, len(await stack.snapshots_of(disk)))
        [entry] = schedule_status(stack, "retained").get("sources") or [{}]
        return entry.get("blocked")

    message = await eventually(blocked, timeout=5 * 60, what="the source blocked by a full disk")
    blocked_at = schedule_status(stack, "retained")["lastScheduleTime"]
    # One more slot, blocked still, and nothing deleted for room meanwhile.
    await eventually(
        lambda: schedule_status(stack, "retained")["lastScheduleTime"] != blocked_at,
        timeout=90,
        what="the next slot",
    )
    assert await blocked()
    assert most_on_disk <= 7
    deleted = event_messages(stack, "retained", "RetentionDeleted")
    assert not [m for m in deleted if "(DiskLimit)" in m], deleted
    [rotated] = deleted  # the first child, by count: its snapshot stays
    assert "stays on the disk (deletionPolicy Retain)" in rotated
    [entry] = schedule_status(stack, "retained")["sources"]
    [kept] = entry["retainedSnapshotIDs"]
    assert kept in {s["id"] for s in await stack.snapshots_of(disk)}
    assert kept in message
    assert "no child of this schedule may be deleted to free a place" in message
    ready = condition({"status": schedule_status(stack, "retained")}, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Blocked")
    assert event_messages(stack, "retained", "RunBlocked")
    # Both Ready children are still there, each with its snapshot on the disk.
    kids = [k for k in children(stack, "retained") if condition(k, "Ready").get("status") == "True"]
    assert len(kids) == 2
    assert {k["status"]["snapshotID"] for k in kids} <= {
        s["id"] for s in await stack.snapshots_of(disk)
    }
