"""CloudSnapshotSchedules: make each slot's children, apply retention, report (docs/schedules.md).

kopf delivers the schedules' watch events and the schedule children's CloudSnapshot events; this
module keeps the latest body of each schedule and runs one step per schedule through the same
keyed `WorkQueue` as the CloudSnapshots. A step reads the schedule's children from the API server
(never from a cache that might not have caught up), asks the pure functions of
`cloudsnap.schedule` what is due and what to delete, makes those writes, records the status and
says when to look again: at the next slot, at the next jittered create, or when a child changes.

Only the leader acts (``may_act``, checked before every step and write). Children are found by
the schedule's name label *and* its UID label, and only they are ever deleted; they carry no
ownerReference to the schedule, so a garbage collector never deletes one with it, whatever the
propagation policy of the schedule's deletion. A child's deterministic name makes a slot's create
idempotent across restarts and replicas (AlreadyExists of our own child is success).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from prometheus_client import Gauge

from cloudsnap import metrics
from cloudsnap.api.constants import (
    API_VERSION,
    DISK_FULL_CODE,
    EVS_SNAPSHOTS_PER_DISK,
    GROUP,
    READY,
    ROOM_ANNOTATION,
    RUN_NOW_ANNOTATION,
    SCHEDULE_KIND,
    SCHEDULE_LABEL,
    SCHEDULE_UID_LABEL,
    SLOT_ANNOTATION,
    SNAPSHOT_KIND,
    SOURCE_ANNOTATION,
    SOURCE_LABEL,
    SYNCED,
)
from cloudsnap.api.models import ConditionStatus, condition_of, set_condition
from cloudsnap.api.objects import condition_in, object_key, uid_of, version_of
from cloudsnap.api.progress import schedule_progress, with_progress
from cloudsnap.api.schedule import (
    CloudSnapshotScheduleSpec,
    CloudSnapshotScheduleStatus,
    LabelSelector,
    RunNow,
    SourceStatus,
)
from cloudsnap.controllers.schedule.plan import retention
from cloudsnap.controllers.schedule.plan.cron import Cron, CronError, shortest_interval
from cloudsnap.controllers.schedule.plan.runs import (
    child_name,
    jitter_delay,
    label_value,
    parse_duration,
    plan_run,
)
from cloudsnap.controllers.schedule.store import ScheduleStore
from cloudsnap.runtime.controller import QueuedController
from cloudsnap.runtime.failures import CLAIM_NOT_BOUND, CLAIM_NOT_FOUND, UNSUPPORTED_VOLUME
from cloudsnap.runtime.writes import Event, EventType, Refused
from cloudsnap.utc import parse_time, rfc3339

log = logging.getLogger(__name__)

SCHEDULE_FINALIZER = f"{GROUP}/schedule-children"
"""Held while a schedule may have children: its deletion first keeps (releases) or deletes them."""
# A source blocked by a full disk, or a step that failed, looks again this much later.
RETRY_SECONDS = 30.0
# Wake this long after a slot or a jittered create, so the clock has certainly passed it.
WAKE_MARGIN_SECONDS = 0.05
REFUSED = "the API server refused the child"
"""Starts a source's blocked text when the API server refused its child (its words follow)."""
# A child blocked with one of these has not found its disk (controllers/snapshot/volumes.py).
UNRESOLVED_CODES = frozenset({CLAIM_NOT_FOUND, CLAIM_NOT_BOUND, UNSUPPORTED_VOLUME})


class InvalidSpec(ValueError):
    """A spec the API server admitted but the operator cannot run; the message names the field."""


@dataclass(frozen=True)
class Source:
    """One thing a schedule snapshots."""

    key: str
    """volume/<id> or pvc/<name>: the status entry and the child's source annotation."""
    name: str
    """The disk ID or claim name, as it goes into the child's name."""
    spec: dict[str, str]
    """The child's source field: volumeID or persistentVolumeClaimName."""


@dataclass(frozen=True)
class Parsed:
    """A schedule's spec, checked and parsed."""

    spec: CloudSnapshotScheduleSpec
    cron: Cron
    zone: ZoneInfo
    policy: retention.Policy


def parse_spec(raw: Mapping[str, Any]) -> Parsed:
    """The spec parsed for a step; InvalidSpec naming the field when it cannot run."""
    try:
        spec = CloudSnapshotScheduleSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        fields = ", ".join("spec." + ".".join(map(str, e["loc"])) for e in exc.errors())
        raise InvalidSpec(f"{fields}: {exc.errors()[0]['msg']}") from None
    try:
        cron = Cron.parse(spec.schedule)
    except CronError as exc:
        raise InvalidSpec(f"spec.schedule: {exc}") from None
    try:
        zone = ZoneInfo(spec.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSpec(f"spec.timeZone: unknown time zone {spec.time_zone!r}") from None
    max_age = None
    if spec.retention.max_age is not None:
        try:
            max_age = parse_duration(spec.retention.max_age)
        except ValueError as exc:
            raise InvalidSpec(f"spec.retention.maxAge: {exc}") from None
    try:
        cron.next_after(datetime.now(UTC), zone)
    except CronError as exc:
        raise InvalidSpec(f"spec.schedule: {exc}") from None
    interval = shortest_interval(cron)
    if spec.jitter_seconds and timedelta(seconds=spec.jitter_seconds) >= interval:
        # A create jittered past the next slot would belong to a run already over: never made.
        raise InvalidSpec(
            f"spec.jitterSeconds, spec.schedule: jitterSeconds ({spec.jitter_seconds}) must be"
            f" less than the {interval.total_seconds():.0f} s between two slots of the schedule"
        )
    policy = retention.Policy(spec.retention.max_count, spec.retention.min_ready, max_age)
    return Parsed(spec, cron, zone, policy)


def selector_string(selector: LabelSelector) -> str:
    """A label selector in the API's query syntax (k=v, k in (a,b), k notin (a), k, !k)."""
    terms = [f"{key}={value}" for key, value in sorted(selector.match_labels.items())]
    for requirement in selector.match_expressions:
        values = ",".join(requirement.values)
        terms.append(
            {
                "In": f"{requirement.key} in ({values})",
                "NotIn": f"{requirement.key} notin ({values})",
                "Exists": requirement.key,
                "DoesNotExist": f"!{requirement.key}",
            }[requirement.operator]
        )
    return ",".join(terms)


def child_phase(body: Mapping[str, Any]) -> tuple[retention.Phase, bool]:
    """Where a CloudSnapshot is, for retention, and whether it waits for room on its disk."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return retention.Phase.DELETING, False
    ready = condition_in(body, READY)
    if ready.get("status") == "True":
        return retention.Phase.READY, False
    if status.get("phase") == "error" or ready.get("reason") in ("NotFound", "AlreadyOwned"):
        return retention.Phase.FAILED, False
    if status.get("snapshotID"):
        return retention.Phase.CREATING, False
    code = (status.get("error") or {}).get("code")
    if code == DISK_FULL_CODE:
        return retention.Phase.PENDING, True
    if code in UNRESOLVED_CODES and not status.get("volumeID"):
        return retention.Phase.UNRESOLVED, False
    if ready.get("reason") == "Error":
        # No snapshot and a failure: superseded by a newer Ready.
        return retention.Phase.FAILED, False
    return retention.Phase.PENDING, False


def _time(text: Any) -> datetime | None:
    return parse_time(str(text)) if text else None


def _legacy_references(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """ownerReferences to a schedule, which children were once made with."""
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return [
        r for r in refs if r.get("kind") == SCHEDULE_KIND and r.get("apiVersion") == API_VERSION
    ]


def _child_of(body: Mapping[str, Any], name: str, uid: str) -> bool:
    """Whether a CloudSnapshot is the schedule's own child: its name label and its UID label
    (or an ownerReference with its UID, on children made before the UID label)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if labels.get(SCHEDULE_LABEL) != label_value(name):
        return False
    if labels.get(SCHEDULE_UID_LABEL) == uid:
        return True
    return any(ref.get("uid") == uid for ref in _legacy_references(body))


def _frees_place(body: Mapping[str, Any]) -> bool:
    """Whether deleting the CloudSnapshot deletes its EVS snapshot: its deletion policy, as
    the snapshot lifecycle reads it, is known to be Delete."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    recorded = status.get("deletionPolicy") or ("Retain" if status.get("adopted") else None)
    return (spec.get("deletionPolicy") or recorded) == "Delete"


@dataclass(frozen=True)
class RoomMark:
    """A place made on a full disk for one refused child (the ROOM_ANNOTATION's JSON)."""

    uid: str
    """The child deleted to free the place."""
    name: str
    at: datetime
    """When it was deleted."""
    gone: datetime | None
    """When a step first saw it gone (and its EVS snapshot with it)."""

    def dump(self) -> str:
        """The annotation's value."""
        fields = {"uid": self.uid, "name": self.name, "at": rfc3339(self.at)}
        if self.gone is not None:
            fields["gone"] = rfc3339(self.gone)
        return json.dumps(fields, separators=(",", ":"))


def _room_mark(body: Mapping[str, Any]) -> RoomMark | None:
    """The child's room mark; None if it has none or it is unreadable (as if none)."""
    text = _annotation(body, ROOM_ANNOTATION)
    try:
        fields = json.loads(text) if text else None
        if not isinstance(fields, dict):
            return None
        at = _time(fields["at"])
        if at is None:
            return None
        return RoomMark(str(fields["uid"]), str(fields["name"]), at, _time(fields.get("gone")))
    except (ValueError, KeyError, TypeError):
        return None


def _waits_for_room(child: Mapping[str, Any], present: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether EVS's refusal of a child for want of room still needs a place made for it.

    Not while the child deleted for it is on its way out, nor once it is gone until the child
    is refused again after that (its retry follows the deletion); a mark whose child was never
    deleted (a step stopped between the two writes) counts as none."""
    mark = _room_mark(child)
    if mark is None:
        return True
    freed = present.get(mark.uid)
    if freed is not None:
        return not (freed.get("metadata") or {}).get("deletionTimestamp")
    if mark.gone is None:
        return False
    refused_at = _time(((child.get("status") or {}).get("error") or {}).get("time"))
    return refused_at is not None and refused_at > mark.gone


def _retention_view(
    mine: Sequence[Mapping[str, Any]],
    by_disk: Mapping[str, Sequence[Mapping[str, Any]]],
    source: Source,
    present: Mapping[str, Mapping[str, Any]],
) -> list[retention.Snapshot]:
    """The source's children, and the other CloudSnapshots of its disk (they take room)."""
    disks = {d for d in (_volume_of(c) for c in mine) if d}
    if "volumeID" in source.spec:
        disks.add(source.spec["volumeID"])
    own = {c["metadata"]["uid"] for c in mine}
    others = [b for d in disks for b in by_disk.get(d, ()) if b["metadata"]["uid"] not in own]
    view = []
    for body in [*mine, *others]:
        ours = body["metadata"]["uid"] in own
        phase, refused = child_phase(body)
        born = _time(_annotation(body, SLOT_ANNOTATION)) if ours else None
        view.append(
            retention.Snapshot(
                name=body["metadata"]["name"],
                phase=phase,
                created=born or _time(body["metadata"].get("creationTimestamp")) or _EPOCH,
                ours=ours,
                waiting_for_room=ours and refused and _waits_for_room(body, present),
                frees_place=_frees_place(body),
            )
        )
    return view


def _disk_full(view: Sequence[retention.Snapshot], entry: SourceStatus) -> str:
    """Why a full disk blocks the source: what fills it, and what would free a place."""
    ours = [s for s in view if s.ours and s.stays_on_disk]
    retain = [s for s in ours if not s.frees_place]
    others = [s.name for s in view if not s.ours and s.stays_on_disk]
    parts = [f"{len(ours)} of its children ({len(retain)} of them kept by deletionPolicy Retain)"]
    if others:
        parts.append(f"{len(others)} other CloudSnapshot(s): {', '.join(others)}")
    if entry.retained_snapshot_ids:
        ids = ", ".join(entry.retained_snapshot_ids)
        parts.append(
            f"{len(entry.retained_snapshot_ids)} EVS snapshot(s) its retention kept: {ids}"
        )
    message = (
        f"the disk holds EVS's limit of {EVS_SNAPSHOTS_PER_DISK} snapshots and no child of this"
        f" schedule may be deleted to free a place; on it: {'; '.join(parts)}; and any made"
        " outside the cluster. Delete snapshots of the disk in EVS, or lower retention.minReady"
        " or give the children deletionPolicy Delete"
    )
    return message


def _volume_of(body: Mapping[str, Any]) -> str | None:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return spec.get("volumeID") or status.get("volumeID")


@dataclass
class _Look:
    """The namespace's CloudSnapshots as one step read them: the schedule's children (which the
    step's deletions and creates keep current), and every snapshot by UID and by disk."""

    children: list[dict[str, Any]]
    present: dict[str, dict[str, Any]]
    by_disk: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, everything: Sequence[dict[str, Any]], name: str, uid: str) -> _Look:
        by_disk: dict[str, list[dict[str, Any]]] = {}
        for snapshot in everything:
            disk = _volume_of(snapshot)
            if disk:
                by_disk.setdefault(disk, []).append(snapshot)
        return cls(
            children=[s for s in everything if _child_of(s, name, uid)],
            present={s["metadata"]["uid"]: s for s in everything},
            by_disk=by_disk,
        )

    def of_source(self, key: str) -> list[dict[str, Any]]:
        """The children made for one source."""
        return [c for c in self.children if (_annotation(c, SOURCE_ANNOTATION) or "") == key]

    def forget(self, names: set[str]) -> None:
        """Children deleted by this step."""
        self.children = [c for c in self.children if c["metadata"]["name"] not in names]


@dataclass
class _Step:
    """What one step found and decided, turned into the status and Events at its end."""

    now: datetime
    events: list[Event] = field(default_factory=list)
    wake: list[float] = field(default_factory=list)
    recorded: list[Event] = field(default_factory=list)
    """Events of what the status records (runs, missed runs, blocks, an invalid spec): posted,
    and counted, only once the status saying so is written, so that a step retried after a
    failed write, or run again on a status not yet seen back, posts none of them twice."""
    runs: int = 0
    missed: int = 0

    def event(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def record(
        self, kind: EventType, reason: str, message: str, *, runs: int = 0, missed: int = 0
    ) -> None:
        """An Event (and runs or missed runs to count) that the step's status write records."""
        self.recorded.append(Event(kind, reason, message))
        self.runs += runs
        self.missed += missed

    def status_written(self) -> None:
        """The status is written: what it records is posted with the step's Events, and counted."""
        self.events += self.recorded
        self.recorded = []
        metrics.SCHEDULE_RUNS.inc(self.runs)
        metrics.SCHEDULE_MISSED_RUNS.inc(self.missed)
        self.runs = self.missed = 0

    def wake_at(self, moment: datetime) -> None:
        self.wake.append(max(0.0, (moment - self.now).total_seconds()) + WAKE_MARGIN_SECONDS)

    def wake_in(self, seconds: float) -> None:
        self.wake.append(seconds)


class ScheduleController(QueuedController):
    """Keeps the latest body of each schedule and runs its steps; only while leading."""

    def __init__(
        self,
        store: ScheduleStore,
        *,
        max_workers: int,
        may_act: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name="cloudsnap-schedules", max_workers=max_workers, may_act=may_act)
        self._store = store
        self._clock = clock
        self._bodies: dict[str, dict[str, Any]] = {}
        self._generations: dict[str, tuple[int, str, str]] = {}
        self._children_by_phase: dict[str, Counter[str]] = {}
        self._keys_by_uid: dict[str, str] = {}
        """Each schedule's key by its UID: a child's UID label names the schedule to wake."""
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}
        """The status this replica last wrote for each schedule, with the schedule's UID: only
        the leader writes it, so it is newer than that of a body the watch has not caught up
        with, which a step would otherwise run its slot again from."""

    # -- watch --------------------------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A schedule's watch event: keep the body; look again when its spec or deletion changed."""
        meta = body.get("metadata") or {}
        key = object_key(body)
        if event_type == "DELETED":
            self._keys_by_uid.pop(uid_of(body), None)
            self._bodies.pop(key, None)
            self._generations.pop(key, None)
            self._children_by_phase.pop(key, None)
            self._written.pop(key, None)
            self.queue.forget(key)
            self._publish_children()
            _unpublish_times(meta)
            return
        old = self._bodies.get(key)
        if old is not None and uid_of(old) != uid_of(body):
            self._generations.pop(key, None)  # a new schedule of the same name
            self._keys_by_uid.pop(uid_of(old), None)
        self._keys_by_uid[uid_of(body)] = key
        self._bodies[key] = dict(body)
        # A schedule being deleted is looked at on every change: the garbage collector's removal
        # of its foregroundDeletion or orphan finalizer refuses a release made meanwhile.
        deleting = version_of(body) if meta.get("deletionTimestamp") else ""
        asked = str((meta.get("annotations") or {}).get(RUN_NOW_ANNOTATION) or "")
        seen = (int(meta.get("generation") or 0), deleting, asked)
        if self._generations.get(key) != seen:
            self._generations[key] = seen
            self.queue.enqueue(key)

    def observe_child(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A CloudSnapshot's watch event: if a schedule's child changed, its schedule looks
        again (whatever the change, a deletion included)."""
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        if SCHEDULE_LABEL not in labels:
            return
        uids = {labels.get(SCHEDULE_UID_LABEL), *(r.get("uid") for r in _legacy_references(body))}
        for uid in uids:
            key = self._keys_by_uid.get(str(uid))
            if key is not None and key in self._bodies:
                self.queue.enqueue(key)

    def _gained_lease(self) -> None:
        """Nothing: what this replica wrote while leading was dropped when it stopped."""

    def _lost_lease(self) -> None:
        """The next leader writes the statuses, so they are read from the watch again."""
        self._written.clear()
        for gauge in _TIME_GAUGES:
            gauge.clear()  # the next leader publishes them

    def _keys(self) -> Iterable[str]:
        return self._bodies

    def _body(self, key: str) -> dict[str, Any] | None:
        return self._bodies.get(key)

    # -- step ---------------------------------------------------------------------------------

    async def _step(self, key: str, body: dict[str, Any]) -> float | None:
        """One step of one schedule; seconds until the next (None: on the next change)."""
        step = _Step(self._clock())
        try:
            return await self._phases(body, step)
        finally:
            await self._post(body, step)

    async def _post(self, body: Mapping[str, Any], step: _Step) -> None:
        """Post the step's Events, even when it failed part way (what it did is still done)."""
        for event in step.events:
            if self._may_act():
                await self._store.post_event(body, event)

    async def _phases(self, body: dict[str, Any], step: _Step) -> float | None:
        """One look at one schedule, in phases: release its children if it is being deleted;
        otherwise report an invalid spec, hold the finalizer, note the run due (or missed), step
        each source (its child, its retention, its report) and write the status, whose Events
        follow it."""
        meta = body["metadata"]
        status = self._last_status(body)
        if meta.get("deletionTimestamp"):
            await self._finish(body, step)
            return None
        try:
            parsed = parse_spec(body.get("spec") or {})
        except InvalidSpec as exc:
            await self._report_invalid(body, status, exc, step)
            return None
        held = await self._hold(body)
        if held is None:
            return None
        body, meta = held, held["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        sources = await self._sources(namespace, parsed.spec)
        look = _Look.of(await self._store.list_snapshots(namespace), name, uid)
        await self._detach(look.children, uid)
        active = self._plan(meta, parsed, status, len(sources), step)
        previous = {entry.source: entry for entry in status.sources}
        # The run asked for with the annotation starts at once: no jitter, no starting deadline.
        asked = active is not None and status.run_now is not None and status.run_now.slot == active
        entries = [
            await self._step_source(
                body, parsed, source, active, previous.get(source.key), look, step, asked=asked
            )
            for source in sources
        ]
        self._children_by_phase[object_key(body)] = Counter(
            child_phase(c)[0].value for c in look.children
        )
        self._publish_children()
        status.sources = entries
        status.source_count = len(sources)
        status.last_successful_time = _last_successful(look.children) or status.last_successful_time
        status.observed_generation = meta.get("generation")
        _set_condition(status, SYNCED, "True", "Synced", "the schedule is running", step.now, meta)
        _set_ready(status, entries, step.now, meta)
        await self._write_status(body, status, step)
        _publish_times(meta, parsed, status)
        return min(step.wake) if step.wake else None

    def _last_status(self, body: Mapping[str, Any]) -> CloudSnapshotScheduleStatus:
        """The schedule's status as this replica last wrote it, else as the watch brought it."""
        meta = body["metadata"]
        written = self._written.get(object_key(body))
        return CloudSnapshotScheduleStatus.model_validate(
            written[1]
            if written is not None and written[0] == meta["uid"]
            else body.get("status") or {}
        )

    async def _report_invalid(
        self,
        body: Mapping[str, Any],
        status: CloudSnapshotScheduleStatus,
        exc: InvalidSpec,
        step: _Step,
    ) -> None:
        """Synced=False with the field at fault (one Event per new cause); nothing else is done."""
        meta = body["metadata"]
        if _condition_reason(status, SYNCED) != "InvalidSpec":
            step.record("Warning", "InvalidSpec", str(exc))
        _set_condition(status, SYNCED, "False", "InvalidSpec", str(exc), step.now, meta)
        status.observed_generation = meta.get("generation")
        await self._write_status(body, status, step)
        _publish_times(meta, None, status)

    async def _hold(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The body with the schedule's finalizer in place (added first if missing), or None
        if the schedule is gone."""
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if SCHEDULE_FINALIZER in finalizers:
            return body
        fresh = await self._store.set_finalizers(body, [*finalizers, SCHEDULE_FINALIZER])
        if fresh is not None:
            self._bodies[object_key(body)] = fresh
        return fresh

    def _plan(
        self,
        meta: Mapping[str, Any],
        parsed: Parsed,
        status: CloudSnapshotScheduleStatus,
        source_count: int,
        step: _Step,
    ) -> datetime | None:
        """Note in the status the run due now and the runs missed (with their Events), and
        return the slot of the run in progress, whose children are still to be made (None:
        suspended, or the latest slot has passed)."""
        spec = parsed.spec
        created = _time(meta.get("creationTimestamp")) or step.now
        handled = max(t for t in (created, status.last_schedule_time, status.last_missed_time) if t)
        plan = plan_run(
            parsed.cron,
            parsed.zone,
            now=step.now,
            handled_until=handled,
            suspended=spec.suspend,
            starting_deadline=(
                timedelta(seconds=spec.starting_deadline_seconds)
                if spec.starting_deadline_seconds is not None
                else None
            ),
        )
        if plan.slot is not None or plan.missed:
            unmade = _unmade_sources(status)
            if unmade and status.last_schedule_time is not None:
                message = (
                    f"the run of {rfc3339(status.last_schedule_time)} ended without a child of"
                    f" {len(unmade)} source(s): {', '.join(unmade)}"
                )
                step.record("Warning", "MissedRun", message, missed=len(unmade))
        if plan.missed:
            why = (
                "only the latest missed run is made"
                if plan.slot is not None
                else "not started within startingDeadlineSeconds"
            )
            latest = plan.latest_missed or step.now
            message = f"{plan.missed} run(s) skipped, the latest at {rfc3339(latest)} ({why})"
            step.record("Warning", "MissedRun", message, missed=plan.missed)
            status.last_missed_time = plan.latest_missed or status.last_missed_time
        if plan.slot is not None:
            status.last_schedule_time = plan.slot
            message = f"run of {rfc3339(plan.slot)} for {source_count} source(s)"
            step.record("Normal", "Run", message, runs=1)
        status.next_schedule_time = plan.next_slot
        if plan.next_slot is not None:
            step.wake_at(plan.next_slot)
        _answer_run_now(meta, spec, status, source_count, step)
        active = status.last_schedule_time
        if (
            spec.suspend
            or active is None
            or parsed.cron.next_after(active, parsed.zone) <= step.now
        ):
            return None
        return active

    async def _step_source(
        self,
        body: Mapping[str, Any],
        parsed: Parsed,
        source: Source,
        active: datetime | None,
        previous: SourceStatus | None,
        look: _Look,
        step: _Step,
        *,
        asked: bool,
    ) -> SourceStatus:
        """One source's part of a step: whether its child of the active run is due now (after
        its jitter, within the starting deadline), retention over its children (room made for
        that child where the disk is full), the child made, and its status entry."""
        spec = parsed.spec
        was_blocked = previous.blocked if previous is not None else None
        entry = previous or SourceStatus(source=source.key)
        entry.blocked = None
        mine = look.of_source(source.key)
        create_now = False
        if active is not None and (entry.last_run_time is None or entry.last_run_time < active):
            key = object_key(body)
            delay = 0.0 if asked else jitter_delay(key, source.key, active, spec.jitter_seconds)
            at = active + timedelta(seconds=delay)
            deadline = None if asked else spec.starting_deadline_seconds
            if at > step.now:
                step.wake_at(at)
            elif deadline is not None and step.now - at > timedelta(seconds=deadline):
                entry.last_run_time = active  # too late for this one: never made
                message = f"{source.key}: the run of {rfc3339(active)} started too late"
                step.record("Warning", "MissedRun", message, missed=1)
            else:
                create_now = True
        await self._note_freed_places(mine, look.present, step)
        view = _retention_view(mine, look.by_disk, source, look.present)
        decision = retention.decide(
            view,
            parsed.policy,
            now=step.now,
            create_pending=create_now,
            disk_limit=EVS_SNAPSHOTS_PER_DISK,
        )
        room_for_create = await self._retire(mine, view, decision, entry, step)
        gone = {name for name, _ in decision.delete}
        mine = [c for c in mine if c["metadata"]["name"] not in gone]
        look.forget(gone)
        if any(child_phase(c)[1] for c in mine):
            # A child refused for room: if the place made is taken before its retry, EVS
            # refuses it again and the next look (a change of it, or this) frees another.
            step.wake_in(RETRY_SECONDS)
        if decision.blocked:
            entry.blocked = _disk_full(view, entry)
            if not _same_cause(was_blocked, entry.blocked):
                step.record("Warning", "RunBlocked", f"{source.key}: {entry.blocked}")
            step.wake_in(RETRY_SECONDS)
        elif create_now and active is not None:
            try:
                child = await self._create_child(body, parsed, source, active, room_for_create)
                problem = "a CloudSnapshot not made by this schedule has the child's name"
            except Refused as exc:
                child, problem = None, f"{REFUSED}: {exc}"
            if child is not None:
                entry.last_run_time = active
                mine.append(child)
                look.children.append(child)
            else:
                entry.blocked = problem
                if not _same_cause(was_blocked, entry.blocked):
                    step.record("Warning", "RunBlocked", f"{source.key}: {problem}")
                step.wake_in(RETRY_SECONDS)
        if entry.blocked is None:
            entry.blocked = _unresolved(mine)
            if entry.blocked is not None and not _same_cause(was_blocked, entry.blocked):
                step.record("Warning", "RunBlocked", f"{source.key}: {entry.blocked}")
        return _count(entry, mine)

    async def _write_status(
        self, body: Mapping[str, Any], status: CloudSnapshotScheduleStatus, step: _Step
    ) -> None:
        """Write the step's status, remember it as the schedule's, and post and count what it
        records."""
        meta = body["metadata"]
        status.conditions = with_progress(
            status.conditions, schedule_progress(status), step.now, meta.get("generation")
        )
        dumped = _dump(status)
        if await self._store.patch_status(body, dumped) is None:
            return  # the schedule is gone
        self._written[object_key(body)] = (meta["uid"], dumped)
        step.status_written()

    async def _sources(self, namespace: str, spec: CloudSnapshotScheduleSpec) -> list[Source]:
        """The volume IDs, then the claims the selector picks now (sorted, each once)."""
        sources = [
            Source(f"volume/{vid}", vid.lower(), {"volumeID": vid})
            for vid in dict.fromkeys(spec.sources.volume_ids)
        ]
        selector = spec.sources.persistent_volume_claim_selector
        if selector is not None:
            claims = await self._store.list_claims(namespace, selector_string(selector))
            names = sorted(c["metadata"]["name"] for c in claims)
            sources += [Source(f"pvc/{n}", n, {"persistentVolumeClaimName": n}) for n in names]
        return sources

    async def _detach(self, children: Sequence[Mapping[str, Any]], uid: str) -> None:
        """Children made with an ownerReference to this schedule get its UID label instead: a
        foreground deletion of the schedule would have the garbage collector delete them."""
        for child in children:
            cmeta = child["metadata"]
            if any(ref.get("uid") == uid for ref in _legacy_references(child)):
                await self._store.detach_snapshot(
                    cmeta["namespace"], cmeta["name"], cmeta["uid"], uid
                )

    async def _note_freed_places(
        self,
        mine: Sequence[Mapping[str, Any]],
        present: Mapping[str, Mapping[str, Any]],
        step: _Step,
    ) -> None:
        """Record on each child a place was made for when the child deleted for it is gone: a
        refusal after that moment asks for a new place, one before it does not."""
        for child in mine:
            mark = _room_mark(child)
            if mark is not None and mark.gone is None and mark.uid not in present:
                cmeta = child["metadata"]
                value = RoomMark(mark.uid, mark.name, mark.at, step.now).dump()
                await self._store.annotate_snapshot(
                    cmeta["namespace"], cmeta["name"], cmeta["uid"], ROOM_ANNOTATION, value
                )

    async def _retire(
        self,
        mine: Sequence[Mapping[str, Any]],
        view: Sequence[retention.Snapshot],
        decision: retention.Decision,
        entry: SourceStatus,
        step: _Step,
    ) -> str | None:
        """Delete the children retention chose; the room mark for the create about to be made,
        if a place was made for it.

        A place made on a full disk is first recorded on the refused child it is for (oldest
        first), so that no later step, of this replica or another, however long the deletion
        takes, frees a second place for the same refusal."""
        by_name = {c["metadata"]["name"]: c for c in mine}
        refused = iter(
            by_name[s.name]
            for s in sorted(view, key=lambda s: (s.created, s.name))
            if s.ours and s.waiting_for_room
        )
        for_create = None
        for doomed_name, reason in decision.delete:
            doomed = by_name[doomed_name]
            namespace, uid = doomed["metadata"]["namespace"], doomed["metadata"]["uid"]
            if reason is retention.Reason.DISK_LIMIT:
                mark = RoomMark(uid, doomed_name, step.now, None).dump()
                waiting = next(refused, None)
                if waiting is None:
                    for_create = mark
                else:
                    wmeta = waiting["metadata"]
                    await self._store.annotate_snapshot(
                        namespace, wmeta["name"], wmeta["uid"], ROOM_ANNOTATION, mark
                    )
            await self._store.delete_snapshot(namespace, doomed_name, uid)
            metrics.RETENTION_DELETIONS.labels(reason=reason.value).inc()
            message = f"{doomed_name} deleted ({reason.value})"
            kept = (doomed.get("status") or {}).get("snapshotID")
            if kept and not _frees_place(doomed):
                entry.retained_snapshot_ids = [
                    *(i for i in entry.retained_snapshot_ids if i != kept),
                    kept,
                ][-EVS_SNAPSHOTS_PER_DISK:]
                metrics.SCHEDULE_RETAINED_SNAPSHOTS.inc()
                message += f"; its EVS snapshot {kept} stays on the disk (deletionPolicy Retain)"
            step.event("Normal", "RetentionDeleted", message)
        return for_create

    async def _create_child(
        self,
        schedule: Mapping[str, Any],
        parsed: Parsed,
        source: Source,
        slot: datetime,
        room_mark: str | None,
    ) -> dict[str, Any] | None:
        """Create the slot's child of ``source`` (with the room mark of a place just made for
        it); the existing one if this schedule made it before, None if the name is taken by
        something else."""
        meta = schedule["metadata"]
        template = parsed.spec.snapshot_template
        name = child_name(meta["name"], source.name, slot)
        body = {
            "apiVersion": API_VERSION,
            "kind": SNAPSHOT_KIND,
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {
                    **template.metadata.labels,
                    SCHEDULE_LABEL: label_value(meta["name"]),
                    SCHEDULE_UID_LABEL: meta["uid"],
                    SOURCE_LABEL: label_value(source.key.replace("/", ".")),
                },
                "annotations": {
                    **template.metadata.annotations,
                    SLOT_ANNOTATION: rfc3339(slot),
                    SOURCE_ANNOTATION: source.key,
                    **({ROOM_ANNOTATION: room_mark} if room_mark else {}),
                },
            },
            "spec": {
                **template.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                **source.spec,
            },
        }
        stored = await self._store.create_snapshot(meta["namespace"], body)
        mine = _child_of(stored, meta["name"], meta["uid"])
        if not mine or _annotation(stored, SOURCE_ANNOTATION) != source.key:
            return None
        return stored

    async def _finish(self, body: Mapping[str, Any], step: _Step) -> None:
        """The schedule is being deleted: keep its children (any still made with an
        ownerReference to it are detached first) or delete them, then let the schedule go."""
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        finalizers = list(meta.get("finalizers") or [])
        if SCHEDULE_FINALIZER not in finalizers:
            return
        delete = bool((body.get("spec") or {}).get("deleteChildrenOnDelete"))
        children = [
            c for c in await self._store.list_snapshots(namespace) if _child_of(c, name, uid)
        ]
        if delete:
            for child in children:
                cmeta = child["metadata"]
                await self._store.delete_snapshot(namespace, cmeta["name"], cmeta["uid"])
        else:
            await self._detach(children, uid)
        remaining = [f for f in finalizers if f != SCHEDULE_FINALIZER]
        await self._store.set_finalizers(body, remaining)
        # Only once released: a release refused (the garbage collector changed the schedule
        # meanwhile) is made again by the step its change brings, which says it then.
        step.event(
            "Normal",
            "ChildrenDeleted" if delete else "ChildrenKept",
            f"{len(children)} children deleted with the schedule"
            if delete
            else f"{len(children)} children kept: they no longer belong to the schedule",
        )

    def _publish_children(self) -> None:
        total: Counter[str] = Counter()
        for counts in self._children_by_phase.values():
            total.update(counts)
        metrics.SCHEDULE_CHILDREN.clear()
        for phase, count in total.items():
            metrics.SCHEDULE_CHILDREN.labels(phase=phase).set(count)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _annotation(body: Mapping[str, Any], key: str) -> str | None:
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(key)
    return None if value is None else str(value)


def _count(entry: SourceStatus, children: Sequence[Mapping[str, Any]]) -> SourceStatus:
    """The source's status entry with its children counted by state."""
    phases = [(child_phase(c)[0], c) for c in children]
    entry.ready = sum(1 for p, _ in phases if p is retention.Phase.READY)
    entry.failed = sum(1 for p, _ in phases if p is retention.Phase.FAILED)
    waiting = (retention.Phase.PENDING, retention.Phase.UNRESOLVED, retention.Phase.CREATING)
    entry.creating = sum(1 for p, _ in phases if p in waiting)
    ready = [c for p, c in phases if p is retention.Phase.READY]
    newest = max(ready, key=lambda c: _annotation(c, SLOT_ANNOTATION) or "", default=None)
    entry.newest_ready = None if newest is None else newest["metadata"]["name"]
    entry.newest_ready_snapshot_id = (
        None if newest is None else (newest.get("status") or {}).get("snapshotID")
    )
    return entry


def _unresolved(children: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the source's newest child waits for its disk (its claim's error), if it does."""
    newest = max(children, key=lambda c: _annotation(c, SLOT_ANNOTATION) or "", default=None)
    if newest is None or child_phase(newest)[0] is not retention.Phase.UNRESOLVED:
        return None
    error = (newest.get("status") or {}).get("error") or {}
    return f"{error.get('code')}: {error.get('message')}"


def _same_cause(before: str | None, now: str | None) -> bool:
    """Whether a source's blocked text (as stored, cut to its limit) names the cause it named
    before: RunBlocked is posted once per cause. Refusals by the API server are one cause, however
    worded: the words vary between attempts (Go lists a child's invalid labels in random order)
    and between slots (they name the child)."""
    if before is None or now is None:
        return before == now
    return before == now or (before.startswith(REFUSED) and now.startswith(REFUSED))


def _unmade_sources(status: CloudSnapshotScheduleStatus) -> list[str]:
    """The sources the latest run (status.lastScheduleTime) made no child for, once a later slot
    ran or was missed: its jittered creates are over. None if a missed slot already ended it (a
    step then counted them)."""
    run, missed = status.last_schedule_time, status.last_missed_time
    if run is None or (missed is not None and missed > run):
        return []
    return [e.source for e in status.sources if e.last_run_time is None or e.last_run_time < run]


def _last_successful(children: Sequence[Mapping[str, Any]]) -> datetime | None:
    """The newest slot whose children are all Ready."""
    by_slot: dict[str, list[retention.Phase]] = {}
    for child in children:
        slot = _annotation(child, SLOT_ANNOTATION)
        if slot:
            by_slot.setdefault(slot, []).append(child_phase(child)[0])
    done = [
        slot for slot, phases in by_slot.items() if all(p is retention.Phase.READY for p in phases)
    ]
    return _time(max(done)) if done else None


def _condition_reason(status: CloudSnapshotScheduleStatus, kind: str) -> str | None:
    found = condition_of(status.conditions, kind)
    return found.reason if found else None


def _set_condition(
    status: CloudSnapshotScheduleStatus,
    kind: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    meta: Mapping[str, Any],
) -> None:
    previous = condition_of(status.conditions, kind)
    status.conditions = set_condition(
        status.conditions,
        previous,
        kind,
        value,
        reason,
        message,
        now=now,
        generation=meta.get("generation"),
    )


def _publish_times(
    meta: Mapping[str, Any], parsed: Parsed | None, status: CloudSnapshotScheduleStatus
) -> None:
    """The schedule's staleness gauges: its latest success (or creation), and while it runs (not
    suspended, spec valid) its next slot and the moment it will be two slots past that success."""
    labels = (str(meta.get("namespace", "")), str(meta.get("name", "")))
    since = status.last_successful_time or _time(meta.get("creationTimestamp"))
    if since is not None:
        metrics.SCHEDULE_LAST_SUCCESS.labels(*labels).set(since.timestamp())
    if parsed is None or parsed.spec.suspend or since is None:
        _unpublish_times(meta, (metrics.SCHEDULE_NEXT_RUN, metrics.SCHEDULE_SUCCESS_DUE))
        return
    if status.next_schedule_time is not None:
        metrics.SCHEDULE_NEXT_RUN.labels(*labels).set(status.next_schedule_time.timestamp())
    first = parsed.cron.next_after(since, parsed.zone)
    metrics.SCHEDULE_SUCCESS_DUE.labels(*labels).set(
        parsed.cron.next_after(first, parsed.zone).timestamp()
    )


_TIME_GAUGES = (
    metrics.SCHEDULE_LAST_SUCCESS,
    metrics.SCHEDULE_NEXT_RUN,
    metrics.SCHEDULE_SUCCESS_DUE,
)


def _unpublish_times(meta: Mapping[str, Any], gauges: Sequence[Gauge] = _TIME_GAUGES) -> None:
    """Remove the schedule's series of these gauges (all three: it is gone)."""
    labels = (str(meta.get("namespace", "")), str(meta.get("name", "")))
    for gauge in gauges:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


def _answer_run_now(
    meta: Mapping[str, Any],
    spec: CloudSnapshotScheduleSpec,
    status: CloudSnapshotScheduleStatus,
    source_count: int,
    step: _Step,
) -> None:
    """A new value of the run-now annotation: one extra run, in the current minute, unless the
    run of that minute is already under way or the schedule is suspended (then it is answered
    without a run). The run is the schedule's latest, made like any other (without jitter)."""
    requested = (meta.get("annotations") or {}).get(RUN_NOW_ANNOTATION)
    if not requested:
        return
    answer = RunNow(value=str(requested))
    if status.run_now is not None and status.run_now.value == answer.value:
        return
    slot = step.now.replace(second=0, microsecond=0)
    latest = status.last_schedule_time
    if spec.suspend:
        status.run_now = answer
        step.record(
            "Warning", "RunNowIgnored", "a run was asked for, but the schedule is suspended"
        )
    elif latest is not None and slot <= latest:
        status.run_now = answer.model_copy(update={"slot": latest})
        step.record("Normal", "RunNow", f"a run was asked for: the run of {rfc3339(latest)} is it")
    else:
        status.run_now = answer.model_copy(update={"slot": slot})
        status.last_schedule_time = slot
        message = f"run of {rfc3339(slot)} for {source_count} source(s), asked for by annotation"
        step.record("Normal", "Run", message, runs=1)


def _set_ready(
    status: CloudSnapshotScheduleStatus,
    entries: Sequence[SourceStatus],
    now: datetime,
    meta: Mapping[str, Any],
) -> None:
    blocked = [e.source for e in entries if e.blocked]
    waiting = [e.source for e in entries if not e.ready]
    if blocked:
        _set_condition(
            status, READY, "False", "Blocked", f"blocked: {', '.join(blocked)}", now, meta
        )
    elif not entries:
        _set_condition(status, READY, "False", "NoSources", "no source selected", now, meta)
    elif waiting:
        message = f"no Ready snapshot yet: {', '.join(waiting)}"
        _set_condition(status, READY, "False", "Waiting", message, now, meta)
    else:
        message = "every source has a Ready snapshot"
        _set_condition(status, READY, "True", "Available", message, now, meta)


def _dump(status: CloudSnapshotScheduleStatus) -> dict[str, Any]:
    dumped: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped
