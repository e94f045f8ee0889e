"""Which of one source's snapshots a schedule deletes: a pure function (docs/schedules.md).

The rules, in order of precedence:

1. Only the schedule's own children are ever deleted, and only they count below; other
   CloudSnapshots of the disk take room on it but are never touched.
2. Children still being created (or not yet created) are never deleted, nor are children
   already being deleted chosen again.
3. The newest ``min_ready`` Ready children are never deleted, whatever else says so.
4. Only Ready children count toward ``max_count``: the Ready ones beyond the newest
   ``max_count`` are deleted.
5. Ready children older than ``max_age`` are deleted.
6. Failed children are deleted once a newer Ready child exists. A child whose source never led
   to a disk (a claim not bound) asked EVS for nothing: it goes once any newer child exists, so
   a claim that stays unbound keeps one waiting child, not one per run.
7. EVS keeps at most ``disk_limit`` snapshots of a disk. When a create is about to be made on
   a disk the known snapshots fill, or EVS has refused a child for want of room (the disk may
   hold snapshots made outside the cluster), the oldest Ready children the rules above still
   allow *and whose deletion deletes their EVS snapshot* are deleted to make room; a child kept
   by deletion policy Retain frees no place, so it is never deleted for room. If none may go,
   the source is reported blocked.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


class Phase(enum.Enum):
    """Where a snapshot of the source is, as retention needs to know it."""

    PENDING = "pending"  # no EVS snapshot yet (just made, or refused for now)
    UNRESOLVED = "unresolved"  # its source leads to no disk yet: nothing asked of EVS
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"

    @property
    def takes_room(self) -> bool:
        """Whether it holds one of the disk's places for good: one being deleted is leaving (a
        create refused meanwhile is retried when it has gone), and a pending one has none."""
        return self not in (Phase.PENDING, Phase.UNRESOLVED, Phase.DELETING)


class Reason(enum.Enum):
    """Why a child is deleted (the Event says it)."""

    COUNT = "MaxCount"
    AGE = "MaxAge"
    FAILED = "Superseded"
    DISK_LIMIT = "DiskLimit"


@dataclass(frozen=True)
class Snapshot:
    """One CloudSnapshot of the source's disk."""

    name: str
    phase: Phase
    created: datetime
    ours: bool
    """A child of this schedule (its label and its ownerReference's UID)."""
    waiting_for_room: bool = False
    """Refused by EVS because the disk is full (EVS.5413), waiting to be retried."""
    frees_place: bool = True
    """Deleting it deletes its EVS snapshot (deletion policy Delete); a Retain child's snapshot
    stays on the disk when the child goes."""

    @property
    def stays_on_disk(self) -> bool:
        """Whether its EVS snapshot holds a place on the disk, now and after a deletion under
        way (a Retain one being deleted leaves its snapshot behind)."""
        return self.phase.takes_room or (self.phase is Phase.DELETING and not self.frees_place)


@dataclass(frozen=True)
class Policy:
    """spec.retention, parsed."""

    max_count: int
    min_ready: int
    max_age: timedelta | None = None


@dataclass(frozen=True)
class Decision:
    """What retention decided for one source."""

    delete: tuple[tuple[str, Reason], ...]
    """Children to delete, each with its reason, oldest first."""
    blocked: bool
    """The disk is full and no child may go to make room for the next snapshot."""


def decide(
    snapshots: Sequence[Snapshot],
    policy: Policy,
    *,
    now: datetime,
    create_pending: bool,
    disk_limit: int,
) -> Decision:
    """The children of one source to delete now, and whether the source is blocked."""
    ready = sorted(
        (s for s in snapshots if s.ours and s.phase is Phase.READY),
        key=_age_order,
        reverse=True,
    )
    protected = {s.name for s in ready[: policy.min_ready]}
    chosen: dict[str, Reason] = {}

    def deletable(snapshot: Snapshot) -> bool:
        return snapshot.ours and snapshot.name not in protected and snapshot.name not in chosen

    for snapshot in ready[policy.max_count :]:
        if deletable(snapshot):
            chosen[snapshot.name] = Reason.COUNT
    if policy.max_age is not None:
        for snapshot in ready:
            if now - snapshot.created > policy.max_age and deletable(snapshot):
                chosen[snapshot.name] = Reason.AGE
    # A failed child is superseded by a newer Ready one; one that asked EVS for nothing by any.
    superseded_before = {
        Phase.FAILED: ready[0].created if ready else None,
        Phase.UNRESOLVED: max((s.created for s in snapshots if s.ours), default=None),
    }
    for snapshot in snapshots:
        newer = superseded_before.get(snapshot.phase)
        if newer is not None and snapshot.created < newer and deletable(snapshot):
            chosen[snapshot.name] = Reason.FAILED

    need = _places_needed(snapshots, chosen, create_pending=create_pending, disk_limit=disk_limit)
    for snapshot in reversed(ready):  # oldest first
        if need <= 0:
            break
        if deletable(snapshot) and snapshot.frees_place:
            chosen[snapshot.name] = Reason.DISK_LIMIT
            need -= 1
    by_age = sorted(snapshots, key=_age_order)
    return Decision(
        delete=tuple((s.name, chosen[s.name]) for s in by_age if s.name in chosen),
        blocked=need > 0,
    )


def _places_needed(
    snapshots: Sequence[Snapshot],
    chosen: Mapping[str, Reason],
    *,
    create_pending: bool,
    disk_limit: int,
) -> int:
    """Places on the disk still to free for the creates waiting or about to be made.

    Once EVS has refused a child for want of room, EVS's word counts, not ours: the disk may
    hold snapshots no CloudSnapshot knows of. Each refused child then needs a place beyond those
    already on their way out (being deleted, or chosen above, and taking their EVS snapshot with
    them). Otherwise a create about to be made needs one only if the known snapshots fill the
    disk (a Retain child chosen above still fills it: its snapshot stays).
    """
    waiting = sum(1 for s in snapshots if s.ours and s.waiting_for_room)
    leaving = sum(
        1
        for s in snapshots
        if s.frees_place
        and (s.phase is Phase.DELETING or (s.name in chosen and s.phase.takes_room))
    )
    if waiting:
        return waiting + (1 if create_pending else 0) - leaving
    if not create_pending:
        return 0
    staying = sum(
        1 for s in snapshots if s.stays_on_disk and (s.name not in chosen or not s.frees_place)
    )
    return staying + 1 - disk_limit


def _age_order(snapshot: Snapshot) -> tuple[datetime, str]:
    """Oldest first; the name breaks ties so that every replica picks the same children."""
    return (snapshot.created, snapshot.name)
