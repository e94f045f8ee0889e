"""A CloudSnapshotSchedule against the real control plane and the simulator, on a per-minute
schedule over two PersistentVolumeClaims its selector picks and one volume ID: runs make one
child per source, retention keeps maxCount Ready children per source (rotating on a disk EVS
already holds full), and an operator SIGKILLed right after a slot's create makes no second child
or snapshot for that slot.

The claims are bound by the controller-manager's PV binder to everest CSI volumes of simulator
disks (driver disk.csi.everest.io, volumeHandle the disk ID), and their children carry
spec.persistentVolumeClaimName. All sources run in the same minutes, so they cost no extra time.

Two more per-minute schedules: one whose jitterSeconds does not fit between two slots is refused
and makes nothing while a slot passes, then every source of each ended run has its child or is
named by a MissedRun; one whose children the API server refuses with a message longer than the
status may hold still records each run, posting Run once per slot and RunBlocked once.

And what a schedule keeps: its children and their snapshots survive the schedule's deletion under
every propagation policy (and with the operator stopped), and children kept by deletionPolicy
Retain that fill their disk are reported, never deleted for room they would not free.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudsnap.api.constants import SLOT_ANNOTATION, SOURCE_ANNOTATION
from cloudsnap.controllers.schedule.plan.runs import child_name
from tests.e2e.support import make_snapshot_outside
from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack, StartStack, condition
from tests.fixtures.watching import ObjectWatch
from tests.waiting import eventually

MAX_COUNT = 3
# Slots at which to try killing the operator between a run's first create and its status write.
KILL_TRIES = 3
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


async def kill_after_the_first_create(stack: Stack, schedule: str, volume: str) -> bool:
    """SIGKILL the operator from a watch the moment the next slot's child of ``volume`` (a run's
    first create) exists, then start it again; whether the schedule's status had not yet
    recorded that slot, so that the kill fell between the run's creates and its status write."""
    slot = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    first = child_name(schedule, volume.lower(), slot)
    killed = threading.Event()

    def kill(_: dict[str, Any]) -> None:
        if not killed.is_set():
            stack.operator.process.kill()
            killed.set()

    watch = ObjectWatch(stack.cluster, stack.namespace, first, on_version=kill)
    try:
        await eventually(killed.is_set, timeout=90, what=f"{first} made")
    finally:
        watch.stop()
    recorded = schedule_status(stack, schedule).get("lastScheduleTime") or ""
    stack.operator.restart()
    return datetime.fromisoformat(recorded.replace("Z", "+00:00")) < slot if recorded else True


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
    # Behind claims, mounted (in-use) as a workload's disks are: the template leaves force to
    # its default, which snapshots them.
    full = await stack.add_volume(status="in-use")
    for _ in range(7 - MAX_COUNT):  # made outside the cluster: the disk is full at 3 of ours
        make_snapshot_outside(stack, full)
    claimed = {"data-a": full, "data-b": await stack.add_volume(status="in-use")}
    manifests = [volume_claim(stack.namespace, "unlabelled", labels={"app": "other"})]
    for claim, disk in claimed.items():
        volume_names.append(f"{stack.namespace}-{claim}")
        manifests += [
            # Reserved for its claim: the unlabelled claim, which names no volume, could otherwise
            # be bound to it first and leave its own claim unbound.
            everest_volume(volume_names[-1], disk, claim=(stack.namespace, claim)),
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

    # Two runs, then SIGKILL the operator the moment a run's first child exists, before the
    # schedule's status records the run (retried at the next slot if the kill came too late).
    def runs_made() -> set[str]:
        """The slots of the live children, as their names end: 20261127-1859."""
        return {c["metadata"]["name"][-13:] for c in children(stack, "every-minute")}

    await eventually(lambda: len(runs_made()) >= 2, timeout=3 * 60, what="two runs")
    kills = [await kill_after_the_first_create(stack, "every-minute", clean)]
    while not kills[-1] and len(kills) < KILL_TRIES:
        kills.append(await kill_after_the_first_create(stack, "every-minute", clean))
    assert kills[-1], f"no kill fell between a run's first create and its status: {kills}"

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
    assert stack.operator.restarts == len(kills)


def schedule_manifest(stack: Stack, name: str, **spec: Any) -> str:
    """A per-minute schedule keeping two Ready children per source, with these spec fields."""
    body = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshotSchedule",
        "metadata": {"name": name, "namespace": stack.namespace},
        "spec": {"schedule": "* * * * *", "retention": {"maxCount": 2, "minReady": 1}, **spec},
    }
    return json.dumps(body)


async def disk_holding(stack: Stack, *, outside: int) -> str:
    """A new disk holding ``outside`` snapshots made outside the cluster."""
    disk = await stack.add_volume()
    for _ in range(outside):
        make_snapshot_outside(stack, disk)
    return disk


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
            "apply",
            "-f",
            "-",
            input=schedule_manifest(
                stack,
                name,
                sources={"volumeIDs": [disk]},
                retention={"maxCount": MAX_COUNT, "minReady": 1},
                snapshotTemplate={"spec": {"deletionPolicy": "Delete"}},
            ),
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

    def witness_handled(name: str) -> bool:
        if name == "orphan":
            refs = stack.kubectl(
                "get", "configmap", f"witness-{name}", "-o", "jsonpath={.metadata.ownerReferences}"
            ).stdout.strip()
            return refs == ""
        return not exists(stack, "configmap", f"witness-{name}")

    async def released(name: str) -> None:
        await eventually(lambda: witness_handled(name), timeout=60, what=f"{name} witness")
        await eventually(
            lambda: not exists(stack, "csnapsched", name), timeout=60, what=f"{name} gone"
        )

    up = ("foreground", "background", "orphan")
    for name in up:
        stack.kubectl("delete", "csnapsched", name, cases[name], "--wait=false")
    # Released before the operator stops: a stop in the middle of a release may lose its Event
    # (Events are best effort), which is not what this test is about.
    for name in up:
        await released(name)
    stack.operator.process.stop()
    stack.kubectl("delete", "csnapsched", "operator-down", cases["operator-down"], "--wait=false")

    # The collector acts on the foreground deletion while the operator is down.
    await eventually(
        lambda: witness_handled("operator-down"), timeout=60, what="the collector's pass"
    )
    assert exists(stack, "csnapsched", "operator-down"), "released without the operator"
    stack.operator.restart()
    await released("operator-down")
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
    disk = await disk_holding(stack, outside=4)
    retained = schedule_manifest(
        stack,
        "retained",
        sources={"volumeIDs": [disk]},
        snapshotTemplate={"spec": {"deletionPolicy": "Retain"}},
    )
    stack.kubectl("apply", "-f", "-", input=retained)
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


def slot_of(child: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(child["metadata"]["annotations"][SLOT_ANNOTATION])


async def test_jitter_not_below_the_slot_interval_is_refused_and_every_source_run_is_accounted(
    stack: Stack,
) -> None:
    """jitterSeconds 60 on a per-minute schedule would jitter creates past the next slot, where
    they were silently never made: the spec is refused, naming both fields, and makes nothing
    while a witness schedule beside it runs a slot. With jitterSeconds 50, every source of every
    run that has ended has its child, or a MissedRun names it."""
    disks = [await stack.add_volume() for _ in range(3)]
    witness = {"volumeIDs": [await stack.add_volume()]}
    stack.kubectl("apply", "-f", "-", input=schedule_manifest(stack, "witness", sources=witness))
    too_wide = schedule_manifest(
        stack,
        "jittered",
        sources={"volumeIDs": disks},
        retention={"maxCount": 5, "minReady": 1},  # no child of the runs watched is deleted
        jitterSeconds=60,
        startingDeadlineSeconds=300,
    )
    stack.kubectl("apply", "-f", "-", input=too_wide)

    synced = await eventually(
        lambda: condition({"status": schedule_status(stack, "jittered")}, "Synced"),
        timeout=30,
        what="the jittered schedule's Synced condition",
    )
    assert (synced["status"], synced["reason"]) == ("False", "InvalidSpec")
    assert synced["message"].startswith("spec.jitterSeconds, spec.schedule: ")
    assert "less than the 60 s between two slots" in synced["message"]
    refused_at = datetime.now(UTC)
    # Watch the refused schedule through a whole slot that the witness runs.
    await eventually(
        lambda: any(slot_of(c) > refused_at for c in children(stack, "witness")),
        timeout=2 * 60 + 30,
        what="the witness's run of a slot after the refusal",
    )
    assert children(stack, "jittered") == []
    assert "lastScheduleTime" not in schedule_status(stack, "jittered")
    assert event_messages(stack, "jittered", "Run") == []
    assert len(event_messages(stack, "jittered", "InvalidSpec")) == 1

    patch = json.dumps({"spec": {"jitterSeconds": 50}})
    stack.kubectl("patch", "csnapsched", "jittered", "--type=merge", "-p", patch)

    def ended_runs() -> list[str]:
        """The slots of the runs that are over: a later one has been posted."""
        runs = sorted(m.split()[2] for m in event_messages(stack, "jittered", "Run"))
        return runs[:-1]

    ended = await eventually(
        lambda: len(ended_runs()) >= 2 and ended_runs(), timeout=4 * 60, what="two ended runs"
    )
    made = Counter(
        c["metadata"]["annotations"][SLOT_ANNOTATION] for c in children(stack, "jittered")
    )
    missed = event_messages(stack, "jittered", "MissedRun")
    for run in ended:
        named = sum(m.count("volume/") for m in missed if run in m)
        assert made[run] + named == len(disks), (run, made, missed)
    everywhere = missed + event_messages(stack, "witness", "MissedRun")
    assert stack.metric("cloudsnap_schedule_missed_runs_total") == sum(
        m.count("volume/") for m in everywhere
    )


async def test_a_child_refused_with_a_long_message_blocks_its_source_without_wedging(
    stack: Stack,
) -> None:
    """Three invalid template label values make the API server refuse each child with a message
    longer than sources[].blocked may hold. It is cut and the status is written: every slot is
    recorded and its Run posted once however often the source is retried (every 30 s),
    RunBlocked is posted once for the one cause, and each run that ends without the child is a
    MissedRun."""
    disk = await stack.add_volume()
    labels = {key: f"not a valid label value {key} " + "x" * 30 for key in ("team", "tier", "app")}
    manifest = schedule_manifest(
        stack,
        "refused",
        sources={"volumeIDs": [disk]},
        snapshotTemplate={"metadata": {"labels": labels}},
    )
    stack.kubectl("apply", "-f", "-", input=manifest)

    def blocked() -> str | None:
        entries = schedule_status(stack, "refused").get("sources") or [{}]
        text: str | None = entries[0].get("blocked")
        return text

    text = await eventually(blocked, timeout=90, what="the source reported blocked")
    assert text.startswith("the API server refused the child: 422")
    assert text.endswith("..."), text  # cut: the refusal is longer than the field
    assert len(text) <= 1024
    assert text.count("Invalid value") >= 2
    first = schedule_status(stack, "refused")["lastScheduleTime"]

    def runs() -> list[str]:
        return event_messages(stack, "refused", "Run")

    # Three more slots, each looked at again every 30 s while blocked; then no new run.
    await eventually(lambda: len(set(runs())) >= 4, timeout=5 * 60, what="four runs")
    stack.kubectl("patch", "csnapsched", "refused", "--type=merge", "-p", SUSPEND)
    await eventually(
        lambda: "nextScheduleTime" not in schedule_status(stack, "refused"),
        timeout=30,
        what="the suspension recorded",
    )
    status = schedule_status(stack, "refused")
    assert status["lastScheduleTime"] > first
    slots = set(runs())
    assert len(runs()) == len(slots), runs()  # one Run per slot
    await eventually(
        lambda: stack.metric("cloudsnap_schedule_runs_total") == len(slots),
        timeout=10,
        what="one run counted per slot",
    )
    assert len(event_messages(stack, "refused", "RunBlocked")) == 1
    missed = event_messages(stack, "refused", "MissedRun")
    assert len(missed) == len(slots) - 1, missed  # every run but the latest has ended
    assert all(f"volume/{disk}" in m for m in missed)
    assert children(stack, "refused") == []
    assert condition({"status": status}, "Synced")["status"] == "True"


async def test_one_refusal_frees_one_place_however_long_the_freed_child_takes_to_go(
    start_stack: StartStack,
) -> None:
    """A disk full at three children; the fourth run's child is refused, and the oldest child is
    deleted for room, its EVS deletion taking 40 s, longer than any step's memory; the operator
    is restarted meanwhile. When the freed child goes, its deletion wakes the schedule while the
    refused child's retry is under way: no second child (one of two Ready beyond minReady) is
    deleted for the same refusal."""
    stack = await start_stack(delete_seconds=40.0)
    disk = await disk_holding(stack, outside=4)
    spec = schedule_manifest(
        stack,
        "room",
        sources={"volumeIDs": [disk]},
        retention={"maxCount": 3, "minReady": 1},
        snapshotTemplate={"spec": {"deletionPolicy": "Delete"}},
    )
    stack.kubectl("apply", "-f", "-", input=spec)

    def for_room() -> list[str]:
        return [m for m in event_messages(stack, "room", "RetentionDeleted") if "(DiskLimit)" in m]

    await eventually(for_room, timeout=5 * 60, what="a child deleted for room")
    stack.kubectl("patch", "csnapsched", "room", "--type=merge", "-p", SUSPEND)
    [freed] = [m.split()[0] for m in for_room()]
    stack.operator.process.kill()  # a new process: no memory of the place it made
    stack.operator.restart()

    def all_ready() -> list[dict[str, Any]] | None:
        kids = children(stack, "room")
        ready = [k for k in kids if condition(k, "Ready").get("status") == "True"]
        return ready if stack.get(freed) is None and len(ready) == len(kids) == 3 else None

    kept = await eventually(all_ready, timeout=120, what="the refused child Ready, the freed gone")
    # A refusal read after the freed child went would free a second place within a step.
    await stack.resync_window()
    assert len(for_room()) == 1, for_room()
    assert {k["metadata"]["name"] for k in children(stack, "room")} == {
        k["metadata"]["name"] for k in kept
    }
    assert len(await stack.snapshots_of(disk)) == 7
