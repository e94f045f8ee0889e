"""The schedule controller's steps against an in-memory API and a fake clock: children per slot
and source, idempotent creates, retention by the name and UID labels, room on a full disk, status,
Events, the schedule's deletion, and nothing done while not leading."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudsnap.api.constants import (
    ROOM_ANNOTATION,
    SCHEDULE_LABEL,
    SCHEDULE_UID_LABEL,
    SLOT_ANNOTATION,
    SOURCE_ANNOTATION,
)
from cloudsnap.api.schedule import LabelSelector
from cloudsnap.reconcile import Event
from cloudsnap.schedules import (
    SCHEDULE_FINALIZER,
    ChildRefused,
    ScheduleController,
    selector_string,
)

VOLUME_A = "5aa119a8-d25b-45a7-8d1b-88e127885635"
VOLUME_B = "7b1c0e8e-3f0a-4d59-9a49-1f6f3c3b5f21"
NS = "prod"
CREATED = datetime(2026, 6, 1, 9, 10, tzinfo=UTC)


class MemoryStore:
    """The API server as a schedule step sees it: CloudSnapshots, claims and one schedule."""

    def __init__(self) -> None:
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.claims: list[dict[str, Any]] = []
        self.schedule: dict[str, Any] = {}
        self.creates = 0
        self.deleted: list[str] = []
        self.uids = (f"uid-{n}" for n in itertools.count())
        self.now = CREATED
        self.events: list[Event] = []
        self.serves_claims = True
        self.slow_deletes = False
        """Deletions leave the object with a deletionTimestamp until ``finish_deletes``."""

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(s) for s in self.snapshots.values()]

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if "persistentVolumeClaimName" in body["spec"] and not self.serves_claims:
            raise ChildRefused(
                '422 Unprocessable Entity: unknown field "persistentVolumeClaimName"'
            )
        if name in self.snapshots:
            return copy.deepcopy(self.snapshots[name])
        self.creates += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["uid"] = next(self.uids)
        stored["metadata"]["resourceVersion"] = "1"
        stored["metadata"]["creationTimestamp"] = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.snapshots[name] = stored
        return copy.deepcopy(stored)

    async def delete_snapshot(self, namespace: str, name: str, uid: str) -> None:
        if name in self.snapshots and self.snapshots[name]["metadata"]["uid"] == uid:
            meta = self.snapshots[name]["metadata"]
            if "deletionTimestamp" not in meta:
                self.deleted.append(name)
            if self.slow_deletes:
                meta["deletionTimestamp"] = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                del self.snapshots[name]

    def finish_deletes(self) -> None:
        for name in [
            n for n, s in self.snapshots.items() if s["metadata"].get("deletionTimestamp")
        ]:
            del self.snapshots[name]

    async def detach_snapshot(self, namespace: str, name: str, uid: str, owner_uid: str) -> None:
        meta = self.snapshots[name]["metadata"]
        meta["ownerReferences"] = [r for r in meta["ownerReferences"] if r["uid"] != owner_uid]
        meta["labels"][SCHEDULE_UID_LABEL] = owner_uid

    async def annotate_snapshot(
        self, namespace: str, name: str, uid: str, key: str, value: str
    ) -> None:
        if name in self.snapshots and self.snapshots[name]["metadata"]["uid"] == uid:
            self.snapshots[name]["metadata"]["annotations"][key] = value

    async def list_claims(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert selector == "app=postgres"
        return self.claims

    async def patch_status(
        self, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        self.schedule["status"] = copy.deepcopy(dict(status))
        return copy.deepcopy(self.schedule)

    async def set_finalizers(
        self,
        namespace: str,
        name: str,
        uid: str,
        finalizers: Sequence[str],
        resource_version: str,
    ) -> dict[str, Any] | None:
        self.schedule["metadata"]["finalizers"] = list(finalizers)
        return copy.deepcopy(self.schedule)

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        self.events.append(event)

    def make_ready(self, *names: str, policy: str = "Delete") -> None:
        """Ready, with the deletion policy the snapshot lifecycle records at create."""
        for name in names or list(self.snapshots):
            self.snapshots[name]["status"] = {
                "snapshotID": f"snap-{self.snapshots[name]['metadata']['uid']}",
                "volumeID": self.snapshots[name]["spec"].get("volumeID"),
                "deletionPolicy": policy,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Available"}],
            }

    def refuse_for_room(self, name: str) -> None:
        """EVS refused the child's create: the disk holds its limit of snapshots."""
        self.snapshots[name]["status"] = {
            "error": {
                "code": "EVS.5413",
                "message": "full",
                "retryable": False,
                "time": self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }


class World:
    """A controller, its store and a fake clock; ``step`` runs one schedule step at ``now``."""

    def __init__(self, **spec: Any) -> None:
        self.store = MemoryStore()
        self.events = self.store.events
        self.leading = True
        self.controller = self.new_controller()
        self.store.schedule = {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshotSchedule",
            "metadata": {
                "name": "db",
                "namespace": NS,
                "uid": "sched-uid",
                "generation": 1,
                "resourceVersion": "1",
                "creationTimestamp": CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": {
                "schedule": "0 * * * *",
                "sources": {"volumeIDs": [VOLUME_A, VOLUME_B]},
                "retention": {"maxCount": 2, "minReady": 1},
                "snapshotTemplate": {
                    "metadata": {"labels": {"team": "db"}},
                    "spec": {"force": True, "description": "hourly"},
                },
                **spec,
            },
        }

    def new_controller(self) -> ScheduleController:
        """A controller with no memory of earlier steps, as after a restart or a handover."""
        return ScheduleController(
            self.store,
            max_workers=4,
            may_act=lambda: self.leading,
            clock=lambda: self.store.now,
        )

    async def step(self, at: datetime | None = None) -> float | None:
        if at is not None:
            self.store.now = at
        self.controller.observe("MODIFIED", copy.deepcopy(self.store.schedule))
        return await self.controller.step(f"{NS}/db")

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.store.schedule.get("status", {})
        return status

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def hour(h: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 6, 1, h, minute, second, tzinfo=UTC)


async def test_a_slot_makes_one_child_per_source_with_labels_and_template() -> None:
    world = World()
    wait = await world.step()
    assert world.store.snapshots == {}
    assert wait == pytest.approx(50 * 60, abs=1)  # until 10:00
    assert world.store.schedule["metadata"]["finalizers"] == [SCHEDULE_FINALIZER]
    await world.step(hour(10, 0, 1))
    assert len(world.store.snapshots) == 2
    child = next(iter(world.store.snapshots.values()))
    meta = child["metadata"]
    assert meta["labels"][SCHEDULE_LABEL] == "db"
    assert meta["labels"]["team"] == "db"
    assert meta["annotations"][SLOT_ANNOTATION] == "2026-06-01T10:00:00Z"
    assert meta["labels"][SCHEDULE_UID_LABEL] == "sched-uid"
    assert "ownerReferences" not in meta  # no garbage collector deletes it with the schedule
    assert child["spec"]["force"] is True
    assert child["spec"]["description"] == "hourly"
    assert {c["spec"]["volumeID"] for c in world.store.snapshots.values()} == {
        VOLUME_A,
        VOLUME_B,
    }
    assert world.status["lastScheduleTime"].startswith("2026-06-01T10:00:00")
    assert world.status["nextScheduleTime"].startswith("2026-06-01T11:00:00")
    assert world.status["sourceCount"] == 2
    assert world.reasons() == ["Run"]


async def test_a_slot_is_made_once_even_when_its_status_was_lost() -> None:
    world = World()
    await world.step(hour(10, 0, 1))
    await world.step(hour(10, 5))
    assert world.store.creates == 2
    world.store.schedule["status"] = {}  # a crash before the status write
    world.store.schedule["metadata"]["creationTimestamp"] = "2026-06-01T09:10:00Z"
    world.controller = world.new_controller()  # the restarted operator remembers nothing
    await world.step(hour(10, 6))
    assert world.store.creates == 2  # the same names: nothing new
    assert len(world.store.snapshots) == 2


async def test_retention_keeps_max_count_ready_and_never_touches_others() -> None:
    world = World()
    for h in range(10, 14):
        await world.step(hour(h, 0, 1))
        world.store.make_ready()
    # A CloudSnapshot of the same disk with the schedule's name label but not its UID label.
    world.store.snapshots["manual"] = {
        "metadata": {
            "name": "manual",
            "uid": "manual-uid",
            "labels": {SCHEDULE_LABEL: "db"},
            "annotations": {SOURCE_ANNOTATION: f"volume/{VOLUME_A}"},
            "creationTimestamp": "2026-06-01T08:00:00Z",
        },
        "spec": {"volumeID": VOLUME_A},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    await world.step(hour(13, 30))
    ours = [
        s for s in world.store.snapshots.values() if SCHEDULE_UID_LABEL in s["metadata"]["labels"]
    ]
    assert len(ours) == 4  # 2 per source
    assert "manual" in world.store.snapshots
    assert {s["metadata"]["annotations"][SLOT_ANNOTATION] for s in ours} == {
        "2026-06-01T12:00:00Z",
        "2026-06-01T13:00:00Z",
    }
    assert world.reasons().count("RetentionDeleted") == 4
    entry = world.status["sources"][0]
    assert entry["ready"] == 2
    assert entry["newestReady"].endswith("20260601-1300")
    assert world.status["lastSuccessfulTime"].startswith("2026-06-01T13:00:00")
    ready = {c["type"]: c for c in world.status["conditions"]}["Ready"]
    assert ready["status"] == "True"


async def test_jitter_spreads_the_creates_and_wakes_for_each() -> None:
    """With these names the delays are 23 s (VOLUME_A) and 410 s (VOLUME_B)."""
    world = World(jitterSeconds=600, startingDeadlineSeconds=900)
    assert await world.step(hour(10)) == pytest.approx(23, abs=0.1)
    assert world.store.snapshots == {}
    await world.step(hour(10, 0, 22))
    assert world.store.snapshots == {}
    assert await world.step(hour(10, 0, 23)) == pytest.approx(410 - 23, abs=0.1)
    assert [c["spec"]["volumeID"] for c in world.store.snapshots.values()] == [VOLUME_A]
    await world.step(hour(10, 6, 50))
    assert len(world.store.snapshots) == 2
    assert world.reasons() == ["Run"]


async def test_a_run_past_the_starting_deadline_is_skipped_with_an_event() -> None:
    world = World(startingDeadlineSeconds=60)
    await world.step(hour(10, 5))
    assert world.store.snapshots == {}
    assert world.reasons() == ["MissedRun"]
    assert world.status["lastMissedTime"].startswith("2026-06-01T10:00:00")
    await world.step(hour(10, 6))
    assert world.reasons() == ["MissedRun"]  # reported once


async def test_a_full_disk_with_nothing_to_delete_blocks_the_source() -> None:
    world = World(retention={"maxCount": 1, "minReady": 1})
    for n in range(7):
        world.store.snapshots[f"other{n}"] = {
            "metadata": {
                "name": f"other{n}",
                "uid": f"o{n}",
                "creationTimestamp": "2026-06-01T00:00:00Z",
            },
            "spec": {"volumeID": VOLUME_A},
            "status": {"snapshotID": f"s{n}"},
        }
    await world.step(hour(10, 0, 1))
    assert {c["spec"]["volumeID"] for c in world.store.snapshots.values()} == {VOLUME_A, VOLUME_B}
    assert world.store.creates == 1  # only VOLUME_B's
    assert "RunBlocked" in world.reasons()
    blocked = [e for e in world.status["sources"] if e.get("blocked")]
    assert [e["source"] for e in blocked] == [f"volume/{VOLUME_A}"]
    assert {c["type"]: c for c in world.status["conditions"]}["Ready"]["reason"] == "Blocked"


async def full_disk(world: World) -> str:
    """Three Ready hourly children of VOLUME_A and the 13:00 one EVS refused for room."""
    for h in range(10, 13):
        await world.step(hour(h, 0, 1))
        world.store.make_ready()
    await world.step(hour(13, 0, 1))
    [refused] = [n for n in world.store.snapshots if n.endswith("-1300")]
    world.store.refuse_for_room(refused)
    return refused


async def test_one_refusal_frees_one_place_whoever_leads_and_however_slow_the_deletion() -> None:
    """The place made is recorded on the refused child: neither a slow deletion nor a new
    leader with no memory frees a second one; a refusal after the freed child is gone asks
    for the next."""
    world = World(sources={"volumeIDs": [VOLUME_A]}, retention={"maxCount": 3, "minReady": 1})
    world.store.slow_deletes = True
    refused = await full_disk(world)
    assert await world.step(hour(13, 0, 2)) == pytest.approx(30.0)
    assert [n[-4:] for n in world.store.deleted] == ["1000"]
    for minute in range(1, 11):  # ten minutes of a deletion under way, a new leader each minute
        world.controller = world.new_controller()
        await world.step(hour(13, minute))
    assert [n[-4:] for n in world.store.deleted] == ["1000"]
    world.store.finish_deletes()
    for second in (10, 40):  # gone; the refusal read meanwhile predates it
        world.controller = world.new_controller()
        await world.step(hour(13, 11, second))
    assert [n[-4:] for n in world.store.deleted] == ["1000"]
    world.store.refuse_for_room(refused)  # refused again: the place was taken meanwhile
    world.controller = world.new_controller()
    await world.step(hour(13, 12))
    assert [n[-4:] for n in world.store.deleted] == ["1000", "1100"]


async def test_a_place_marked_but_never_freed_is_made_again() -> None:
    """A step stopped between the mark and the deletion: the mark names a child that is not
    being deleted, so it counts as none."""
    world = World(sources={"volumeIDs": [VOLUME_A]}, retention={"maxCount": 3, "minReady": 1})
    refused = await full_disk(world)
    [oldest] = [n for n in world.store.snapshots if n.endswith("-1000")]
    world.store.snapshots[refused]["metadata"]["annotations"][ROOM_ANNOTATION] = json.dumps(
        {"uid": world.store.snapshots[oldest]["metadata"]["uid"], "name": oldest, "at": "x"}
    )
    await world.step(hour(13, 0, 2))
    assert [n[-4:] for n in world.store.deleted] == ["1000"]


async def test_retain_children_are_rotated_but_never_deleted_for_room() -> None:
    """Rotating out a Retain child leaves its EVS snapshot, recorded and counted; once the disk
    is full, no Retain child is deleted for a place it would not free: the source is blocked,
    naming what fills the disk."""
    world = World(sources={"volumeIDs": [VOLUME_A]}, retention={"maxCount": 2, "minReady": 1})
    for h in range(10, 13):
        await world.step(hour(h, 0, 1))
        world.store.make_ready(policy="Retain")
    await world.step(hour(13, 0, 1))
    [entry] = world.status["sources"]
    [rotated] = world.store.deleted
    assert entry["retainedSnapshotIDs"] == [f"snap-{rotated_uid(world, rotated)}"]
    assert any("stays on the disk" in e.message for e in world.events)
    refused = next(n for n in world.store.snapshots if n.endswith("-1300"))
    world.store.refuse_for_room(refused)
    before = list(world.store.deleted)
    for minute in range(1, 5):
        await world.step(hour(13, minute))
    assert world.store.deleted == before
    [entry] = world.status["sources"]
    assert "no child of this schedule may be deleted to free a place" in entry["blocked"]
    assert "2 of its children (2 of them kept by deletionPolicy Retain)" in entry["blocked"]
    assert entry["retainedSnapshotIDs"][0] in entry["blocked"]
    assert len(entry["blocked"]) <= 1024
    assert world.reasons().count("RunBlocked") == 1


def rotated_uid(world: World, name: str) -> str:
    """The UID the memory store gave the child of that name (in creation order)."""
    order = sorted(world.store.deleted + list(world.store.snapshots))
    return f"uid-{order.index(name)}"


async def test_children_made_with_an_owner_reference_are_detached_from_it() -> None:
    """Children of an earlier version carry an ownerReference, which a foreground deletion of
    the schedule would have the garbage collector follow: a step moves them to the UID label."""
    world = World(sources={"volumeIDs": [VOLUME_A]})
    await world.step(hour(10, 0, 1))
    [child] = world.store.snapshots.values()
    del child["metadata"]["labels"][SCHEDULE_UID_LABEL]
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshotSchedule",
            "name": "db",
            "uid": "sched-uid",
            "controller": True,
        }
    ]
    await world.step(hour(10, 1))
    assert child["metadata"]["ownerReferences"] == []
    assert child["metadata"]["labels"][SCHEDULE_UID_LABEL] == "sched-uid"
    assert world.store.creates == 1


async def test_claims_selected_at_each_run_become_sources() -> None:
    world = World(sources={"persistentVolumeClaimSelector": {"matchLabels": {"app": "postgres"}}})
    world.store.claims = [{"metadata": {"name": "data-0"}}]
    await world.step(hour(10, 0, 1))
    world.store.claims.append({"metadata": {"name": "data-1"}})
    await world.step(hour(11, 0, 1))
    claims = sorted(
        (c["spec"]["persistentVolumeClaimName"], c["metadata"]["annotations"][SLOT_ANNOTATION])
        for c in world.store.snapshots.values()
    )
    assert claims == [
        ("data-0", "2026-06-01T10:00:00Z"),
        ("data-0", "2026-06-01T11:00:00Z"),
        ("data-1", "2026-06-01T11:00:00Z"),
    ]


async def test_a_claim_child_without_a_disk_blocks_its_source_until_the_next_run_replaces_it() -> (
    None
):
    world = World(sources={"persistentVolumeClaimSelector": {"matchLabels": {"app": "postgres"}}})
    world.store.claims = [{"metadata": {"name": "data-0"}}]
    await world.step(hour(10, 0, 1))
    [first] = world.store.snapshots
    message = "PersistentVolumeClaim prod/data-0 is not bound to a PersistentVolume yet"
    world.store.snapshots[first]["status"] = {
        "error": {"code": "ClaimNotBound", "message": message},
        "conditions": [{"type": "Ready", "status": "False", "reason": "Error"}],
    }
    await world.step(hour(10, 0, 2))
    await world.step(hour(10, 0, 3))
    [entry] = world.status["sources"]
    assert entry["blocked"] == f"ClaimNotBound: {message}"
    assert (entry["creating"], entry["failed"]) == (1, 0)
    assert world.reasons() == ["Run", "RunBlocked"]
    # The next run's child replaces it (it asked EVS for nothing): one waiting child, not two.
    await world.step(hour(11, 0, 1))
    await world.step(hour(11, 0, 2))
    assert world.store.deleted == [first]
    [second] = world.store.snapshots
    assert second.endswith("-1100")
    assert "blocked" not in world.status["sources"][0]


async def test_a_refused_child_blocks_its_source_only_and_is_reported_once() -> None:
    world = World(
        sources={
            "volumeIDs": [VOLUME_A],
            "persistentVolumeClaimSelector": {"matchLabels": {"app": "postgres"}},
        }
    )
    world.store.serves_claims = False
    world.store.claims = [{"metadata": {"name": "data-0"}}]
    assert await world.step(hour(10, 0, 1)) == 30.0
    assert [c["spec"]["volumeID"] for c in world.store.snapshots.values()] == [VOLUME_A]
    await world.step(hour(10, 0, 31))
    assert world.reasons() == ["Run", "RunBlocked"]
    [blocked] = [e for e in world.status["sources"] if e.get("blocked")]
    assert blocked["source"] == "pvc/data-0"
    assert "persistentVolumeClaimName" in blocked["blocked"]


def test_selector_string() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"app": "postgres"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "skip", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector_string(selector) == "app=postgres,tier in (a,b),!skip"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"timeZone": "Mars/Olympus_Mons"}, "spec.timeZone"),
        ({"schedule": "0 25 * * *"}, "spec.schedule: hour: 25"),
        ({"schedule": "0 0 30 2 *"}, "spec.schedule: the schedule has no slot"),
    ],
)
async def test_an_unrunnable_spec_is_reported_with_its_field(
    spec: dict[str, Any], field: str
) -> None:
    world = World(**spec)
    assert await world.step(hour(10, 0, 1)) is None
    synced = {c["type"]: c for c in world.status["conditions"]}["Synced"]
    assert synced["status"] == "False"
    assert synced["reason"] == "InvalidSpec"
    assert field in synced["message"]
    assert world.store.snapshots == {}


@pytest.mark.parametrize("delete_children", [False, True])
async def test_deleting_the_schedule_keeps_or_deletes_its_children(delete_children: bool) -> None:
    world = World(deleteChildrenOnDelete=delete_children)
    await world.step(hour(10, 0, 1))
    world.store.schedule["metadata"]["deletionTimestamp"] = "2026-06-01T10:30:00Z"
    await world.step(hour(10, 30))
    assert world.store.schedule["metadata"]["finalizers"] == []
    if delete_children:
        assert world.store.snapshots == {}
    else:
        assert len(world.store.snapshots) == 2
        assert all(
            s["metadata"]["labels"][SCHEDULE_UID_LABEL] == "sched-uid"
            and "ownerReferences" not in s["metadata"]
            for s in world.store.snapshots.values()
        )


async def test_nothing_is_done_while_not_leading() -> None:
    world = World()
    world.leading = False
    assert await world.step(hour(10, 0, 1)) == 1.0
    assert world.store.snapshots == {}
    assert "status" not in world.store.schedule
