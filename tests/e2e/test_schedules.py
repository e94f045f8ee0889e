"""A CloudSnapshotSchedule against the real control plane and the simulator, on a per-minute
schedule: runs make one child per source, retention keeps maxCount Ready children per source
(rotating on a disk EVS already holds full), and an operator SIGKILLed right after a slot's
create makes no second child or snapshot for that slot.

Sources are volume IDs only: children of PersistentVolumeClaims need CloudSnapshot's
spec.persistentVolumeClaimName, which this API does not have yet. Nothing relies on garbage
collection (the local control plane runs no controller-manager).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from cloudsnap.api.constants import SOURCE_ANNOTATION
from tests.e2e.support import make_snapshot_outside
from tests.fixtures.operator import Stack, condition
from tests.waiting import eventually

MAX_COUNT = 3
RUNS = 5
# Per-minute slots: a run every 60 s, plus the Lease a restarted operator waits for (15 s).
RUN_TIMEOUT = 60.0 * (RUNS + 3)
SUSPEND = json.dumps({"spec": {"suspend": True}})


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


async def test_runs_rotate_and_survive_a_kill_across_a_slot(stack: Stack) -> None:
    clean = await stack.add_volume()
    full = await stack.add_volume()
    for _ in range(7 - MAX_COUNT):  # made outside the cluster: the disk is full at 3 of ours
        make_snapshot_outside(stack, full)
    manifest = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshotSchedule",
        "metadata": {"name": "every-minute", "namespace": stack.namespace},
        "spec": {
            "schedule": "* * * * *",
            "sources": {"volumeIDs": [clean, full]},
            "retention": {"maxCount": MAX_COUNT, "minReady": 1},
            "snapshotTemplate": {"spec": {"description": "e2e"}},
        },
    }
    stack.kubectl("apply", "-f", "-", input=json.dumps(manifest))

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
    want = {f"volume/{clean}": 0, f"volume/{full}": 7 - MAX_COUNT}  # outside snapshots

    async def settled() -> dict[str, list[dict[str, Any]]] | None:
        everything = json.loads(stack.kubectl("get", "csnap", "-o", "json").stdout)["items"]
        by_source: dict[str, list[dict[str, Any]]] = {}
        for child in everything:
            source = child["metadata"]["annotations"][SOURCE_ANNOTATION]
            by_source.setdefault(source, []).append(child)
        if sorted(by_source) != sorted(want):
            return None
        for source, kids in by_source.items():
            if len(kids) != MAX_COUNT:
                return None
            if any(condition(k, "Ready").get("status") != "True" for k in kids):
                return None
            on_disk = await stack.snapshots_of(source.removeprefix("volume/"))
            if len(on_disk) != MAX_COUNT + want[source]:
                return None
            if not {k["status"]["snapshotID"] for k in kids} <= {s["id"] for s in on_disk}:
                return None
        status = schedule_status(stack, "every-minute")
        if condition({"status": status}, "Ready").get("status") != "True":
            return None
        return by_source

    by_source = await eventually(settled, timeout=60, what=f"{MAX_COUNT} kept per source")

    # Each slot made at most one child, and one EVS snapshot, per source: across the kill too.
    every = [s for s in await stack.admin.snapshots() if s["volume_id"] in (clean, full)]
    names = Counter(s["name"] for s in every if s["name"] != "handmade")
    assert names, "no snapshot made by the schedule"
    assert max(names.values()) == 1, names

    # The oldest went: every deleted child is older than every kept one of its source.
    deleted = event_messages(stack, "every-minute", "RetentionDeleted")
    for volume in (clean, full):
        kept_names = sorted(c["metadata"]["name"] for c in by_source[f"volume/{volume}"])
        gone = sorted(m.split()[0] for m in deleted if volume[:8] in m)
        assert gone, f"nothing of {volume} deleted"
        assert max(n[-13:] for n in gone) < min(n[-13:] for n in kept_names)
    # The full disk rotated by making room, and no child of it is left refused.
    assert any("(DiskLimit)" in m for m in deleted)
    assert stack.operator.restarts == 1
