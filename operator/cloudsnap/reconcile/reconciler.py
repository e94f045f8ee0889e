"""The generic lifecycle loop: one step from a CloudSnapshot body to a Result.

A step reads the resource, asks the external client what EVS holds, makes at most one mutating
call, and returns what to persist (status, finalizer), what to announce (events) and when to come
back. It never loops or sleeps itself: the caller's scheduler does, so a thousand resources waiting
on EVS cost a thousand queue entries. The caller must persist ``Result.status_patch`` of a step
that created a snapshot before it runs the next step for that resource: that is what makes
``status.snapshotID`` appear "at once".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pydantic

from cloudsnap.api import (
    CloudSnapshotSpec,
    CloudSnapshotStatus,
    Condition,
    ConditionStatus,
    StatusError,
    effective_deletion_policy,
)
from cloudsnap.evs import EVSError, Snapshot
from cloudsnap.reconcile.accounts import Account, Accounts
from cloudsnap.reconcile.backoff import Timing
from cloudsnap.reconcile.external import External, Observation, Source, Target
from cloudsnap.reconcile.failures import (
    INVALID_SPEC,
    SNAPSHOT_NOT_FOUND,
    Failure,
    Kind,
    LocalFailure,
    blame_class,
    classify,
)

READY = "Ready"
SYNCED = "Synced"
EventType = Literal["Normal", "Warning"]
_KEEP: Any = object()


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the resource."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Result:
    """The outcome of one step.

    ``status_patch`` is a JSON merge patch for the status subresource (None: nothing changed).
    ``finalizer`` is True to add ours before anything else, False to remove it after the status,
    None to leave it. ``requeue_after`` None means wait for the next change of the resource.
    """

    outcome: str
    status_patch: dict[str, Any] | None = None
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    finalizer: bool | None = None
    became_ready: bool = False
    phase: str = ""


@dataclass(frozen=True)
class _Resource:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: CloudSnapshotSpec
    status: CloudSnapshotStatus
    raw_status: dict[str, Any]
    deleting: bool
    has_finalizer: bool

    @property
    def target(self) -> Target:
        return Target(self.namespace, self.name, self.uid, self.spec, self.status.snapshot_id)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == kind), None)


@dataclass
class _Draft:
    """The status being built for this step, starting from the current one."""

    res: _Resource
    now: datetime
    status: CloudSnapshotStatus = field(init=False)

    def __post_init__(self) -> None:
        self.status = self.res.status.model_copy(deep=True)
        self.status.observed_generation = self.res.generation

    def mirror(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            self.status.phase = ""
            return
        self.status.snapshot_id = snapshot.id
        self.status.phase = snapshot.status
        self.status.size = snapshot.size
        self.status.created_at = snapshot.created_at
        self.status.updated_at = snapshot.updated_at

    def condition(self, kind: str, status: ConditionStatus, reason: str, message: str) -> None:
        old = self.res.condition(kind)
        keep_time = old is not None and old.status == status
        new = Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=old.last_transition_time if old and keep_time else self.now,
            observed_generation=self.res.generation,
        )
        others = [c for c in self.status.conditions if c.type != kind]
        self.status.conditions = sorted([*others, new], key=lambda c: (c.type != READY, c.type))

    def synced(self) -> None:
        self.condition(SYNCED, "True", "ReconcileSuccess", "the EVS snapshot matches the spec")
        self.status.error = None

    def failed(self, failure: Failure) -> None:
        self.condition(SYNCED, "False", "ReconcileError", failure.describe())
        old = self.res.status.error
        same = old is not None and (old.code, old.message) == (failure.code, failure.message)
        self.status.error = StatusError(
            code=failure.code,
            message=failure.message,
            retryable=failure.retryable,
            time=old.time if old is not None and same else self.now,
        )

    def patch(self) -> dict[str, Any] | None:
        """A merge patch from the current status to the draft; None when they are equal."""
        new = _dump(self.status)
        old = self.res.raw_status
        patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
        patch.update({k: None for k in old if k not in new})
        return patch or None


def _dump(status: CloudSnapshotStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class Reconciler:
    """Turns a CloudSnapshot body into the next Result, talking to EVS through its class."""

    def __init__(
        self,
        accounts: Accounts,
        *,
        finalizer: str,
        timing: Timing | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
    ) -> None:
        self._accounts = accounts
        self._finalizer = finalizer
        self._timing = timing or Timing()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._attempts: dict[str, int] = {}
        self._fresh: set[str] = set()

    def forget(self, uid: str) -> None:
        """Drop what is remembered of a resource that is gone."""
        self._attempts.pop(uid, None)
        self._fresh.discard(uid)

    async def reconcile(self, body: Mapping[str, Any]) -> Result:
        """One step for the resource in ``body`` (a raw Kubernetes object)."""
        try:
            res = self._parse(body)
        except pydantic.ValidationError as exc:
            return self._invalid_body(body, exc)
        if res.deleting:
            if not res.has_finalizer:
                return Result(outcome="success")
            return await self._finalize(res)
        return await self._ensure(res)

    def _parse(self, body: Mapping[str, Any]) -> _Resource:
        meta = body.get("metadata", {})
        raw_status = dict(body.get("status") or {})
        return _Resource(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            spec=CloudSnapshotSpec.model_validate(body.get("spec") or {}),
            status=CloudSnapshotStatus.model_validate(raw_status),
            raw_status=raw_status,
            deleting=bool(meta.get("deletionTimestamp")),
            has_finalizer=self._finalizer in (meta.get("finalizers") or ()),
        )

    def _invalid_body(self, body: Mapping[str, Any], exc: pydantic.ValidationError) -> Result:
        """A body the CRD schema should have refused: report it, never crash, never call EVS."""
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        meta = body.get("metadata", {})
        stub = _Resource(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            spec=CloudSnapshotSpec.model_construct(),
            status=CloudSnapshotStatus(),
            raw_status=dict(body.get("status") or {}),
            deleting=False,
            has_finalizer=False,
        )
        failure = Failure(INVALID_SPEC, f"the resource does not parse: {fields}", Kind.INVALID)
        return self._failed(stub, failure)

    # -- create / adopt / update / follow ---------------------------------------------------

    async def _ensure(self, res: _Resource) -> Result:
        try:
            account = await self._accounts.resolve(res.spec.class_name)
        except LocalFailure as exc:
            return self._failed(res, exc.failure)
        if not res.has_finalizer and not _vanished_before(res):
            return self._add_finalizer(res)
        external = External(account)
        target = res.target
        if res.uid in self._fresh:
            # We added the finalizer ourselves one step ago, and a create is only ever sent
            # while it is on: no snapshot of this resource can exist, so skip the lookup.
            self._fresh.discard(res.uid)
            return await self._create(res, account, external, target)
        try:
            seen = await external.observe(target)
        except EVSError as exc:
            return self._failed(res, _evs_failure(account, exc, "show"))
        if seen.snapshot is None and seen.source is not None:
            return self._vanished(res, seen)
        if seen.snapshot is None:
            return await self._create(res, account, external, target)
        return await self._follow(res, account, external, target, seen)

    def _cannot_create(self, res: _Resource) -> Result:
        """Neither a disk to snapshot nor a snapshot to adopt: only the spec can fix that."""
        message = "spec needs volumeID (to create a snapshot) or snapshotID (to adopt one)"
        return self._failed(res, Failure(INVALID_SPEC, message, Kind.INVALID), release=True)

    def _add_finalizer(self, res: _Resource) -> Result:
        """Hold the resource before the first EVS call that may leave a snapshot behind."""
        events: tuple[Event, ...] = ()
        if not (res.status.snapshot_id or res.spec.snapshot_id):
            self._fresh.add(res.uid)
            if not res.status.error:
                what = f"snapshot of volume {res.spec.volume_id}"
                events = (Event("Normal", "Creating", f"creating an EVS {what}"),)
        return Result(outcome="success", events=events, requeue_after=0.0, finalizer=True)

    async def _create(
        self, res: _Resource, account: Account, external: External, target: Target
    ) -> Result:
        if res.spec.volume_id is None:
            return self._cannot_create(res)
        try:
            snapshot = await external.create(target)
        except EVSError as exc:
            failure = _evs_failure(account, exc, "create")
            # A refusal (4xx) made nothing: no snapshot can exist, so no finalizer is needed
            # until the next attempt. After a transient failure the create may have happened.
            return self._failed(res, failure, release=failure.kind is not Kind.TRANSIENT)
        self._attempts.pop(res.uid, None)
        draft = _Draft(res, self._clock())
        draft.mirror(snapshot)
        draft.synced()
        self._ready_from_phase(draft, snapshot)
        event = Event(
            "Normal", "Created", f"EVS accepted snapshot {snapshot.id} ({snapshot.status})"
        )
        return Result(
            outcome="success",
            status_patch=draft.patch(),
            events=(event,),
            requeue_after=self._timing.poll,
            phase=snapshot.status,
        )

    async def _follow(
        self,
        res: _Resource,
        account: Account,
        external: External,
        target: Target,
        seen: Observation,
    ) -> Result:
        snapshot = seen.snapshot
        assert snapshot is not None
        events: list[Event] = []
        if not res.status.snapshot_id:
            how = "spec.snapshotID" if seen.source is Source.SPEC else "its owner-uid tag"
            events.append(
                Event("Normal", "Adopted", f"adopted EVS snapshot {snapshot.id} by {how}")
            )
        if snapshot.status == "available" and external.needs_update(target, snapshot):
            try:
                snapshot = await external.update(target, snapshot)
            except EVSError as exc:
                failure = _evs_failure(account, exc, "update")
                return self._failed(res, failure, snapshot=snapshot, events=events)
            events.append(Event("Normal", "Updated", f"updated name/description of {snapshot.id}"))
        self._attempts.pop(res.uid, None)
        draft = _Draft(res, self._clock())
        draft.mirror(snapshot)
        draft.synced()
        became_ready = self._ready_from_phase(draft, snapshot)
        if became_ready:
            events.append(Event("Normal", "Available", f"EVS snapshot {snapshot.id} is available"))
        elif snapshot.status == "error" and _reason(res, READY) != "Error":
            events.append(Event("Warning", "Failed", f"EVS snapshot {snapshot.id} is in error"))
        if snapshot.status in ("available", "error"):
            delay = self._timing.jittered(self._timing.resync, self._rng)
        else:
            delay = self._timing.poll
        return Result(
            outcome="success",
            status_patch=draft.patch(),
            events=tuple(events),
            requeue_after=delay,
            became_ready=became_ready,
            phase=snapshot.status,
        )

    def _ready_from_phase(self, draft: _Draft, snapshot: Snapshot) -> bool:
        """Set Ready from the EVS status; True when Ready has just turned True."""
        was_ready = _condition_status(draft.res, READY) == "True"
        phase = snapshot.status
        if phase == "available":
            draft.condition(READY, "True", "Available", f"EVS snapshot {snapshot.id} is available")
            return not was_ready
        if phase == "creating":
            # No progress percentage here: it would cost a status write per poll.
            message = f"EVS snapshot {snapshot.id} is being created"
            draft.condition(READY, "False", "Creating", message)
        elif phase == "error":
            draft.condition(READY, "False", "Error", f"EVS snapshot {snapshot.id} is in error")
        else:
            draft.condition(READY, "False", "Pending", f"EVS snapshot {snapshot.id} is {phase}")
        return False

    def _vanished(self, res: _Resource, seen: Observation) -> Result:
        """The snapshot we knew is gone from EVS: say so, never make a new one."""
        gone = res.status.snapshot_id or res.spec.snapshot_id
        draft = _Draft(res, self._clock())
        draft.mirror(None)
        message = f"EVS snapshot {gone} does not exist; it is not re-created"
        if seen.source is Source.SPEC and not res.status.snapshot_id:
            message = f"EVS snapshot {gone} named by spec.snapshotID does not exist"
        draft.condition(READY, "False", "NotFound", message)
        draft.failed(Failure(SNAPSHOT_NOT_FOUND, message, Kind.BLOCKED))
        events: tuple[Event, ...] = ()
        if _reason(res, READY) != "NotFound":
            events = (Event("Warning", "NotFound", message),)
        return Result(
            outcome=Kind.BLOCKED.value,
            status_patch=draft.patch(),
            events=events,
            requeue_after=self._timing.jittered(self._timing.resync, self._rng),
            finalizer=False if res.has_finalizer else None,
        )

    # -- errors -------------------------------------------------------------------------------

    def _failed(
        self,
        res: _Resource,
        failure: Failure,
        *,
        snapshot: Snapshot | None = _KEEP,
        events: list[Event] | None = None,
        release: bool = False,
        ready_reason: str = "",
    ) -> Result:
        """Record the failure and pick when to retry, by its class (DESIGN.md §2)."""
        draft = _Draft(res, self._clock())
        if snapshot is not _KEEP:
            draft.mirror(snapshot)
        draft.failed(failure)
        if ready_reason:
            draft.condition(READY, "False", ready_reason, failure.describe())
        elif not draft.status.snapshot_id:
            reason = "Pending" if failure.kind is Kind.TRANSIENT else "Error"
            draft.condition(READY, "False", reason, failure.describe())
        out = list(events or [])
        old = res.status.error
        if old is None or (old.code, old.message) != (failure.code, failure.message):
            out.append(Event("Warning", "Failed", failure.describe()))
        if failure.kind is Kind.TRANSIENT:
            attempt = self._attempts.get(res.uid, 0)
            self._attempts[res.uid] = attempt + 1
            delay: float | None = self._timing.backoff.delay(attempt, self._rng)
        else:
            self._attempts.pop(res.uid, None)
            blocked = failure.kind is Kind.BLOCKED
            delay = self._timing.jittered(self._timing.blocked, self._rng) if blocked else None
        return Result(
            outcome=failure.kind.value,
            status_patch=draft.patch(),
            events=tuple(out),
            requeue_after=delay,
            finalizer=False if release and res.has_finalizer else None,
            phase=draft.status.phase or "",
        )

    # -- deletion -----------------------------------------------------------------------------

    async def _finalize(self, res: _Resource) -> Result:
        account: Account | None = None
        try:
            account = await self._accounts.resolve(res.spec.class_name)
        except LocalFailure as exc:
            if effective_deletion_policy(res.spec, None) == "Delete":
                return self._failed(res, exc.failure, ready_reason="Deleting")
        policy = effective_deletion_policy(res.spec, account.spec if account else None)
        known = res.status.snapshot_id or res.spec.snapshot_id
        if policy == "Retain" or account is None:
            what = f"EVS snapshot {known}" if known else "no EVS snapshot"
            event = Event("Normal", "Retained", f"deletionPolicy Retain: {what} kept")
            return self._released(res, (event,))
        external = External(account)
        try:
            seen = await external.observe(res.target)
        except EVSError as exc:
            failure = _evs_failure(account, exc, "show")
            return self._failed(res, failure, ready_reason="Deleting")
        snapshot = seen.snapshot
        if snapshot is None:
            message = f"EVS snapshot {known} is gone" if known else "no EVS snapshot to delete"
            event = Event("Normal", "Deleted", message)
            return self._released(res, (event,))
        draft = _Draft(res, self._clock())
        draft.mirror(snapshot)
        if snapshot.status in ("available", "error"):
            try:
                accepted = await external.delete(snapshot)
            except EVSError as exc:
                failure = _evs_failure(account, exc, "delete")
                return self._failed(res, failure, snapshot=snapshot, ready_reason="Deleting")
            if not accepted:
                event = Event("Normal", "Deleted", f"EVS snapshot {snapshot.id} is gone")
                return self._released(res, (event,))
            draft.status.phase = "deleting"
            message = f"deleting EVS snapshot {snapshot.id}"
        elif snapshot.status == "error_deleting":
            failure = Failure("EVS.2019", f"EVS failed to delete {snapshot.id}", Kind.BLOCKED)
            return self._failed(res, failure, snapshot=snapshot, ready_reason="Deleting")
        elif snapshot.status == "deleting":
            message = f"waiting for EVS to finish deleting {snapshot.id}"
        else:
            message = f"waiting for EVS snapshot {snapshot.id} to leave {snapshot.status}"
        self._attempts.pop(res.uid, None)
        draft.synced()
        draft.condition(READY, "False", "Deleting", message)
        events: tuple[Event, ...] = ()
        if _reason(res, READY) != "Deleting" or snapshot.status in ("available", "error"):
            events = (Event("Normal", "Deleting", message),)
        return Result(
            outcome="success",
            status_patch=draft.patch(),
            events=events,
            requeue_after=self._timing.poll,
            phase=draft.status.phase or "",
        )

    def _released(self, res: _Resource, events: tuple[Event, ...]) -> Result:
        self._attempts.pop(res.uid, None)
        return Result(outcome="success", events=events, finalizer=False)


def _evs_failure(account: Account, exc: EVSError, operation: str) -> Failure:
    secret = account.spec.credentials_secret_ref.name
    return blame_class(classify(exc, operation), account.class_name, secret)


def _vanished_before(res: _Resource) -> bool:
    """The resource's snapshot was found gone earlier: observing it again needs no finalizer."""
    return bool(res.status.snapshot_id) and _reason(res, READY) == "NotFound"


def _condition_status(res: _Resource, kind: str) -> str | None:
    cond = res.condition(kind)
    return cond.status if cond else None


def _reason(res: _Resource, kind: str) -> str | None:
    cond = res.condition(kind)
    return cond.reason if cond else None
