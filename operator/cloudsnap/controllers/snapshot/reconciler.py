"""The generic lifecycle loop: one step from a CloudSnapshot body to a Result.

A step reads the resource, asks the external client what the cloud holds, makes at most one
mutating call for the resource itself, and returns what to persist (status, finalizer), what to
announce (events) and when to come back. It never loops or sleeps itself: the caller's scheduler
does. The caller must persist ``Result.status`` of a step before it runs the next step for
that resource: that is what makes ``status.snapshotID`` appear "at once", and what the identity
and ownership rules below rely on (docs/ownership.md):

- The UID is the identity: memory is keyed by UID; the caller's writes carry it as a precondition.
- Look before you create, unless durable state (status) and this process's memory both prove that
  no create was ever sent for the UID; the lookup lists the disk's snapshots and matches the
  owner-UID tag. Extra snapshots with our tag (a create EVS applied after we gave up on it) are
  deleted once settled, keeping the oldest usable one.
- Own before you mutate: update or delete only a snapshot tagged with this resource's UID, or one
  it adopted that no earlier resource claims.
- The account is pinned in status; a changed account is AccountChanged, never "not found".
- Absence is confirmed: NotFound only after two observations a grace period apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pydantic

from cloudsnap.api.constants import (
    EVS_DESCRIPTION_MAX_CHARS,
    EVS_NAME_MAX_CHARS,
    READY,
    SCHEDULE_LABEL,
    SCHEDULE_UID_LABEL,
    SYNCED,
)
from cloudsnap.api.models import (
    AccountRef,
    CloudSnapshotSpec,
    CloudSnapshotStatus,
    Condition,
    ConditionStatus,
    DeletionPolicy,
    condition_of,
    effective_deletion_policy,
    invalid_fields,
    recorded_deletion_policy,
    set_condition,
)
from cloudsnap.api.naming import effective_snapshot_name
from cloudsnap.api.objects import Owner
from cloudsnap.api.progress import snapshot_progress, with_progress
from cloudsnap.controllers.snapshot.external import (
    Changes,
    Connection,
    Connector,
    CreateRequest,
    ExternalSnapshot,
    NotWorthSurveying,
    State,
)
from cloudsnap.controllers.snapshot.tenancy import check_source
from cloudsnap.controllers.snapshot.volumes import (
    ResolvedVolume,
    Unresolved,
    VolumeReader,
    claim_to_resolve,
    resolve_claim,
)
from cloudsnap.controllers.tenancy import NamespaceReader, admit
from cloudsnap.runtime.backoff import Timing
from cloudsnap.runtime.failures import (
    ACCOUNT_CHANGED,
    ALREADY_OWNED,
    CLASS_NOT_FOUND,
    DISK_IN_USE,
    INVALID_SPEC,
    SNAPSHOT_NOT_FOUND,
    STEP_DEADLINE,
    Cause,
    ExternalError,
    Failure,
    Kind,
    LocalFailure,
)
from cloudsnap.runtime.writes import Event

DELETE_FAILED = "DeleteFailed"
# A repeating error's last-seen time is refreshed at most this often: a write per retry would
# cost more than the freshness is worth.
ERROR_REFRESH = timedelta(seconds=60)
# Ready reasons that say more than a failure's "Error"/"Pending" would: a later failure keeps them.
_STICKY_READY_REASONS = frozenset({"NotFound", ALREADY_OWNED, "Deleting"})

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """How a step ended; also the reconcile outcome metric label."""

    SUCCESS = "success"
    INVALID = Kind.INVALID.value
    BLOCKED = Kind.BLOCKED.value
    TRANSIENT = Kind.TRANSIENT.value


@dataclass(frozen=True)
class Result:
    """The outcome of one step.

    ``status`` is the whole new status to write (None: nothing changed).
    ``finalizer`` is True to add ours before anything else, False to remove it after the status,
    None to leave it. ``requeue_after`` None means wait for the next change of the resource.
    ``parked_on_volume``: blocked by the disk's snapshot quota, worth retrying when a snapshot of
    that disk is deleted; ``freed_volume``: this step saw one of ours on that disk deleted.
    ``waits_for``: keys of the Kubernetes objects (a claim, its volume) whose change is worth a
    retry at once (volumes.py).
    """

    outcome: Outcome
    status: dict[str, Any] | None = None
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    finalizer: bool | None = None
    became_ready: bool = False
    phase: str = ""
    parked_on_volume: str | None = None
    freed_volume: str | None = None
    duplicates_deleted: int = 0
    waits_for: tuple[str, ...] = ()


class Claims(Protocol):
    """What the caller knows of the other CloudSnapshots: who claims which snapshot."""

    def resource(self, uid: str) -> str | None:
        """``namespace/name`` of the live CloudSnapshot with this UID, if any."""
        ...

    def prior_claimant(self, snapshot_id: str, uid: str) -> str | None:
        """``namespace/name`` of another CloudSnapshot whose claim on the snapshot comes first."""
        ...


class NoClaims:
    """Claims when the caller tracks no other resources."""

    def resource(self, uid: str) -> str | None:
        return None

    def prior_claimant(self, snapshot_id: str, uid: str) -> str | None:
        return None


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
    schedule: str | None  # the schedule's name label, for a schedule's child

    @property
    def owner(self) -> Owner:
        return Owner(self.uid, self.namespace, self.name)

    @property
    def volume_id(self) -> str | None:
        return self.status.volume_id or self.spec.volume_id

    @property
    def source_volume(self) -> str | None:
        """The disk to snapshot: spec.volumeID, or the one a claim was resolved to and pinned."""
        if self.spec.persistent_volume_claim_name:
            return self.status.volume_id
        return self.spec.volume_id

    def describe_source(self) -> str:
        """The disk snapshotted, and the claim and volume it was resolved from, for the Created
        Event: the only Event of a create, so ``kubectl describe`` shows the source there."""
        what = f"volume {self.source_volume}"
        claim = self.spec.persistent_volume_claim_name
        if claim:
            volume = self.status.persistent_volume_name
            what += f" (PersistentVolumeClaim {claim}, PersistentVolume {volume})"
        return what

    def pinned_to(self, resolved: ResolvedVolume) -> _Resource:
        """This resource with the disk its claim resolves to recorded in status (not yet
        persisted: ``raw_status`` stays as stored, so the step writes it)."""
        status = self.status.model_copy(
            update={
                "volume_id": resolved.volume_id,
                "persistent_volume_name": resolved.persistent_volume,
            }
        )
        return dataclasses.replace(self, status=status)

    def condition(self, kind: str) -> Condition | None:
        return condition_of(self.status.conditions, kind)

    def reason(self, kind: str) -> str | None:
        cond = self.condition(kind)
        return cond.reason if cond else None


@dataclass
class _Draft:
    """The status being built for this step, starting from the current one."""

    res: _Resource
    now: datetime
    status: CloudSnapshotStatus = field(init=False)

    def __post_init__(self) -> None:
        # Shallow: a step assigns fields (conditions too get a new list), never edits inside one.
        self.status = self.res.status.model_copy()
        self.status.observed_generation = self.res.generation

    def mirror(self, snapshot: ExternalSnapshot) -> None:
        self.status.snapshot_id = snapshot.id
        self.status.volume_id = snapshot.volume_id
        self.status.phase = snapshot.phase
        self.status.size = snapshot.size
        self.status.created_at = snapshot.created_at
        self.status.updated_at = snapshot.updated_at
        self.status.missing_since = None

    def pin(self, conn: Connection, *, adopted: bool) -> None:
        """Record where the snapshot lives and the deletion policy in force, once."""
        if self.status.account is None:
            self.status.account = conn.account
        if self.status.deletion_policy is None:
            self.status.deletion_policy = recorded_deletion_policy(
                self.res.spec, conn.class_spec, adopted=adopted
            )
        if adopted:
            self.status.adopted = True

    def condition(self, kind: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions,
            self.res.condition(kind),
            kind,
            status,
            reason,
            message,
            now=self.now,
            generation=self.res.generation,
        )

    def synced(self) -> None:
        self.condition(SYNCED, "True", "ReconcileSuccess", "the EVS snapshot matches the spec")
        self.status.error = None

    def failed(self, failure: Failure, reason: str) -> bool:
        """Record the failure; True when it is a new one (worth an Event)."""
        self.condition(SYNCED, "False", reason, f"{failure.code}: {failure.message}")
        new = failure.status_error(self.now)
        old = self.res.status.error
        # Compared as stored: a long message is kept cut to its field's limit.
        if old is not None and (old.code, old.message) == (new.code, new.message):
            if self.now - old.time >= ERROR_REFRESH:
                self.status.error = old.model_copy(
                    update={"time": self.now, "request_id": new.request_id or old.request_id}
                )
            return False
        self.status.error = new
        return True

    def changed(self) -> dict[str, Any] | None:
        """The new status as Kubernetes stores it, with the kstatus conditions its Ready, Synced
        and error call for; None when it equals the current one."""
        self.status.conditions = with_progress(
            self.status.conditions, snapshot_progress(self.status), self.now, self.res.generation
        )
        new = self.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return None if new == self.res.raw_status else new


class _PollFailed(ExternalError):
    """The batched look at a snapshot failed: a list call shared by the class, not this
    resource's own call, so not this resource's failure to report until it persists."""


@dataclass(frozen=True, slots=True)
class _Steady:
    """A Ready resource whose last step found nothing more to do (``Reconciler._steady``)."""

    body: int  # _body_digest of the body as that step left it (its status names the snapshot)
    connection: Connection
    look: int  # hash of the ExternalSnapshot that step saw: a 64-bit digest kept per resource


@dataclass(frozen=True)
class _Pending:
    """A create request in flight, remembered so a step cut short still records it."""

    conn: Connection
    sent: datetime


class Reconciler:
    """Turns a CloudSnapshot body into the next Result, talking to the cloud through its class."""

    def __init__(
        self,
        connector: Connector,
        *,
        finalizer: str,
        volumes: VolumeReader,
        namespaces: NamespaceReader,
        claims: Claims | None = None,
        timing: Timing | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
    ) -> None:
        self._connector = connector
        self._finalizer = finalizer
        self._volumes = volumes
        self._namespaces = namespaces
        self.claims: Claims = claims or NoClaims()
        self._timing = timing or Timing()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._attempts: dict[str, int] = {}
        # UIDs this process saw being born (a watch ADDED event, not the initial listing) ...
        self._born: set[str] = set()
        # ... UIDs whose finalizer it put on a body with no trace of a create in status ...
        self._held: set[str] = set()
        # ... and UIDs it sent a create for, whatever came of it.
        self._sent: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        # UIDs whose snapshot this process saw deleting: when the list drops it, it is gone.
        self._deleting: set[str] = set()
        # When the batched look at each resource's snapshot began to fail, while it still fails.
        self._poll_failing: dict[str, datetime] = {}
        # Ready resources whose last step changed nothing: while the body, the class's account
        # and EVS's answer stay the same, a drift check repeats that step's outcome without
        # parsing the body or building a status (most of an idle step's cost at 10,000).
        self._steady: dict[str, _Steady] = {}

    def witness_birth(self, uid: str) -> None:
        """The caller saw this resource created while it was the only one reconciling."""
        self._born.add(uid)

    def forget(self, uid: str) -> None:
        """Drop what is remembered of a resource that is gone."""
        self._attempts.pop(uid, None)
        self._born.discard(uid)
        self._held.discard(uid)
        self._sent.discard(uid)
        self._pending.pop(uid, None)
        self._deleting.discard(uid)
        self._poll_failing.pop(uid, None)
        self._steady.pop(uid, None)

    def forget_all(self) -> None:
        """Drop all memory, e.g. on losing or gaining leadership: it no longer proves anything."""
        self._attempts.clear()
        self._born.clear()
        self._held.clear()
        self._sent.clear()
        self._pending.clear()
        self._deleting.clear()
        self._poll_failing.clear()
        self._steady.clear()

    async def reconcile(self, body: Mapping[str, Any]) -> Result:
        """One step for the resource in ``body`` (a raw Kubernetes object), within a deadline."""
        steady = self._steady.pop(str(body.get("metadata", {}).get("uid", "")), None)
        if steady is not None:
            try:
                async with asyncio.timeout(self._timing.step_deadline):
                    result = await self._still_steady(body, steady)
            except TimeoutError:
                result = None
            if result is not None:
                return result
        try:
            res = self._parse(body)
        except pydantic.ValidationError as exc:
            return self._invalid_body(body, exc)
        try:
            async with asyncio.timeout(self._timing.step_deadline):
                if res.deleting:
                    if not res.has_finalizer:
                        return Result(Outcome.SUCCESS)
                    return await self._finalize(res)
                return await self._ensure(res)
        except TimeoutError:
            return self._deadline_passed(res)

    async def _still_steady(self, body: Mapping[str, Any], steady: _Steady) -> Result | None:
        """The drift check of a steady resource: the last step's outcome again if the body, the
        connection and the snapshot are all as that step saw them; None: take a full step.

        A full step on the same inputs would find the same (no spec to apply, no status to
        change, nothing owed to time), so only what it reads is compared. A failed or different
        look falls back to the full step, which looks again.
        """
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return None
        finalized = self._finalizer in (meta.get("finalizers") or ())
        if _body_digest(meta.get("generation"), finalized, body.get("status")) != steady.body:
            return None
        status = body.get("status") or {}
        snapshot_id = status.get("snapshotID")
        if not snapshot_id:
            return None
        try:
            conn = await self._connector.connect((status.get("account") or {}).get("className"))
            if conn is not steady.connection:
                return None
            snapshot = await conn.client.observe(str(snapshot_id))
        except (LocalFailure, ExternalError):
            return None
        if snapshot is None or hash(snapshot) != steady.look:
            return None
        self._steady[sys.intern(str(meta.get("uid", "")))] = steady
        return Result(Outcome.SUCCESS, phase=snapshot.phase)  # the sweep looks at it again

    def sweep_interval(self) -> float:
        """Seconds until the next drift sweep: the resync period, jittered."""
        return self._timing.jittered(self._timing.resync, self._rng)

    async def sweep(self) -> list[tuple[str, float]]:
        """The drift check of every steady resource at once, instead of a step each.

        Per class, one listing of its account (a call per 250 snapshots) is compared with
        what each resource's last step saw. Returns the resources that need a step, with the
        seconds until it: at once where the snapshot looks different or was not listed (the step
        looks by ID before it believes an absence) or where the class now resolves to another
        account; spread over a resync period where the account could not be listed, or holds so
        many snapshots made by others that looking one by one is cheaper, so that each resource
        looks for itself, and an outage that lasts shows in its own status. A steady resource's
        step (``_still_steady``) has no requeue: this is what brings it back, besides a change to
        its body.
        """
        groups: dict[int, tuple[Connection, list[tuple[str, _Steady]]]] = {}
        for uid, steady in self._steady.items():
            groups.setdefault(id(steady.connection), (steady.connection, []))[1].append(
                (uid, steady)
            )
        due: list[tuple[str, float]] = []
        for conn, members in groups.values():
            try:
                current: Connection | None = await self._connector.connect(conn.class_name)
            except LocalFailure:
                current = None
            if current is not conn:
                due.extend((uid, 0.0) for uid, _ in members)
                continue
            unseen = await self._unseen(conn, [steady.look for _, steady in members])
            if unseen is None:
                resync = self._timing.resync
                due.extend((uid, self._rng.uniform(0.0, resync)) for uid, _ in members)
                continue
            # A resource whose step ran meanwhile has a new entry, or none: that step decided.
            due.extend(
                (uid, 0.0)
                for uid, steady in members
                if self._steady.get(uid) is steady and steady.look in unseen
            )
        return due

    async def _unseen(self, conn: Connection, looks: list[int]) -> set[int] | None:
        """Which of ``looks`` no snapshot in the class's account matches; None if the account
        cannot be listed, or should not be (see ``ExternalClient.survey``)."""
        unseen = set(looks)
        try:
            async with asyncio.timeout(self._timing.step_deadline):
                async for snapshot in conn.client.survey(len(looks)):
                    unseen.discard(hash(snapshot))
            return unseen
        except NotWorthSurveying as exc:
            log.debug("Drift sweep of class %s: %s, one by one is cheaper", conn.class_name, exc)
            return None
        except ExternalError as exc:
            why = f"{exc.failure.code}: {exc.failure.message}"
        except TimeoutError:
            why = f"no answer within {self._timing.step_deadline:g}s"
        log.warning(
            "Drift sweep of class %s failed (%s); its %d steady resources look one by one",
            conn.class_name,
            why,
            len(looks),
        )
        return None

    def _parse(self, body: Mapping[str, Any]) -> _Resource:
        raw_status = dict(body.get("status") or {})
        return _resource(
            body,
            spec=CloudSnapshotSpec.model_validate(body.get("spec") or {}),
            status=CloudSnapshotStatus.model_validate(raw_status),
            has_finalizer=self._finalizer in (body.get("metadata", {}).get("finalizers") or ()),
        )

    def _invalid_body(self, body: Mapping[str, Any], exc: pydantic.ValidationError) -> Result:
        """A body the CRD schema should have refused: report it, never crash, never call EVS."""
        stub = _resource(
            body,
            spec=CloudSnapshotSpec.model_construct(),
            status=CloudSnapshotStatus(),
            has_finalizer=False,
        )
        message = f"the resource does not parse: {invalid_fields(exc)}"
        return self._failed(
            _Draft(stub, self._clock()), Failure(INVALID_SPEC, message, Kind.INVALID)
        )

    # -- connecting ---------------------------------------------------------------------------

    async def _connect(self, res: _Resource) -> Connection:
        """The pinned class (a new default class never moves a resource), else the spec's.

        Raises LocalFailure when the class is unusable or its account is no longer the pinned one.
        """
        pinned = res.status.account
        conn = await self._connector.connect(pinned.class_name if pinned else res.spec.class_name)
        if pinned is not None and _where(pinned) != _where(conn.account):
            changed = ", ".join(
                f"{label} {old} -> {new}"
                for label, old, new in zip(
                    ("region", "projectID", "endpoint"),
                    _where(pinned),
                    _where(conn.account),
                    strict=True,
                )
                if old != new
            )
            message = (
                f"CloudSnapshotClass {pinned.class_name} now points at another account"
                f" ({changed}); the snapshot lives in the one recorded in status.account."
                " Restore the class, or create a class for the new account for new snapshots"
            )
            raise LocalFailure(Failure(ACCOUNT_CHANGED, message, Kind.BLOCKED))
        return conn

    # -- create / adopt / update / follow ----------------------------------------------------

    async def _ensure(self, res: _Resource) -> Result:
        draft = _Draft(res, self._clock())
        try:
            conn = await self._connect(res)
            await admit(self._namespaces, conn.class_name, conn.class_spec, res.namespace)
            await check_source(
                self._volumes,
                conn,
                res.namespace,
                res.spec,
                created=bool(res.status.snapshot_id),
            )
        except LocalFailure as exc:
            return self._failed(draft, exc.failure)
        spec = res.spec
        if not (
            res.status.snapshot_id
            or spec.snapshot_id
            or spec.volume_id
            or spec.persistent_volume_claim_name
        ):
            message = (
                "spec needs volumeID or persistentVolumeClaimName (to create a snapshot) or"
                " snapshotID (to adopt one)"
            )
            return self._failed(draft, Failure(INVALID_SPEC, message, Kind.INVALID))
        pinning = claim_to_resolve(spec.persistent_volume_claim_name, res.raw_status)
        if pinning is not None:
            try:
                resolved = await resolve_claim(self._volumes, res.namespace, pinning)
            except Unresolved as exc:
                return _replace(self._failed(draft, exc.failure), waits_for=exc.waits_for)
            except LocalFailure as exc:
                return self._failed(draft, exc.failure)
            res = res.pinned_to(resolved)
            draft = _Draft(res, draft.now)
        if not res.has_finalizer and not _vanished_before(res):
            # A claim's disk is pinned in the same step: no create is ever sent before status
            # names the disk, so a later look for it (after a crash, on delete) knows where.
            return self._add_finalizer(res, draft.changed() if pinning is not None else None)
        try:
            if res.status.snapshot_id:
                return await self._follow(draft, conn, res.status.snapshot_id)
            if res.spec.snapshot_id:
                return await self._adopt(draft, conn, res.spec.snapshot_id)
            return await self._create_or_find(draft, conn)
        except ExternalError as exc:
            return self._quiet_retry(draft, exc) or self._failed(
                draft, self._when_retried(exc.failure)
            )

    def _add_finalizer(self, res: _Resource, status: dict[str, Any] | None) -> Result:
        """Hold the resource before the first cloud call that may leave a snapshot behind
        (``status``: the claim's disk pinned in this step, written after the finalizer).

        No Event: the finalizer announces nothing a user acts on, and the next step's Created
        (or Found, Adopted, Failed) follows within moments.
        """
        if _traceless(res.status):
            self._held.add(res.uid)
        return Result(Outcome.SUCCESS, status=status, requeue_after=0.0, finalizer=True)

    def _never_sent(self, res: _Resource) -> bool:
        """Whether status and memory together prove no create was ever sent for this UID."""
        return _traceless(res.status) and res.uid in self._born and res.uid not in self._sent

    def _first_to_hold(self, res: _Resource) -> bool:
        """Whether this process put the finalizer on a traceless body and sent nothing since.

        Creates are only sent once the finalizer is on, so nobody sent one before, short of a
        crash between a create and its status write followed by the finalizer being stripped
        (`kubectl replace`). The lookup still covers that; no late create is waited for.
        """
        return _traceless(res.status) and res.uid in self._held and res.uid not in self._sent

    async def _create_or_find(self, draft: _Draft, conn: Connection) -> Result:
        res = draft.res
        volume = res.source_volume
        assert volume is not None  # _ensure checked the spec and pinned a claim's disk
        if self._never_sent(res):
            return await self._create(draft, conn, volume)
        owned = await conn.client.find_owned(volume, res.uid)
        if owned:
            keep = _oldest_usable(owned)
            draft.pin(conn, adopted=False)
            message = f"found EVS snapshot {keep.id} by its owner-uid tag"
            return await self._follow_found(
                draft, conn, keep, owned, (Event("Normal", "Found", message),)
            )
        looked = not self._first_to_hold(res)
        return await self._create(draft, conn, volume, looked=looked)

    async def _create(
        self, draft: _Draft, conn: Connection, volume_id: str, *, looked: bool = False
    ) -> Result:
        """Send the create. ``looked``: a lookup found nothing first, yet a create may have been
        sent before (by a process that crashed before it could record it) and may still not be
        listed: then a snapshot made now is followed by a search for a late second one."""
        res = draft.res
        spec = res.spec
        request = CreateRequest(
            owner=res.owner,
            volume_id=volume_id,
            name=effective_snapshot_name(res.namespace, res.name, spec),
            description=spec.description,
            force=spec.forces_attached_disk(),
            metadata=dict(spec.metadata),
        )
        first = res.uid not in self._sent
        self._sent.add(res.uid)
        self._pending[res.uid] = _Pending(conn, draft.now)
        try:
            snapshot = await conn.client.create(request)
        except ExternalError as exc:
            self._pending.pop(res.uid, None)
            failure = exc.failure
            if failure.cause is Cause.THROTTLED:
                if first:
                    # Refused by the gateway before EVS saw it: still nothing was ever sent, and
                    # the next attempt needs no lookup.
                    self._sent.discard(res.uid)
                raise
            if failure.may_have_happened:
                draft.pin(conn, adopted=False)
                draft.status.unanswered_create_time = draft.now
            if failure.cause is Cause.QUOTA:
                failure = Failure(
                    failure.code,
                    f"disk {volume_id} already has as many snapshots as EVS allows; retried when"
                    f" one of them is deleted ({failure.message})",
                    failure.kind,
                    failure.request_id,
                    failure.cause,
                )
                result = self._failed(draft, failure)
                return _replace(result, parked_on_volume=volume_id)
            if failure.cause is Cause.DISK_IN_USE:
                failure = self._attached(res, volume_id, failure)
            return self._failed(draft, _past_evs_limits(failure, request.name, spec.description))
        self._pending.pop(res.uid, None)
        self._attempts.pop(res.uid, None)
        if looked:
            draft.status.unanswered_create_time = draft.now
        draft.mirror(snapshot)
        draft.pin(conn, adopted=False)
        draft.synced()
        self._ready_from_state(draft, snapshot)
        event = Event(
            "Normal",
            "Created",
            f"EVS accepted snapshot {snapshot.id} ({snapshot.phase}) of {res.describe_source()}",
        )
        return Result(
            Outcome.SUCCESS,
            status=draft.changed(),
            events=(event,),
            requeue_after=self._timing.poll,
            phase=snapshot.phase,
        )

    def _attached(self, res: _Resource, volume_id: str, failure: Failure) -> Failure:
        """A create refused because the disk is attached and was not forced: say which field
        lets it through (the child's schedule template, for a schedule's child), in place of
        EVS's words, which name neither."""
        way = "set spec.force: true"
        if res.schedule is not None:
            way += (
                f" (and spec.snapshotTemplate.spec.force: true in CloudSnapshotSchedule"
                f" {res.schedule} for its next children)"
            )
        message = (
            f"disk {volume_id} is attached to a server (EVS status in-use) and spec.force is"
            f" false, so EVS will not snapshot it; {way} for a crash-consistent snapshot of the"
            f" disk in use, or detach the disk. Retried at once when the spec changes, and every"
            f" {self._timing.blocked:g}s (EVS says: {failure.message})"
        )
        return Failure(DISK_IN_USE, message, Kind.BLOCKED, failure.request_id, failure.cause)

    async def _adopt(self, draft: _Draft, conn: Connection, snapshot_id: str) -> Result:
        """Take over an existing snapshot named by spec.snapshotID, unless another owns it."""
        res = draft.res
        snapshot = await self._observe(res, conn, snapshot_id) or await conn.client.confirm(
            snapshot_id
        )
        if snapshot is None:
            message = (
                f"EVS snapshot {snapshot_id} named by spec.snapshotID does not exist in the"
                f" account of CloudSnapshotClass {conn.class_name}"
            )
            draft.condition(READY, "False", "NotFound", message)
            return self._failed(draft, Failure(SNAPSHOT_NOT_FOUND, message, Kind.BLOCKED))
        refusal = self._foreign_owner(res, snapshot, adopting=True, adopted=False)
        if refusal is not None:
            return self._refused(draft, refusal)
        draft.pin(conn, adopted=snapshot.owner_uid != res.uid)
        how = "its owner-uid tag" if snapshot.owner_uid == res.uid else "spec.snapshotID"
        event = Event("Normal", "Adopted", f"adopted EVS snapshot {snapshot.id} by {how}")
        return await self._follow_found(draft, conn, snapshot, [snapshot], (event,))

    def _foreign_owner(
        self, res: _Resource, snapshot: ExternalSnapshot, *, adopting: bool, adopted: bool
    ) -> str | None:
        """Why this resource may not act on the snapshot, or None when it may.

        ``adopting``: spec.snapshotID asks for it now; ``adopted``: status says it was adopted.
        A snapshot tagged with another live resource is never ours; one tagged with a resource
        that is gone (kept by Retain) may be adopted, by the resource that claims it first.
        """
        tag = snapshot.owner_uid
        if tag is not None and tag != res.uid:
            other = self.claims.resource(tag)
            if other is not None or not (adopting or adopted):
                who = f"CloudSnapshot {other}" if other else f"the CloudSnapshot with UID {tag}"
                return f"EVS snapshot {snapshot.id} belongs to {who} (its owner-uid tag)"
        if adopting or adopted:
            other = self.claims.prior_claimant(snapshot.id, res.uid)
            if other is not None:
                return f"EVS snapshot {snapshot.id} is already claimed by CloudSnapshot {other}"
            return None
        volume = res.source_volume
        if volume not in (None, snapshot.volume_id):
            return f"EVS snapshot {snapshot.id} is of disk {snapshot.volume_id}, not of {volume}"
        return None

    def _refused(self, draft: _Draft, why: str) -> Result:
        """Never mutate what another resource owns: say so and wait for a change."""
        failure = Failure(
            ALREADY_OWNED, f"{why}; this resource will not change or delete it", Kind.BLOCKED
        )
        draft.condition(READY, "False", ALREADY_OWNED, failure.message)
        return self._failed(draft, failure)

    async def _follow(self, draft: _Draft, conn: Connection, snapshot_id: str) -> Result:
        """Look at the known snapshot (batched) and bring status and EVS in line."""
        # While EVS creates it, nothing of ours changes the snapshot: the class's latest look
        # will do, and resources beyond the workers' count need no poll round of their own.
        creating = draft.res.reason(READY) == "Creating"
        snapshot = await self._observe(draft.res, conn, snapshot_id, recent=creating)
        if snapshot is None:
            return await self._absent(draft, conn, snapshot_id)
        owned = [snapshot]
        if draft.res.status.unanswered_create_time is not None and draft.res.volume_id:
            owned = await conn.client.find_owned(draft.res.volume_id, draft.res.uid) or owned
            if all(snap.id != snapshot.id for snap in owned):
                owned = [snapshot, *owned]
        keep = _oldest_usable(owned) if len(owned) > 1 else snapshot
        return await self._follow_found(draft, conn, keep, owned, ())

    async def _follow_found(
        self,
        draft: _Draft,
        conn: Connection,
        snapshot: ExternalSnapshot,
        owned: list[ExternalSnapshot],
        events: tuple[Event, ...],
    ) -> Result:
        res = draft.res
        adopted = bool(draft.status.adopted) or (
            res.spec.snapshot_id == snapshot.id and snapshot.owner_uid != res.uid
        )
        refusal = self._foreign_owner(res, snapshot, adopting=False, adopted=adopted)
        if refusal is not None:
            return self._refused(draft, refusal)
        draft.pin(conn, adopted=adopted)  # resources older than the record get it here
        out = list(events)
        if snapshot.state is State.READY:
            changes = _wanted(res, snapshot)
            if changes:
                try:
                    snapshot = await conn.client.update(snapshot.id, changes)
                except ExternalError as exc:
                    if exc.failure.cause is Cause.NOT_FOUND:
                        return await self._absent(draft, conn, snapshot.id)
                    failure = _past_evs_limits(exc.failure, changes.name, changes.description)
                    raise ExternalError(failure) from None
                out.append(Event("Normal", "Updated", f"updated name/description of {snapshot.id}"))
        deleted, waiting = await self._remove_duplicates(conn, snapshot, owned, out)
        self._attempts.pop(res.uid, None)
        draft.mirror(snapshot)
        draft.synced()
        self._close_doubt(draft, waiting)
        # Ready turning True is the Ready condition's transition (its time and message), not an
        # Event: an Event would cost a write per resource to repeat what the condition says.
        became_ready = self._ready_from_state(draft, snapshot)
        if snapshot.state is State.FAILED and res.reason(READY) != "Error":
            out.append(Event("Warning", "Failed", f"EVS snapshot {snapshot.id} is in error"))
        delay: float | None
        if not snapshot.state.settled:
            delay = self._poll_delay(snapshot, draft.now)
        elif draft.status.unanswered_create_time is not None:
            # Looking for a late second snapshot: a few looks over the window, not one a poll.
            delay = max(self._timing.poll, self._timing.create_doubt / 10)
        else:
            delay = self._timing.jittered(self._timing.resync, self._rng)
        status = draft.changed()
        owed = out or deleted or waiting or adopted or draft.status.unanswered_create_time
        if not owed and snapshot.state is State.READY and res.has_finalizer:
            # As this step leaves the body (its status written): the next step on it, seeing
            # the same snapshot, would find nothing to do.
            left = _body_digest(res.generation, True, res.raw_status if status is None else status)
            self._steady[res.uid] = _Steady(left, conn, hash(snapshot))
            delay = None  # the drift sweep looks at it (``sweep``)
        return Result(
            Outcome.SUCCESS,
            status=status,
            events=tuple(out),
            requeue_after=delay,
            became_ready=became_ready,
            phase=snapshot.phase,
            duplicates_deleted=deleted,
        )

    def _poll_delay(self, snapshot: ExternalSnapshot, now: datetime) -> float:
        """When to look again at a snapshot EVS is still working on: every ``poll``, stretched
        for one that has been creating for long (``Timing.poll_stretch``).

        The look after it falls on a tick of a clock that ticks every ``poll`` for everyone:
        snapshots that are due about together ask together and share one poll round, however
        their earlier looks were spread (a round answers only as many as there are workers at
        once, the rest come a moment later), and a tick nobody is due at costs nothing.
        """
        timing = self._timing
        delay = timing.poll
        if snapshot.state is State.CREATING and snapshot.created_at is not None:
            creating = (now - snapshot.created_at).total_seconds()
            delay = max(delay, min(timing.resync / 5, creating * timing.poll_stretch))
        wall = time.time()
        return math.ceil((wall + delay) / timing.poll) * timing.poll - wall

    async def _remove_duplicates(
        self,
        conn: Connection,
        keep: ExternalSnapshot,
        owned: list[ExternalSnapshot],
        events: list[Event],
    ) -> tuple[int, bool]:
        """Delete the settled extras tagged with this resource; (deleted, some still waiting)."""
        deleted = 0
        waiting = False
        for extra in owned:
            if extra.id == keep.id or extra.state is State.DELETING:
                continue
            if not extra.state.settled:
                waiting = True
                continue
            if await conn.client.delete(extra) is not None:
                deleted += 1
                events.append(
                    Event(
                        "Warning",
                        "DuplicateDeleted",
                        f"deleted EVS snapshot {extra.id}: a second snapshot tagged with this"
                        f" resource (an unanswered create applied late); kept {keep.id}",
                    )
                )
        return deleted, waiting

    def _close_doubt(self, draft: _Draft, waiting: bool) -> None:
        """Stop looking for late creates once the window after the last unanswered one ends."""
        since = draft.status.unanswered_create_time
        if since is None or waiting:
            return
        if draft.now - since >= timedelta(seconds=self._timing.create_doubt):
            draft.status.unanswered_create_time = None

    async def _absent(self, draft: _Draft, conn: Connection, snapshot_id: str) -> Result:
        """The known snapshot was not listed: confirm before believing it (docs/ownership.md).

        A list may lag behind a fresh create, so absence counts only after the first minute of
        the snapshot's life, only when a direct read by ID agrees, and only when it holds in two
        observations at least the grace period apart.
        """
        res = draft.res
        created = res.status.created_at
        young = created is not None and draft.now - created < timedelta(
            seconds=self._timing.absence_grace
        )
        if not young:
            found = await conn.client.confirm(snapshot_id)
            if found is not None:
                return await self._follow_found(draft, conn, found, [found], ())
        first = res.status.missing_since
        if young or first is None:
            if not young:
                draft.status.missing_since = draft.now
            return Result(
                Outcome.SUCCESS,
                status=draft.changed(),
                requeue_after=self._timing.absence_grace if not young else self._timing.poll,
                phase=res.status.phase or "",
            )
        if draft.now - first < timedelta(seconds=self._timing.absence_grace):
            left = self._timing.absence_grace - (draft.now - first).total_seconds()
            return Result(Outcome.SUCCESS, requeue_after=left, phase=res.status.phase or "")
        return self._vanished(draft, snapshot_id)

    def _vanished(self, draft: _Draft, snapshot_id: str) -> Result:
        """The snapshot is confirmed gone from EVS: say so, never make a new one."""
        res = draft.res
        draft.status.phase = None
        message = f"EVS snapshot {snapshot_id} does not exist; it is not re-created"
        draft.condition(READY, "False", "NotFound", message)
        failure = Failure(SNAPSHOT_NOT_FOUND, message, Kind.BLOCKED)
        draft.failed(failure, failure.reason)
        events: tuple[Event, ...] = ()
        if res.reason(READY) != "NotFound":
            events = (Event("Warning", "NotFound", message),)
        return Result(
            Outcome.BLOCKED,
            status=draft.changed(),
            events=events,
            requeue_after=self._timing.jittered(self._timing.resync, self._rng),
            finalizer=False if res.has_finalizer else None,
        )

    def _ready_from_state(self, draft: _Draft, snapshot: ExternalSnapshot) -> bool:
        """Set Ready from the snapshot's state; True when Ready has just turned True."""
        was_ready = _condition_status(draft.res, READY) == "True"
        if snapshot.state is State.READY:
            draft.condition(READY, "True", "Available", f"EVS snapshot {snapshot.id} is available")
            return not was_ready
        if snapshot.state is State.CREATING:
            # No progress percentage here: it would cost a status write per poll.
            message = f"EVS snapshot {snapshot.id} is being created"
            draft.condition(READY, "False", "Creating", message)
        elif snapshot.state is State.FAILED:
            draft.condition(READY, "False", "Error", f"EVS snapshot {snapshot.id} is in error")
        else:
            message = f"EVS snapshot {snapshot.id} is {snapshot.phase}"
            draft.condition(READY, "False", "Pending", message)
        return False

    # -- errors -------------------------------------------------------------------------------

    def _failed(
        self,
        draft: _Draft,
        failure: Failure,
        *,
        events: tuple[Event, ...] = (),
    ) -> Result:
        """Record the failure on the draft and pick when to retry, by its class."""
        res = draft.res
        is_new = draft.failed(failure, failure.reason)
        ready = condition_of(draft.status.conditions, READY)
        keep_ready = ready is not None and ready.reason in _STICKY_READY_REASONS
        if not draft.status.snapshot_id and not keep_ready:
            ready_reason = "Pending" if failure.kind is Kind.TRANSIENT else "Error"
            draft.condition(READY, "False", ready_reason, f"{failure.code}: {failure.message}")
        out = list(events)
        if is_new:
            out.append(Event("Warning", "Failed", failure.describe()))
        return Result(
            Outcome(failure.kind.value),
            status=draft.changed(),
            events=tuple(out),
            requeue_after=self._retry_delay(res.uid, failure.kind),
            phase=draft.status.phase or "",
        )

    async def _observe(
        self, res: _Resource, conn: Connection, snapshot_id: str, *, recent: bool = False
    ) -> ExternalSnapshot | None:
        """The batched look at the snapshot; a transient failure of it is a _PollFailed."""
        try:
            found = await conn.client.observe(snapshot_id, recent=recent)
        except ExternalError as exc:
            if exc.failure.kind is Kind.TRANSIENT:
                raise _PollFailed(exc.failure) from None
            raise
        self._poll_failing.pop(res.uid, None)
        return found

    def _quiet_retry(self, draft: _Draft, exc: ExternalError) -> Result | None:
        """Retry without a status write or an Event when the failure is not this resource's to
        report: a throttled call (the gateway refused it, nothing happened, the rate control
        slows down), or a failed batched look that has not yet persisted for
        ``Timing.poll_failure_grace``. None: report it as usual.

        Such a failure is the class's, not the resource's: a list call that fails answers up to
        a hundred resources at once, and a Failed Event plus two status writes on each of them
        would cost more than the failure and tell nothing a user can act on. The poller logs the
        failed call once and the EVS request metric counts it.
        """
        res = draft.res
        failure = exc.failure
        if isinstance(exc, _PollFailed) and failure.cause is not Cause.THROTTLED:
            since = self._poll_failing.setdefault(res.uid, draft.now)
            if draft.now - since >= timedelta(seconds=self._timing.poll_failure_grace):
                return None
        elif failure.cause is not Cause.THROTTLED:
            return None
        log.debug("%s/%s: %s; retrying quietly", res.namespace, res.name, failure.describe())
        return Result(
            Outcome.TRANSIENT,
            requeue_after=self._retry_delay(res.uid, Kind.TRANSIENT),
            phase=res.status.phase or "",
        )

    def _when_retried(self, failure: Failure) -> Failure:
        """A change EVS refused says when it is sent again: the blocked retry, since what
        blocks it (the snapshot in use, its status changing) passes without a word to us."""
        if failure.cause is not Cause.REFUSED:
            return failure
        note = f"retried every {self._timing.blocked:g}s"
        return dataclasses.replace(failure, message=f"{failure.message}; {note}")

    def _retry_delay(self, uid: str, kind: Kind) -> float | None:
        if kind is Kind.TRANSIENT:
            attempt = self._attempts.get(uid, 0)
            self._attempts[uid] = attempt + 1
            return self._timing.backoff.delay(attempt, self._rng)
        self._attempts.pop(uid, None)
        if kind is Kind.BLOCKED:
            return self._timing.jittered(self._timing.blocked, self._rng)
        return None

    def _deadline_passed(self, res: _Resource) -> Result:
        """The step ran past its deadline (a stuck call): record it; a cut create is in doubt."""
        draft = _Draft(res, self._clock())
        pending = self._pending.pop(res.uid, None)
        if pending is not None:
            draft.pin(pending.conn, adopted=False)
            draft.status.unanswered_create_time = pending.sent
        message = f"a reconcile step took longer than {self._timing.step_deadline:g}s; retrying"
        return self._failed(draft, Failure(STEP_DEADLINE, message, Kind.TRANSIENT))

    # -- deletion -----------------------------------------------------------------------------

    async def _finalize(self, res: _Resource) -> Result:
        draft = _Draft(res, self._clock())
        status = res.status
        policy = effective_deletion_policy(res.spec, status, None)
        refused = res.status.error is not None and res.status.error.code == ALREADY_OWNED
        if refused or (policy == "Retain" and not status.unanswered_create_time):
            return self._release_retained(res, refused=refused)
        if not status.snapshot_id and not status.adopted and self._never_sent(res):
            return self._released(res, Event("Normal", "Deleted", "no EVS snapshot to delete"))
        try:
            conn = await self._connect(res)
        except LocalFailure as exc:
            return self._failed(draft, _way_out(exc.failure, policy))
        policy = policy or effective_deletion_policy(res.spec, status, conn.class_spec)
        if policy == "Delete" and status.adopted and conn.class_spec.adoption != "Delete":
            message = (
                f"CloudSnapshotClass {conn.class_name} never deletes an adopted snapshot (its"
                f" spec.adoption is {conn.class_spec.adoption}): EVS snapshot"
                f" {status.snapshot_id} kept"
            )
            return self._released(res, Event("Normal", "Retained", message))
        try:
            return await self._delete_owned(draft, conn, policy or "Delete")
        except ExternalError as exc:
            quiet = self._quiet_retry(draft, exc)
            if quiet is not None:
                return quiet
            failure = _refused_deletion(self._when_retried(exc.failure))
            draft.condition(READY, "False", "Deleting", f"{failure.code}: {failure.message}")
            return self._failed(draft, failure)

    async def _delete_owned(
        self, draft: _Draft, conn: Connection, policy: DeletionPolicy
    ) -> Result:
        """Delete this resource's snapshot (and any tagged extras); release once all are gone."""
        res = draft.res
        status = res.status
        known = status.snapshot_id
        volume = res.volume_id
        candidates: list[ExternalSnapshot] = []
        if known:
            found = await self._observe(res, conn, known)
            if found is None and res.uid not in self._deleting:
                # Not listed, and not after we saw it deleting: a list may lag; ask directly.
                found = await conn.client.confirm(known)
            if found is not None:
                adopted = bool(status.adopted)
                refusal = self._foreign_owner(res, found, adopting=False, adopted=adopted)
                if refusal is not None:
                    return self._release_retained(res, refused=True)
                candidates.append(found)
        if volume and not status.adopted and (not known or status.unanswered_create_time):
            for snap in await conn.client.find_owned(volume, res.uid):
                if all(snap.id != other.id for other in candidates):
                    candidates.append(snap)
        if policy == "Retain":
            keep = _oldest_usable(candidates) if candidates else None
            candidates = [snap for snap in candidates if keep is None or snap.id != keep.id]
        doubt_left = self._doubt_left(draft)
        if not candidates and doubt_left <= 0:
            if policy == "Retain":
                return self._release_retained(res, refused=False)
            message = f"EVS snapshot {known} is gone" if known else "no EVS snapshot to delete"
            return _replace(
                self._released(res, Event("Normal", "Deleted", message)), freed_volume=volume
            )
        messages: list[str] = []
        events: list[Event] = []
        now_known: ExternalSnapshot | None = None
        for snap in candidates:
            message, after = await self._delete_one(res, conn, snap, events)
            messages.append(message)
            if snap.id == known:
                now_known = after
        if doubt_left > 0:
            messages.append(
                f"waiting {doubt_left:.0f}s for an unanswered create request that EVS may still"
                " apply"
            )
        message = "; ".join(messages)
        if now_known is not None:
            # The phase only: EVS moves updated_at as it deletes, and following it would cost a
            # status write per move while nothing a user acts on changed.
            draft.status.phase = now_known.phase
            draft.status.missing_since = None
        self._attempts.pop(res.uid, None)
        draft.synced()
        # Deleting is the Ready condition (its message says what the deletion waits for); the
        # Deleted Event that ends it outlives the resource.
        draft.condition(READY, "False", "Deleting", message)
        delay = self._timing.poll if candidates else max(self._timing.poll, doubt_left)
        return Result(
            Outcome.SUCCESS,
            status=draft.changed(),
            events=tuple(events),
            requeue_after=delay,
            phase=draft.status.phase or "",
        )

    async def _delete_one(
        self, res: _Resource, conn: Connection, snapshot: ExternalSnapshot, events: list[Event]
    ) -> tuple[str, ExternalSnapshot | None]:
        """One snapshot's deletion step: what it is waiting for, and the snapshot as it now is."""
        if snapshot.state.settled:
            deleting = await conn.client.delete(snapshot)
            if deleting is None:
                return f"EVS snapshot {snapshot.id} is gone", None
            self._deleting.add(res.uid)
            return _being_deleted(snapshot.id), deleting
        if snapshot.state is State.DELETE_FAILED:
            message = (
                f"EVS failed to delete snapshot {snapshot.id} ({snapshot.phase});"
                " this needs a Huawei Cloud support case"
            )
            ready = res.condition(READY)
            if ready is None or message not in ready.message:  # announced once, not every poll
                events.append(Event("Warning", DELETE_FAILED, message))
            return message, snapshot
        if snapshot.state is State.DELETING:
            self._deleting.add(res.uid)
            return _being_deleted(snapshot.id), snapshot
        return f"waiting for EVS snapshot {snapshot.id} to leave {snapshot.phase}", snapshot

    def _doubt_left(self, draft: _Draft) -> float:
        since = draft.status.unanswered_create_time
        if since is None:
            return 0.0
        return self._timing.create_doubt - (draft.now - since).total_seconds()

    def _release_retained(self, res: _Resource, *, refused: bool) -> Result:
        known = res.status.snapshot_id
        if refused:
            message = "the EVS snapshot belongs to another resource: left untouched"
        else:
            what = f"EVS snapshot {known}" if known else "no EVS snapshot"
            message = f"deletionPolicy Retain: {what} kept"
        return self._released(res, Event("Normal", "Retained", message))

    def _released(self, res: _Resource, event: Event) -> Result:
        self._attempts.pop(res.uid, None)
        return Result(Outcome.SUCCESS, events=(event,), finalizer=False)


def _resource(
    body: Mapping[str, Any],
    *,
    spec: CloudSnapshotSpec,
    status: CloudSnapshotStatus,
    has_finalizer: bool,
) -> _Resource:
    meta = body.get("metadata", {})
    labels = meta.get("labels") or {}
    return _Resource(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=sys.intern(str(meta.get("uid", ""))),  # one copy across the structures keyed by it
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=status,
        raw_status=dict(body.get("status") or {}),
        deleting=bool(meta.get("deletionTimestamp")),
        has_finalizer=has_finalizer,
        schedule=labels.get(SCHEDULE_LABEL) if SCHEDULE_UID_LABEL in labels else None,
    )


def _body_digest(generation: object, finalized: bool, status: object) -> int:
    """What a step reads of a live body, digested: the spec is the generation's (the API server
    bumps it on every spec change), the rest is the finalizer and the status."""
    return hash((generation, finalized, json.dumps(status, sort_keys=True, separators=(",", ":"))))


def _being_deleted(snapshot_id: str) -> str:
    """One message from the DELETE until EVS's 404, so waiting for EVS costs no status write."""
    return f"EVS is deleting snapshot {snapshot_id}"


def _replace(result: Result, **changes: Any) -> Result:
    return Result(**{**result.__dict__, **changes})


def _where(account: AccountRef) -> tuple[str, str, str]:
    return (account.region, account.project_id, account.endpoint)


def _way_out(failure: Failure, policy: DeletionPolicy | None) -> Failure:
    """A deletion blocked on the class: say how to get the resource released."""
    if failure.code not in (CLASS_NOT_FOUND, ACCOUNT_CHANGED):
        return failure
    hint = (
        "recreate the class (or restore its account) so the snapshot can be deleted, or set"
        " spec.deletionPolicy: Retain to keep the EVS snapshot and release this resource"
    )
    if policy is None:
        hint = f"{hint} (no deletion policy was recorded, and only the class could say)"
    return Failure(failure.code, f"{failure.message}; {hint}", failure.kind)


def _refused_deletion(failure: Failure) -> Failure:
    """A delete EVS refused, for now or for good: say how to release the resource meanwhile."""
    if failure.cause is not Cause.REFUSED and failure.kind is not Kind.INVALID:
        return failure
    hint = "or set spec.deletionPolicy: Retain to keep the EVS snapshot and release this resource"
    return dataclasses.replace(failure, message=f"{failure.message}; {hint}")


def _past_evs_limits(failure: Failure, name: str | None, description: str | None) -> Failure:
    """An invalid answer to a create or rename whose name or description is longer than Huawei's
    current pages allow: name the field and the limit, since EVS's words may name neither.

    Nothing in the operator shortens a user's text: the CRD takes the 255 bytes older pages
    and the SDK allow, and an EVS that takes them is left to do so.
    """
    if failure.kind is not Kind.INVALID:
        return failure
    over = [
        f"spec.{field} has {len(text)} characters, and Huawei's current EVS API takes at most"
        f" {limit}"
        for field, text, limit in (
            ("name", name, EVS_NAME_MAX_CHARS),
            ("description", description, EVS_DESCRIPTION_MAX_CHARS),
        )
        if text is not None and len(text) > limit
    ]
    if not over:
        return failure
    message = (
        f"{'; '.join(over)}: shorten it; the operator waits for that change of the spec"
        f" (EVS says: {failure.message})"
    )
    return dataclasses.replace(failure, message=message)


def _oldest_usable(snapshots: list[ExternalSnapshot]) -> ExternalSnapshot:
    """The one snapshot to keep among several of one owner: the oldest usable, else the oldest."""
    ordered = sorted(snapshots, key=lambda snap: (snap.created_at, snap.id))
    return next((snap for snap in ordered if snap.state.usable), ordered[0])


def _wanted(res: _Resource, snapshot: ExternalSnapshot) -> Changes:
    """Fields to change. A snapshot we made follows the spec fully; an adopted one only in the
    fields the spec sets, so adopting never renames or wipes a snapshot unasked."""
    spec = res.spec
    ours = snapshot.owner_uid == res.uid
    wanted_name = effective_snapshot_name(res.namespace, res.name, spec) if ours else spec.name
    name = wanted_name if wanted_name is not None and wanted_name != snapshot.name else None
    description = None
    if (ours or spec.description is not None) and (spec.description or "") != (
        snapshot.description or ""
    ):
        description = spec.description or ""
    return Changes(name=name, description=description)


def _traceless(status: CloudSnapshotStatus) -> bool:
    """Status records no create: no snapshot ID, no pinned account, no unanswered create."""
    return not (status.snapshot_id or status.account or status.unanswered_create_time)


def _vanished_before(res: _Resource) -> bool:
    """The resource's snapshot was found gone earlier: observing it again needs no finalizer."""
    return bool(res.status.snapshot_id) and res.reason(READY) == "NotFound"


def _condition_status(res: _Resource, kind: str) -> str | None:
    cond = res.condition(kind)
    return cond.status if cond else None
