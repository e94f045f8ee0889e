"""The schedule controller's steps against an in-memory API and a fake clock: children per slot
and source, idempotent creates, retention by the name and UID labels, room on a full disk, status,
Events, the schedule's deletion, and nothing done while not leading."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudsnap import metrics
from cloudsnap.api.constants import (
    ROOM_ANNOTATION,
    RUN_NOW_ANNOTATION,
    SCHEDULE_LABEL,
    SCHEDULE_UID_LABEL,
    SLOT_ANNOTATION,
    SOURCE_ANNOTATION,
)
from cloudsnap.api.schedule import LabelSelector
from cloudsnap.controllers.schedule.controller import (
    SCHEDULE_FINALIZER,
    ScheduleController,
    selector_string,
)
from cloudsnap.runtime.writes import Event, Refused
from tests.fixtures.objects import MemoryObjects

VOLUME_A = "5aa119a8-d25b-45a7-8d1b-88e127885635"
VOLUME_B = "7b1c0e8e-3f0a-4d59-9a49-1f6f3c3b5f21"
NS = "prod"
SCHEDULE = "db"
CREATED = datetime(2026, 6, 1, 9, 10, tzinfo=UTC)


class MemoryStore(MemoryObjects):
    """The API server as a schedule step sees it: CloudSnapshots, claims and one schedule (the
    object ``MemoryObjects`` writes); with ``status_refused`` its status writes fail."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.claims: list[dict[str, Any]] = []
        self.creates = 0
        self.create_requests = 0
        """Every create sent, including those answered with the object already there."""
        self.deleted: list[str] = []
        self.uids = (f"uid-{n}" for n in itertools.count())
        self.now = CREATED
        self.serves_claims = True
        self.slow_deletes = False
        """Deletions leave the object with a deletionTimestamp until ``finish_deletes``."""
        self.refusals = 0
        self.status_refused = False

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(s) for s in self.snapshots.values()]

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if "persistentVolumeClaimName" in body["spec"] and not self.serves_claims:
            # Worded differently each time and long, as the API server's refusals can be.
            self.refusals += 1
            raise Refused(
                f'422 Unprocessable Entity: CloudSnapshot "{name}" is invalid (attempt'
                f' {self.refusals}): unknown field "persistentVolumeClaimName"; ' + "more " * 300
            )
        self.create_requests += 1
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

    @property
    def schedule(self) -> dict[str, Any]:
        """The schedule, as stored."""
        return self.objects[SCHEDULE]

    async def patch_status(
        self, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if self.status_refused:
            raise RuntimeError("500 Internal Server Error")
        return await super().patch_status(body, status)

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
        self.leading = True
        self.controller = self.start_controller()
        self.store.add(
            {
                "apiVersion": "evs.cloudsnap.io/v1alpha1",
                "kind": "CloudSnapshotSchedule",
                "metadata": {
                    "name": SCHEDULE,
                    "namespace": NS,
                    "uid": "sched-uid",
                    "generation": 1,
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
        )

    def start_controller(self) -> ScheduleController:
        """A new controller (a new operator process) over the same store."""
        self.controller = ScheduleController(
            self.store,
            max_workers=4,
            may_act=lambda: self.leading,
            clock=lambda: self.store.now,
        )
        return self.controller

    async def step(self, at: datetime | None = None) -> float | None:
        if at is not None:
            self.store.now = at
        self.controller.observe("MODIFIED", copy.deepcopy(self.store.schedule))
        return await self.controller.step(f"{NS}/db")

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.store.schedule.get("status", {})
        return status

    @property
    def events(self) -> list[Event]:
        return [event for _, event in self.store.events]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def hour(h: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 6, 1, h, minute, second, tzinfo=UTC)


def counted(metric: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric) or 0.0


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
    assert world.store.create_requests == 2
    world.store.schedule["status"] = {}  # a crash before the status write
    world.store.schedule["metadata"]["creationTimestamp"] = "2026-06-01T09:10:00Z"
    # A restarted operator: a new controller, which remembers no status it wrote before.
    world.start_controller()
    await world.step(hour(10, 6))
    # The loss was felt: the new controller ran the 10:00 slot again and sent both creates ...
    assert world.store.create_requests == 4
    # ... under the same names, so the API server made nothing new.
    assert world.store.creates == 2
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
        world.start_controller()
        await world.step(hour(13, minute))
    assert [n[-4:] for n in world.store.deleted] == ["1000"]
    world.store.finish_deletes()
    for second in (10, 40):  # gone; the refusal read meanwhile predates it
        world.start_controller()
        await world.step(hour(13, 11, second))
    assert [n[-4:] for n in world.store.deleted] == ["1000"]
    world.store.refuse_for_room(refused)  # refused again: the place was taken meanwhile
    world.start_controller()
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


async def test_children_force_attached_disks_unless_the_template_says_otherwise() -> None:
    """A schedule runs unattended: a disk a workload mounts (in-use) must not be refused at
    every run, so its children say force: true unless the template sets false."""
    world = World(sources={"volumeIDs": [VOLUME_A]}, snapshotTemplate={})
    await world.step(hour(10, 0, 1))
    assert [c["spec"]["force"] for c in world.store.snapshots.values()] == [True]
    detached_only = World(
        sources={"volumeIDs": [VOLUME_A]}, snapshotTemplate={"spec": {"force": False}}
    )
    await detached_only.step(hour(10, 0, 1))
    assert [c["spec"]["force"] for c in detached_only.store.snapshots.values()] == [False]


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
    assert "(attempt 2)" in blocked["blocked"]
    assert len(blocked["blocked"]) == 1024  # cut to the field's limit: the write is not refused
    await world.step(hour(11, 0, 1))  # the next slot's child, refused too: the same cause
    assert world.reasons() == ["Run", "RunBlocked", "MissedRun", "Run"]


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
        (
            {"schedule": "*/5 * * * *", "jitterSeconds": 300, "startingDeadlineSeconds": 900},
            "spec.jitterSeconds, spec.schedule: jitterSeconds (300) must be less than the 300 s",
        ),
        (
            {"schedule": "0,59 0,23 * * *", "jitterSeconds": 60},  # 23:59, then 00:00
            "spec.jitterSeconds, spec.schedule: jitterSeconds (60) must be less than the 60 s",
        ),
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
    assert SCHEDULE not in world.store.objects  # its finalizer removed, the API server let it go
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


@pytest.mark.parametrize(
    ("spec", "at", "reason", "metric"),
    [
        ({}, hour(10, 0, 1), "Run", "cloudsnap_schedule_runs_total"),
        (
            {"startingDeadlineSeconds": 60},
            hour(10, 5),
            "MissedRun",
            "cloudsnap_schedule_missed_runs_total",
        ),
    ],
)
async def test_a_step_run_again_on_the_same_stale_body_posts_and_counts_its_slot_once(
    spec: dict[str, Any], at: datetime, reason: str, metric: str
) -> None:
    """A child's event can wake the schedule before the watch brings back the status the step
    wrote: the second step still sees the body from before the run."""
    world = World(**spec)
    await world.step(hour(9, 30))
    stale = copy.deepcopy(world.store.schedule)
    before = counted(metric)
    world.store.now = at
    for _ in range(2):
        world.controller.observe("MODIFIED", copy.deepcopy(stale))
        await world.controller.step(f"{NS}/db")
    assert world.reasons().count(reason) == 1
    assert counted(metric) == before + 1
    assert world.status["lastScheduleTime" if reason == "Run" else "lastMissedTime"].startswith(
        "2026-06-01T10:00:00"
    )


async def test_a_run_is_posted_and_counted_once_its_status_is_written() -> None:
    world = World()
    before = counted("cloudsnap_schedule_runs_total")
    world.store.status_refused = True
    with pytest.raises(RuntimeError):
        await world.step(hour(10, 0, 1))
    assert world.reasons() == []
    assert counted("cloudsnap_schedule_runs_total") == before
    world.store.status_refused = False
    await world.step(hour(10, 0, 31))  # the scheduler's retry
    await world.step(hour(10, 1))
    assert world.reasons() == ["Run"]
    assert counted("cloudsnap_schedule_runs_total") == before + 1
    assert world.store.creates == 2


async def test_every_source_run_a_run_does_not_make_is_a_missed_run() -> None:
    """Berlin springs forward on 29 March 2026: the slot of 01:59 CET (00:59 UTC) is followed a
    minute later by that of 03:00 CEST (02:59 being skipped). Both sources' creates of 00:59
    are jittered past 01:00 (201 s and 197 s), so that run makes neither child."""
    world = World(
        schedule="59 * * * *",
        timeZone="Europe/Berlin",
        jitterSeconds=300,
        startingDeadlineSeconds=900,
    )
    world.store.schedule["metadata"]["creationTimestamp"] = "2026-03-29T00:30:00Z"
    before = counted("cloudsnap_schedule_missed_runs_total")
    at = datetime(2026, 3, 29, 0, 59, 1, tzinfo=UTC)
    while at < datetime(2026, 3, 29, 1, 10, tzinfo=UTC):
        wait = await world.step(at)
        assert wait is not None
        at += timedelta(seconds=wait)
    slots = sorted(
        c["metadata"]["annotations"][SLOT_ANNOTATION] for c in world.store.snapshots.values()
    )
    assert slots == ["2026-03-29T01:00:00Z"] * 2
    [missed] = [e.message for e in world.events if e.reason == "MissedRun"]
    assert missed == (
        "the run of 2026-03-29T00:59:00Z ended without a child of 2 source(s):"
        f" volume/{VOLUME_A}, volume/{VOLUME_B}"
    )
    assert counted("cloudsnap_schedule_missed_runs_total") == before + 2
    assert world.reasons().count("Run") == 2


def ask_for_a_run(world: World, value: str) -> None:
    annotations = world.store.schedule["metadata"].setdefault("annotations", {})
    annotations[RUN_NOW_ANNOTATION] = value


async def test_the_run_now_annotation_makes_one_extra_run_once_per_value() -> None:
    world = World(jitterSeconds=1800)
    await world.step(hour(9, 20))
    assert world.store.snapshots == {}
    ask_for_a_run(world, "first")
    await world.step(hour(9, 20, 30))
    slots = {c["metadata"]["annotations"][SLOT_ANNOTATION] for c in world.store.snapshots.values()}
    assert slots == {"2026-06-01T09:20:00Z"}  # both sources at once: no jitter for it
    assert len(world.store.snapshots) == 2
    assert world.status["runNow"] == {"value": "first", "slot": "2026-06-01T09:20:00Z"}
    assert world.reasons() == ["Run"]
    await world.step(hour(9, 40))
    assert world.store.creates == 2  # the same value asks for nothing more
    ask_for_a_run(world, "second")  # in a later minute: one more run
    await world.step(hour(9, 41))
    assert world.store.creates == 4
    ask_for_a_run(world, "third")  # in the same minute: that run is it
    await world.step(hour(9, 41, 50))
    assert world.store.creates == 4
    assert world.status["runNow"] == {"value": "third", "slot": "2026-06-01T09:41:00Z"}
    assert world.reasons()[-1] == "RunNow"
    await world.step(hour(11, 0, 1))  # the cron slots go on as before, jittered
    assert world.status["lastScheduleTime"].startswith("2026-06-01T11:00:00")


async def test_a_run_asked_for_while_suspended_is_answered_without_a_run() -> None:
    world = World(suspend=True)
    ask_for_a_run(world, "now")
    await world.step(hour(9, 20))
    assert world.store.snapshots == {}
    assert world.status["runNow"] == {"value": "now"}
    assert world.reasons() == ["RunNowIgnored"]
    world.store.schedule["spec"]["suspend"] = False
    world.store.schedule["metadata"]["generation"] = 2
    await world.step(hour(9, 21))
    assert world.store.snapshots == {}  # answered: resuming does not run it late


def schedule_gauge(name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"schedule_namespace": NS, "schedule": "db"})


async def test_staleness_gauges_follow_the_latest_success_and_go_with_the_schedule() -> None:
    world = World()
    await world.step(hour(10, 0, 1))
    last, due, nxt = (
        "cloudsnap_schedule_last_success_timestamp_seconds",
        "cloudsnap_schedule_success_due_timestamp_seconds",
        "cloudsnap_schedule_next_run_timestamp_seconds",
    )
    # No success yet: counted from the creation (09:10), due two slots after it.
    assert schedule_gauge(last) == CREATED.timestamp()
    assert schedule_gauge(due) == hour(11).timestamp()
    assert schedule_gauge(nxt) == hour(11).timestamp()
    world.store.make_ready(*world.store.snapshots)
    await world.step(hour(10, 5))
    assert schedule_gauge(last) == hour(10).timestamp()
    assert schedule_gauge(due) == hour(12).timestamp()
    world.store.schedule["spec"]["suspend"] = True
    world.store.schedule["metadata"]["generation"] = 2
    await world.step(hour(10, 6))
    assert schedule_gauge(due) is None  # nothing is due while suspended
    assert schedule_gauge(nxt) is None
    assert schedule_gauge(last) == hour(10).timestamp()
    world.controller.observe("DELETED", world.store.schedule)
    assert schedule_gauge(last) is None


async def test_a_replica_that_stops_leading_publishes_no_stale_schedule_times() -> None:
    world = World()
    await world.step(hour(10, 0, 1))
    assert schedule_gauge("cloudsnap_schedule_success_due_timestamp_seconds") is not None
    world.controller.stop_leading()
    assert schedule_gauge("cloudsnap_schedule_success_due_timestamp_seconds") is None
    assert schedule_gauge("cloudsnap_schedule_last_success_timestamp_seconds") is None
