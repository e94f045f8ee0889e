"""CloudSnapshotSchedules: make each slot's children, apply retention, report (docs/schedules.md).

kopf delivers the schedules' watch events and the schedule children's CloudSnapshot events; this
module keeps the latest body of each schedule and runs one step per schedule through the same
keyed `Scheduler` as the CloudSnapshots. A step reads the schedule's children from the API server
(never from a cache that might not have caught up), asks the pure functions of
`cloudsnap.schedule` what is due and what to delete, makes those writes, records the status and
says when to look again: at the next slot, at the next jittered create, or when a child changes.

Only the leader acts (``may_act``, checked before every step and write). Children are found by
the schedule's label *and* an ownerReference carrying the schedule's UID, and only they are ever
deleted; a child's deterministic name makes a slot's create idempotent across restarts and
replicas (AlreadyExists of our own child is success).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic

from cloudsnap import metrics
from cloudsnap.api import API_VERSION, GROUP, SNAPSHOT_KIND, Condition, ConditionStatus
from cloudsnap.api.constants import (
    EVS_SNAPSHOTS_PER_DISK,
    SCHEDULE_KIND,
    SCHEDULE_LABEL,
    SLOT_ANNOTATION,
    SOURCE_ANNOTATION,
    SOURCE_LABEL,
)
from cloudsnap.api.models import with_condition
from cloudsnap.api.schedule import (
    CloudSnapshotScheduleSpec,
    CloudSnapshotScheduleStatus,
    LabelSelector,
    SourceStatus,
)
from cloudsnap.reconcile import Event, Scheduler
from cloudsnap.reconcile.failures import CLAIM_NOT_BOUND, CLAIM_NOT_FOUND, UNSUPPORTED_VOLUME
from cloudsnap.reconcile.reconciler import EventType
from cloudsnap.schedule.cron import Cron, CronError, shortest_interval
from cloudsnap.schedule.retention import Phase, Policy, Reason, Snapshot, decide
from cloudsnap.schedule.runs import child_name, jitter_delay, label_value, parse_duration, plan_run
from cloudsnap.writes import Writer

log = logging.getLogger(__name__)

SCHEDULE_FINALIZER = f"{GROUP}/schedule-children"
"""Held while a schedule may have children: its deletion first keeps (releases) or deletes them."""
QUOTA_CODE = "EVS.5413"
# A source blocked by a full disk, or a step that failed, looks again this much later.
RETRY_SECONDS = 30.0
# Wake this long after a slot or a jittered create, so the clock has certainly passed it.
WAKE_MARGIN_SECONDS = 0.05
# A step fenced off because this replica may not act now comes back this much later.
NOT_LEADING_RETRY_SECONDS = 1.0
READY, SYNCED = "Ready", "Synced"
REFUSED = "the API server refused the child"
"""Starts a source's blocked text when the API server refused its child (its words follow)."""
# A child blocked with one of these has not found its disk (reconcile/volumes.py).
UNRESOLVED_CODES = frozenset({CLAIM_NOT_FOUND, CLAIM_NOT_BOUND, UNSUPPORTED_VOLUME})


class ScheduleStore(Writer, Protocol):
    """The Kubernetes reads and writes of a schedule step (kube.KubeScheduleStore; in memory
    in tests): the schedule's own status, finalizers and Events (``Writer``), its children and
    the claims its selector picks. Every write is fenced by the caller's ``may_act``."""

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        """Every CloudSnapshot of the namespace, read from the API server."""
        ...

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create it; on AlreadyExists the object stored under that name; ChildRefused when
        the API server refuses it."""
        ...

    async def delete_snapshot(self, namespace: str, name: str, uid: str) -> None:
        """Delete the CloudSnapshot with this UID (nothing if it is gone or another one)."""
        ...

    async def release_snapshot(
        self, namespace: str, name: str, uid: str, owner_uid: str, resource_version: str
    ) -> None:
        """Drop the ownerReference to ``owner_uid`` (the child outlives its schedule)."""
        ...

    async def list_claims(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The PersistentVolumeClaims of the namespace matching a label selector."""
        ...


class ChildRefused(Exception):
    """The API server refused a child (e.g. a field it does not serve); the message says why."""


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
    policy: Policy


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
    policy = Policy(spec.retention.max_count, spec.retention.min_ready, max_age)
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


def child_phase(body: Mapping[str, Any]) -> tuple[Phase, bool]:
    """Where a CloudSnapshot is, for retention, and whether it waits for room on its disk."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Phase.DELETING, False
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == READY), {})
    if ready.get("status") == "True":
        return Phase.READY, False
    if status.get("phase") == "error" or ready.get("reason") in ("NotFound", "AlreadyOwned"):
        return Phase.FAILED, False
    if status.get("snapshotID"):
        return Phase.CREATING, False
    code = (status.get("error") or {}).get("code")
    if code == QUOTA_CODE:
        return Phase.PENDING, True
    if code in UNRESOLVED_CODES and not status.get("volumeID"):
        return Phase.UNRESOLVED, False
    if ready.get("reason") == "Error":
        return Phase.FAILED, False  # no snapshot and a failure: superseded by a newer Ready
    return Phase.PENDING, False


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owned_by(body: Mapping[str, Any], uid: str) -> bool:
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("kind") == SCHEDULE_KIND for ref in refs)


def _volume_of(body: Mapping[str, Any]) -> str | None:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return spec.get("volumeID") or status.get("volumeID")


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


class ScheduleController:
    """Keeps the latest body of each schedule and runs its steps; only while leading."""

    def __init__(
        self,
        store: ScheduleStore,
        *,
        max_workers: int,
        may_act: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._may_act = may_act
        self._clock = clock
        self._bodies: dict[str, dict[str, Any]] = {}
        self._generations: dict[str, tuple[int, bool]] = {}
        self._children_by_phase: dict[str, Counter[str]] = {}
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}
        """The status this replica last wrote for each schedule, with the schedule's UID: only
        the leader writes it, so it is newer than that of a body the watch has not caught up
        with, which a step would otherwise run its slot again from."""
        self._room_made: dict[str, datetime] = {}
        """Children EVS refused for want of room that a deletion has made room for, and when:
        their retry follows the deletion at once, but a step that reads the refusal before the
        retry's status must not free a second place for it."""
        self.scheduler: Scheduler[str] = Scheduler(self.step, concurrency=max_workers)

    # -- watch --------------------------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A schedule's watch event: keep the body; look again when its spec or deletion changed."""
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if event_type == "DELETED":
            self._bodies.pop(key, None)
            self._generations.pop(key, None)
            self._children_by_phase.pop(key, None)
            self._written.pop(key, None)
            self.scheduler.forget(key)
            self._publish_children()
            return
        old = self._bodies.get(key)
        if old is not None and old["metadata"].get("uid") != meta.get("uid"):
            self._generations.pop(key, None)  # a new schedule of the same name
        self._bodies[key] = dict(body)
        seen = (int(meta.get("generation") or 0), bool(meta.get("deletionTimestamp")))
        if self._generations.get(key) != seen:
            self._generations[key] = seen
            self.scheduler.enqueue(key)

    def observe_child(self, body: Mapping[str, Any]) -> None:
        """A CloudSnapshot event: if a schedule's child changed, its schedule looks again."""
        meta = body.get("metadata") or {}
        if SCHEDULE_LABEL not in (meta.get("labels") or {}):
            return
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == SCHEDULE_KIND:
                key = f"{meta.get('namespace', '')}/{ref.get('name', '')}"
                if key in self._bodies:
                    self.scheduler.enqueue(key)

    def start(self) -> None:
        """Start the scheduler once, from the first watch event (on kopf's event loop)."""
        self.scheduler.start("cloudsnap-schedules")

    async def stop(self) -> None:
        """Cancel the scheduler and the steps in flight."""
        await self.scheduler.stop()

    def start_leading(self) -> None:
        """This replica holds the Lease: look at every schedule again."""
        for key in self._bodies:
            self.scheduler.enqueue(key)
        self.scheduler.resume()

    def stop_leading(self) -> None:
        """This replica lost the Lease: start nothing, cancel what runs; the next leader writes
        the statuses, so they are read from the watch again."""
        self.scheduler.pause()
        self._written.clear()

    # -- step ---------------------------------------------------------------------------------

    async def step(self, key: str) -> float | None:
        """One step of one schedule; seconds until the next (None: on the next change)."""
        body = self._bodies.get(key)
        if body is None:
            return None
        if not self._may_act():
            return NOT_LEADING_RETRY_SECONDS
        step = _Step(self._clock())
        try:
            return await self._step(body, step)
        finally:
            await self._post(body, step)

    async def _post(self, body: Mapping[str, Any], step: _Step) -> None:
        """Post the step's Events, even when it failed part way (what it did is still done)."""
        for event in step.events:
            if self._may_act():
                await self._store.post_event(body, event)

    async def _step(self, body: dict[str, Any], step: _Step) -> float | None:
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        written = self._written.get(f"{namespace}/{name}")
        status = CloudSnapshotScheduleStatus.model_validate(
            written[1] if written is not None and written[0] == uid else body.get("status") or {}
        )
        if meta.get("deletionTimestamp"):
            await self._finish(body, step)
            return None
        try:
            parsed = parse_spec(body.get("spec") or {})
        except InvalidSpec as exc:
            if _condition_reason(status, SYNCED) != "InvalidSpec":
                step.record("Warning", "InvalidSpec", str(exc))
            _set_condition(status, SYNCED, "False", "InvalidSpec", str(exc), step.now, meta)
            status.observed_generation = meta.get("generation")
            await self._write_status(body, status, step)
            return None
        finalizers = list(meta.get("finalizers") or [])
        if SCHEDULE_FINALIZER not in finalizers:
            fresh = await self._store.set_finalizers(
                namespace,
                name,
                uid,
                [*finalizers, SCHEDULE_FINALIZER],
                str(meta.get("resourceVersion", "")),
            )
            if fresh is None:
                return None
            self._bodies[f"{namespace}/{name}"] = body = fresh
            meta = fresh["metadata"]
        spec = parsed.spec
        sources = await self._sources(namespace, spec)
        everything = await self._store.list_snapshots(namespace)
        children = [
            s
            for s in everything
            if (s["metadata"].get("labels") or {}).get(SCHEDULE_LABEL) == label_value(name)
            and _owned_by(s, uid)
        ]

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
                    f"the run of {_rfc3339(status.last_schedule_time)} ended without a child of"
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
            message = f"{plan.missed} run(s) skipped, the latest at {_rfc3339(latest)} ({why})"
            step.record("Warning", "MissedRun", message, missed=plan.missed)
            status.last_missed_time = plan.latest_missed or status.last_missed_time
        if plan.slot is not None:
            status.last_schedule_time = plan.slot
            message = f"run of {_rfc3339(plan.slot)} for {len(sources)} source(s)"
            step.record("Normal", "Run", message, runs=1)
        status.next_schedule_time = plan.next_slot
        if plan.next_slot is not None:
            step.wake_at(plan.next_slot)

        active = status.last_schedule_time
        if (
            spec.suspend
            or active is None
            or parsed.cron.next_after(active, parsed.zone) <= step.now
        ):
            active = None  # no run in progress: the latest one's slot has passed
        previous = {entry.source: entry for entry in status.sources}
        by_source: dict[str, list[dict[str, Any]]] = {}
        for kid in children:
            by_source.setdefault(_annotation(kid, SOURCE_ANNOTATION) or "", []).append(kid)
        by_disk: dict[str, list[dict[str, Any]]] = {}
        for body_on_disk in everything:
            disk = _volume_of(body_on_disk)
            if disk:
                by_disk.setdefault(disk, []).append(body_on_disk)
        entries: list[SourceStatus] = []
        for source in sources:
            was_blocked = previous[source.key].blocked if source.key in previous else None
            entry = previous.get(source.key) or SourceStatus(source=source.key)
            entry.blocked = None
            mine = list(by_source.get(source.key, ()))
            create_now = False
            if active is not None and (entry.last_run_time is None or entry.last_run_time < active):
                delay = jitter_delay(f"{namespace}/{name}", source.key, active, spec.jitter_seconds)
                at = active + timedelta(seconds=delay)
                deadline = spec.starting_deadline_seconds
                if at > step.now:
                    step.wake_at(at)
                elif deadline is not None and step.now - at > timedelta(seconds=deadline):
                    entry.last_run_time = active  # too late for this one: never made
                    message = f"{source.key}: the run of {_rfc3339(active)} started too late"
                    step.record("Warning", "MissedRun", message, missed=1)
                else:
                    create_now = True
            view = self._retention_view(mine, by_disk, uid, source, step.now)
            decision = decide(
                view,
                parsed.policy,
                now=step.now,
                create_pending=create_now,
                disk_limit=EVS_SNAPSHOTS_PER_DISK,
            )
            by_name = {c["metadata"]["name"]: c for c in mine}
            if any(reason is Reason.DISK_LIMIT for _, reason in decision.delete):
                for refused in (s for s in view if s.waiting_for_room and s.name in by_name):
                    self._room_made[by_name[refused.name]["metadata"]["uid"]] = step.now
            if any(c["metadata"]["uid"] in self._room_made for c in mine):
                # Refused again meanwhile (the place taken), it asks for room once this passes.
                step.wake_at(step.now + timedelta(seconds=RETRY_SECONDS))
            for doomed_name, reason in decision.delete:
                doomed = by_name[doomed_name]
                await self._store.delete_snapshot(namespace, doomed_name, doomed["metadata"]["uid"])
                metrics.RETENTION_DELETIONS.labels(reason=reason.value).inc()
                step.event("Normal", "RetentionDeleted", f"{doomed_name} deleted ({reason.value})")
                mine = [c for c in mine if c is not doomed]
                children = [c for c in children if c is not doomed]
            if decision.blocked:
                entry.blocked = (
                    f"the disk holds EVS's limit of {EVS_SNAPSHOTS_PER_DISK} snapshots and none"
                    " of this schedule's may be deleted to make room"
                )
                if not _same_cause(was_blocked, entry.blocked):
                    step.record("Warning", "RunBlocked", f"{source.key}: {entry.blocked}")
                step.wake_in(RETRY_SECONDS)
            elif create_now and active is not None:
                try:
                    child = await self._create_child(body, parsed, source, active)
                    problem = "a CloudSnapshot not made by this schedule has the child's name"
                except ChildRefused as exc:
                    child, problem = None, f"{REFUSED}: {exc}"
                if child is not None:
                    entry.last_run_time = active
                    mine.append(child)
                    children.append(child)
                else:
                    entry.blocked = problem
                    if not _same_cause(was_blocked, entry.blocked):
                        step.record("Warning", "RunBlocked", f"{source.key}: {problem}")
                    step.wake_in(RETRY_SECONDS)
            if entry.blocked is None:
                entry.blocked = _unresolved(mine)
                if entry.blocked is not None and not _same_cause(was_blocked, entry.blocked):
                    step.record("Warning", "RunBlocked", f"{source.key}: {entry.blocked}")
            entries.append(_count(entry, mine))
        self._children_by_phase[f"{namespace}/{name}"] = Counter(
            child_phase(c)[0].value for c in children
        )
        self._publish_children()

        status.sources = entries
        status.source_count = len(sources)
        status.last_successful_time = _last_successful(children) or status.last_successful_time
        status.observed_generation = meta.get("generation")
        _set_condition(status, SYNCED, "True", "Synced", "the schedule is running", step.now, meta)
        _set_ready(status, entries, step.now, meta)
        await self._write_status(body, status, step)
        return min(step.wake) if step.wake else None

    async def _write_status(
        self, body: Mapping[str, Any], status: CloudSnapshotScheduleStatus, step: _Step
    ) -> None:
        """Write the step's status, remember it as the schedule's, and post and count what it
        records."""
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        dumped = _dump(status)
        if await self._store.patch_status(namespace, name, uid, dumped) is None:
            return  # the schedule is gone
        self._written[f"{namespace}/{name}"] = (uid, dumped)
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

    def _retention_view(
        self,
        mine: Sequence[Mapping[str, Any]],
        by_disk: Mapping[str, Sequence[Mapping[str, Any]]],
        uid: str,
        source: Source,
        now: datetime,
    ) -> list[Snapshot]:
        """The source's children, and the other CloudSnapshots of its disk (they take room). A
        refused child room was made for within RETRY_SECONDS waits for its retry, not for room."""
        held_off = now - timedelta(seconds=RETRY_SECONDS)
        for child_uid in [u for u, at in self._room_made.items() if at < held_off]:
            del self._room_made[child_uid]
        disks = {d for d in (_volume_of(c) for c in mine) if d}
        if "volumeID" in source.spec:
            disks.add(source.spec["volumeID"])
        own = {c["metadata"]["uid"] for c in mine}
        others = [b for d in disks for b in by_disk.get(d, ()) if b["metadata"]["uid"] not in own]
        view = []
        for body in [*mine, *others]:
            ours = body["metadata"]["uid"] in own
            phase, waiting = child_phase(body)
            waiting = waiting and body["metadata"]["uid"] not in self._room_made
            born = _time(_annotation(body, SLOT_ANNOTATION)) if ours else None
            view.append(
                Snapshot(
                    name=body["metadata"]["name"],
                    phase=phase,
                    created=born or _time(body["metadata"].get("creationTimestamp")) or _EPOCH,
                    ours=ours and _owned_by(body, uid),
                    waiting_for_room=waiting,
                )
            )
        return view

    async def _create_child(
        self, schedule: Mapping[str, Any], parsed: Parsed, source: Source, slot: datetime
    ) -> dict[str, Any] | None:
        """Create the slot's child of ``source``; the existing one if this schedule made it
        before, None if the name is taken by something else."""
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
                    SOURCE_LABEL: label_value(source.key.replace("/", ".")),
                },
                "annotations": {
                    **template.metadata.annotations,
                    SLOT_ANNOTATION: _rfc3339(slot),
                    SOURCE_ANNOTATION: source.key,
                },
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": SCHEDULE_KIND,
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                **template.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                **source.spec,
            },
        }
        stored = await self._store.create_snapshot(meta["namespace"], body)
        if not _owned_by(stored, meta["uid"]) or _annotation(stored, SOURCE_ANNOTATION) != (
            source.key
        ):
            return None
        return stored

    async def _finish(self, body: Mapping[str, Any], step: _Step) -> None:
        """The schedule is being deleted: keep its children (drop our ownerReference, so a
        garbage collector leaves them) or delete them, then let the schedule go."""
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        finalizers = list(meta.get("finalizers") or [])
        if SCHEDULE_FINALIZER not in finalizers:
            return
        delete = bool((body.get("spec") or {}).get("deleteChildrenOnDelete"))
        for child in await self._store.list_snapshots(namespace):
            cmeta = child["metadata"]
            if not _owned_by(child, uid):
                continue
            if delete:
                await self._store.delete_snapshot(namespace, cmeta["name"], cmeta["uid"])
            else:
                await self._store.release_snapshot(
                    namespace, cmeta["name"], cmeta["uid"], uid, str(cmeta["resourceVersion"])
                )
        step.event(
            "Normal",
            "ChildrenDeleted" if delete else "ChildrenKept",
            "children deleted with the schedule"
            if delete
            else "children kept: they no longer belong to the schedule",
        )
        remaining = [f for f in finalizers if f != SCHEDULE_FINALIZER]
        await self._store.set_finalizers(
            namespace, name, uid, remaining, str(meta.get("resourceVersion", ""))
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
    entry.ready = sum(1 for p, _ in phases if p is Phase.READY)
    entry.failed = sum(1 for p, _ in phases if p is Phase.FAILED)
    waiting = (Phase.PENDING, Phase.UNRESOLVED, Phase.CREATING)
    entry.creating = sum(1 for p, _ in phases if p in waiting)
    ready = [c for p, c in phases if p is Phase.READY]
    newest = max(ready, key=lambda c: _annotation(c, SLOT_ANNOTATION) or "", default=None)
    entry.newest_ready = None if newest is None else newest["metadata"]["name"]
    entry.newest_ready_snapshot_id = (
        None if newest is None else (newest.get("status") or {}).get("snapshotID")
    )
    return entry


def _unresolved(children: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the source's newest child waits for its disk (its claim's error), if it does."""
    newest = max(children, key=lambda c: _annotation(c, SLOT_ANNOTATION) or "", default=None)
    if newest is None or child_phase(newest)[0] is not Phase.UNRESOLVED:
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
    by_slot: dict[str, list[Phase]] = {}
    for child in children:
        slot = _annotation(child, SLOT_ANNOTATION)
        if slot:
            by_slot.setdefault(slot, []).append(child_phase(child)[0])
    done = [slot for slot, phases in by_slot.items() if all(p is Phase.READY for p in phases)]
    return _time(max(done)) if done else None


def _condition_reason(status: CloudSnapshotScheduleStatus, kind: str) -> str | None:
    return next((c.reason for c in status.conditions if c.type == kind), None)


def _set_condition(
    status: CloudSnapshotScheduleStatus,
    kind: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    meta: Mapping[str, Any],
) -> None:
    new = Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=meta.get("generation"),
    )
    previous = next((c for c in status.conditions if c.type == kind), None)
    status.conditions = with_condition(status.conditions, previous, new)


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
