"""Stateful property test of a schedule on one disk (docs/schedules.md): what it keeps and what it
frees.

Hypothesis interleaves slots, steps between them, the children's snapshot lifecycle (a create EVS
makes or refuses for room), deletions that take their time, snapshots made and deleted outside
the cluster, the template's deletion policy switched between Retain and Delete, leader changes (a
controller with no memory) and, last, the schedule's deletion with each propagation policy, the
garbage collector doing what it does: with Foreground at once and with Background once the
schedule is gone, it deletes every child that names the schedule in an ownerReference. It checks
after every rule:

- no child is ever deleted for room unless deleting it deletes its EVS snapshot (policy Delete);
- when a step frees a place for room, places being freed never outnumber the children waiting
  for one, and no more places are made than EVS refused creates (one refusal, one place, however
  slow the deletion and whoever leads);
- the disk never holds more than EVS's limit;
- no child is deleted by anyone but the schedule's retention or the user's own choice
  (``deleteChildrenOnDelete``): the garbage collector deletes none, under every propagation policy.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cloudsnap.api.constants import EVS_SNAPSHOTS_PER_DISK, ROOM_ANNOTATION
from tests.controllers.schedule.test_controller import SCHEDULE, VOLUME_A, World, hour

DISK_LIMIT_DELETION = re.compile(r"^(\S+) deleted \(DiskLimit\)")


class ScheduleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.world = World(
            schedule="0 * * * *",
            sources={"volumeIDs": [VOLUME_A]},
            retention={"maxCount": 2, "minReady": 1},
        )
        self.store = self.world.store
        self.store.slow_deletes = True
        self.disk: dict[str, str] = {}
        """The disk's EVS snapshots: ID -> the child that made it, or "outside"."""
        self.policy: dict[str, str] = {}
        """Each child's deletion policy, as its lifecycle recorded it at create."""
        self.ids = (f"evs-{n}" for n in itertools.count())
        self.refusals = 0
        self.created_into_room = 0
        """Children created right after a place was made for them: once EVS has refused one
        child, the disk is known full, and a create due meanwhile needs a place of its own."""
        self.collected: list[str] = []
        self.by_user: set[str] = set()
        self.schedule_gone = False
        for _ in range(EVS_SNAPSHOTS_PER_DISK - 4):  # a disk the schedule soon fills
            self.snapshot_made_outside()
        self.run(self.world.step(hour(9, 30)))

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self.loop.close()

    def children(self) -> dict[str, dict[str, Any]]:
        return self.store.snapshots

    def step(self) -> None:
        made = len(self.deleted_for_room())
        before = set(self.children())
        self.run(self.world.step())
        for name in set(self.children()) - before:
            if ROOM_ANNOTATION in self.children()[name]["metadata"]["annotations"]:
                self.created_into_room += 1
        if len(self.deleted_for_room()) > made:
            self.one_place_per_waiting_child()

    def one_place_per_waiting_child(self) -> None:
        """When a step frees a place for room, the places on their way out do not outnumber the
        children waiting for one."""
        on_disk = set(self.disk.values())
        leaving = [n for n in set(self.deleted_for_room()) if n in on_disk]
        waiting = [
            n
            for n, c in self.children().items()
            if not (c.get("status") or {}).get("snapshotID")
            and not c["metadata"].get("deletionTimestamp")
        ]
        assert len(leaving) <= len(waiting), f"places for {leaving}, waiting: {waiting}"

    # -- what happens -------------------------------------------------------------------------

    @initialize(
        policy=st.sampled_from(["Retain", "Delete"]),
        max_count=st.integers(2, 4),
        min_ready=st.integers(0, 1),
    )
    def first_spec(self, policy: str, max_count: int, min_ready: int) -> None:
        spec = self.store.schedule["spec"]
        spec["snapshotTemplate"]["spec"]["deletionPolicy"] = policy
        spec["retention"] = {"maxCount": max_count, "minReady": min_ready}

    @precondition(lambda self: not self.schedule_gone)
    @rule()
    def next_slot(self) -> None:
        now = self.store.now
        self.store.now = now.replace(minute=0, second=1) + timedelta(hours=1)
        self.step()

    @precondition(lambda self: not self.schedule_gone)
    @rule(seconds=st.integers(1, 600))
    def step_later(self, seconds: int) -> None:
        self.store.now += timedelta(seconds=seconds)
        self.step()

    @rule()
    def lifecycle(self) -> None:
        """Each child without a snapshot asks EVS for one: made if the disk has room."""
        for name, child in self.children().items():
            status = child.get("status") or {}
            if child["metadata"].get("deletionTimestamp") or status.get("snapshotID"):
                continue
            if len(self.disk) >= EVS_SNAPSHOTS_PER_DISK:
                self.store.refuse_for_room(name)
                self.refusals += 1
                continue
            snapshot_id = next(self.ids)
            self.disk[snapshot_id] = name
            self.policy[name] = child["spec"].get("deletionPolicy", "Delete")
            self.store.make_ready(name, policy=self.policy[name])
            child["status"]["snapshotID"] = snapshot_id

    @rule(data=st.data())
    def a_deletion_completes(self, data: st.DataObject) -> None:
        deleting = sorted(
            name for name, c in self.children().items() if c["metadata"].get("deletionTimestamp")
        )
        if not deleting:
            return
        name = data.draw(st.sampled_from(deleting))
        snapshot_id = (self.children()[name].get("status") or {}).get("snapshotID")
        if snapshot_id and self.policy.get(name) == "Delete":
            del self.disk[snapshot_id]
        del self.children()[name]

    @rule()
    def snapshot_made_outside(self) -> None:
        if len(self.disk) < EVS_SNAPSHOTS_PER_DISK:
            self.disk[next(self.ids)] = "outside"

    @rule()
    def snapshot_deleted_outside(self) -> None:
        outside = sorted(i for i, owner in self.disk.items() if owner == "outside")
        if outside:
            del self.disk[outside[0]]

    @precondition(lambda self: not self.schedule_gone)
    @rule(policy=st.sampled_from(["Retain", "Delete"]))
    def template_policy(self, policy: str) -> None:
        schedule = self.store.schedule
        schedule["spec"]["snapshotTemplate"]["spec"]["deletionPolicy"] = policy
        schedule["metadata"]["generation"] += 1

    @rule()
    def leader_change(self) -> None:
        self.world.start_controller()

    @precondition(lambda self: not self.schedule_gone)
    @rule(
        propagation=st.sampled_from(["Foreground", "Background", "Orphan"]),
        delete_children=st.booleans(),
    )
    def delete_schedule(self, propagation: str, delete_children: bool) -> None:
        schedule = self.store.schedule
        uid = schedule["metadata"]["uid"]
        schedule["spec"]["deleteChildrenOnDelete"] = delete_children
        schedule["metadata"]["deletionTimestamp"] = "2026-06-01T00:00:00Z"
        if delete_children:
            self.by_user |= set(self.children())
        if propagation == "Foreground":
            self.collect_garbage(uid)
        self.step()
        assert schedule["metadata"]["finalizers"] == []
        assert SCHEDULE not in self.store.objects, "gone once its finalizer is removed"
        if propagation == "Background":
            self.collect_garbage(uid)
        self.schedule_gone = True

    def collect_garbage(self, owner_uid: str) -> None:
        """What the garbage collector deletes: children naming the schedule as an owner."""
        for name, child in list(self.children().items()):
            refs = child["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                self.collected.append(name)
                child["metadata"]["deletionTimestamp"] = "2026-06-01T00:00:00Z"

    # -- what must hold -----------------------------------------------------------------------

    def deleted_for_room(self) -> list[str]:
        found = (DISK_LIMIT_DELETION.match(e.message) for e in self.world.events)
        return [m.group(1) for m in found if m]

    @invariant()
    def only_a_deletion_that_frees_a_place_is_made_for_room(self) -> None:
        for name in self.deleted_for_room():
            assert self.policy.get(name) == "Delete", f"{name} deleted for room it never frees"

    @invariant()
    def a_place_for_room_answers_a_refusal(self) -> None:
        """The only snapshots known here are the children, which never fill the disk by
        themselves: every place made for room answers one of EVS's refusals, or a create made
        into it once a refusal showed the disk full."""
        assert len(self.deleted_for_room()) <= self.refusals + self.created_into_room

    @invariant()
    def the_disk_holds_no_more_than_evs_allows(self) -> None:
        assert len(self.disk) <= EVS_SNAPSHOTS_PER_DISK

    @invariant()
    def nobody_else_deletes_a_child(self) -> None:
        assert self.collected == [], "the garbage collector deleted children"
        retention = {
            e.message.split()[0] for e in self.world.events if e.reason == "RetentionDeleted"
        }
        for name in self.store.deleted:
            assert name in retention or name in self.by_user, f"{name} deleted by no one's choice"


ScheduleMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_a_schedule_keeps_what_it_must = ScheduleMachine.TestCase
