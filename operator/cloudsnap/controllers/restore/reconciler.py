"""One step of a CloudSnapshotRestore (docs/restore.md): resolve the snapshot, make exactly one
disk for the restore, expose it through a PersistentVolume and claim, and on deletion keep or
delete what the restore made.

A step makes at most one create per restore, looks for disks tagged with the restore's UID
before it, and sends the create with a token derived from the UID, so a create repeated after a
lost answer or a restart is the same request to EVS. The caller persists a step's status before
the next step of that restore.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic

from cloudsnap.api.constants import READY, SYNCED
from cloudsnap.api.models import Condition, ConditionStatus, invalid_fields, set_condition
from cloudsnap.api.objects import Owner, condition_in
from cloudsnap.api.progress import restore_progress, with_progress
from cloudsnap.api.restore import (
    CloudSnapshotRestoreSpec,
    CloudSnapshotRestoreStatus,
    NewVolume,
    RestoreClaim,
)
from cloudsnap.controllers.restore.decisions import (
    CLAIM_EXISTS,
    CLAIM_LOST,
    DISK_NOT_FOUND,
    SNAPSHOT_EXISTS,
    VOLUME_EXISTS,
    VOLUME_LOST,
    InputError,
    claim_body,
    client_token,
    disk_request,
    foreign,
    lost,
    made_by,
    persistent_volume,
    rollback_target,
    safety_snapshot,
    safety_snapshot_name,
    tracked_source,
    usable,
    volume_name,
)
from cloudsnap.controllers.restore.external import (
    Disk,
    DiskConnection,
    DiskConnector,
    DiskState,
    SourceSnapshot,
)
from cloudsnap.controllers.restore.store import RestoreStore
from cloudsnap.controllers.restore.tenancy import (
    check_rollback_target,
    check_snapshot_by_id,
    snapshot_ids_allowed,
)
from cloudsnap.controllers.restore.users import DiskUser, disk_users
from cloudsnap.controllers.tenancy import DiskVolumes, NamespaceReader, admit
from cloudsnap.runtime.backoff import Timing
from cloudsnap.runtime.failures import (
    INVALID_SPEC,
    ExternalError,
    Failure,
    Kind,
    LocalFailure,
)
from cloudsnap.runtime.writes import Event

ERROR_REFRESH = timedelta(minutes=1)


@dataclass
class Result:
    """What a step asks the controller to persist, in order: the finalizer, the status, the
    Events, the finalizer's removal; and when to step again (None: on the next change)."""

    status: CloudSnapshotRestoreStatus
    add_finalizer: bool = False
    remove_finalizer: bool = False
    events: list[Event] = field(default_factory=list)
    requeue: float | None = None


@dataclass
class _Step:
    """One step's working state: the restore, its status being written, and the Events."""

    owner: Owner
    spec: CloudSnapshotRestoreSpec
    status: CloudSnapshotRestoreStatus
    previous: list[Condition]
    now: datetime
    generation: int | None
    has_finalizer: bool
    events: list[Event] = field(default_factory=list)

    def condition(self, kind: str, value: ConditionStatus, reason: str, message: str) -> None:
        old = next((c for c in self.previous if c.type == kind), None)
        self.status.conditions = set_condition(
            self.status.conditions,
            old,
            kind,
            value,
            reason,
            message,
            now=self.now,
            generation=self.generation,
        )


class Reconciler:
    """Steps restores through a DiskConnector (the cloud) and a RestoreStore (Kubernetes);
    namespaces' labels and disks' PersistentVolumes decide what a restore may use."""

    def __init__(
        self,
        connector: DiskConnector,
        store: RestoreStore,
        *,
        finalizer: str,
        namespaces: NamespaceReader,
        volumes: DiskVolumes,
        timing: Timing | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._connector = connector
        self._store = store
        self._finalizer = finalizer
        self._namespaces = namespaces
        self._volumes = volumes
        self._timing = timing or Timing()
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._attempts: dict[str, int] = {}
        """Transient failures in a row, per restore UID, for the backoff."""

    def forget(self, uid: str) -> None:
        """Drop what is kept about a restore that is gone."""
        self._attempts.pop(uid, None)

    async def reconcile(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> Result:
        """One step of the restore ``body`` whose latest status is ``status``."""
        meta = body.get("metadata") or {}
        owner = Owner(str(meta.get("uid", "")), str(meta["namespace"]), str(meta["name"]))
        current = CloudSnapshotRestoreStatus.model_validate(status)
        step = _Step(
            owner=owner,
            spec=CloudSnapshotRestoreSpec.model_construct(new_volume=NewVolume()),  # until parsed
            status=current.model_copy(deep=True),
            previous=list(current.conditions),
            now=self._clock(),
            generation=meta.get("generation"),
            has_finalizer=self._finalizer in (meta.get("finalizers") or ()),
        )
        try:
            step.spec = CloudSnapshotRestoreSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as exc:
            failure = Failure(INVALID_SPEC, f"spec: {invalid_fields(exc)}", Kind.INVALID)
            return self._failed(step, failure)
        try:
            if meta.get("deletionTimestamp"):
                result = await self._delete(step)
            else:
                result = await self._advance(step)
        except (ExternalError, LocalFailure, InputError) as exc:
            return self._failed(step, exc.failure)
        self._attempts.pop(owner.uid, None)
        step.status.error = None
        step.condition(SYNCED, "True", "ReconcileSuccess", "the last step succeeded")
        return self._finish(step, result)

    # -- create and expose ----------------------------------------------------------------------

    async def _advance(self, step: _Step) -> Result:
        if step.spec.rollback is not None:
            return await self._rollback(step)
        status = step.status
        if status.volume_id is None:
            found = await self._make_disk(step)
            if found is not None:
                return found
        assert status.volume_id is not None
        connection = await self._connect(step, None)
        disk = await connection.client.disk(status.volume_id)
        if disk is None:
            return self._lost(step, *lost(DISK_NOT_FOUND, f"disk {status.volume_id}", None))
        if disk.state is DiskState.FAILED:
            return self._broken(step, f"EVS disk {disk.id} is {disk.phase}")
        if disk.state is not DiskState.READY:
            return self._waiting(step, "Creating", f"EVS disk {disk.id} is {disk.phase}")
        return await self._expose(step, disk)

    async def _make_disk(self, step: _Step) -> Result | None:
        """Find, or make, the restore's disk; a Result while there is none to go on with."""
        status = step.status
        snapshot_id, class_name = await self._source(step)
        connection = await self._connect(step, class_name)
        client = connection.client
        entitled = (
            await self._entitled(step, connection, snapshot_id) if not status.job_id else None
        )
        if not step.has_finalizer:
            status.phase = "Pending"
            return Result(status, add_finalizer=True, requeue=0.0)
        if status.job_id is not None:
            job = await client.job(status.job_id)
            if job.failure is not None:
                return self._broken(step, f"EVS could not make the disk: {job.failure.describe()}")
            if not job.done or job.volume_id is None:
                return self._waiting(step, "Creating", f"EVS job {job.id} is making the disk")
            status.volume_id = job.volume_id
            step.events.append(Event("Normal", "Created", f"EVS made disk {job.volume_id}"))
            return None
        owned = sorted(await client.find_owned(step.owner.uid), key=lambda disk: disk.id)
        if owned:
            status.volume_id = owned[0].id
            return None
        await self._claim_is_free(step)
        snapshot = entitled or await client.snapshot(snapshot_id)
        target = step.spec.new_volume or NewVolume()
        source_disk = None
        if snapshot is not None and not (target.availability_zone and target.volume_type):
            source_disk = await client.disk(snapshot.volume_id)
        request = disk_request(step.owner, target, snapshot, source_disk)
        # Recorded before the create, so that a create left unanswered is known to deletion; a
        # refusal made nothing, and leaves it as it was.
        first_sent = status.create_requested_at
        status.create_requested_at = first_sent or step.now
        try:
            status.job_id = await client.create(request, client_token(step.owner.uid))
        except ExternalError as exc:
            if not exc.failure.may_have_happened:
                status.create_requested_at = first_sent
            raise
        step.events.append(
            Event("Normal", "Creating", f"making a disk from EVS snapshot {snapshot_id}")
        )
        return self._waiting(step, "Creating", f"EVS job {status.job_id} is making the disk")

    async def _source(self, step: _Step) -> tuple[str, str | None]:
        """The EVS snapshot to restore and the class it lives in (None: the default class)."""
        spec = step.spec
        if spec.snapshot_id is not None:
            step.status.snapshot_id = spec.snapshot_id
            return spec.snapshot_id, spec.class_name
        name = str(spec.snapshot_name)
        body = await self._store.read_snapshot(step.owner.namespace, name)
        snapshot_id, class_name = tracked_source(step.owner.namespace, name, body)
        step.status.snapshot_id = snapshot_id
        return snapshot_id, class_name

    async def _entitled(
        self, step: _Step, connection: DiskConnection, snapshot_id: str
    ) -> SourceSnapshot | None:
        """Raise ClassNotAllowed or SourceNotAllowed (blocked) unless the class admits the
        restore's namespace and lets it read its source (docs/security.md); the snapshot, when
        deciding needed reading it by ID. The namespace rule costs no EVS call."""
        namespace, rules = step.owner.namespace, connection.class_spec
        await admit(self._namespaces, connection.class_name, rules, namespace)
        if step.spec.snapshot_id is None or snapshot_ids_allowed(connection.class_name, rules):
            return None
        snapshot = await connection.client.snapshot(snapshot_id)
        if snapshot is not None:
            await check_snapshot_by_id(self._volumes, connection.class_name, namespace, snapshot)
        return snapshot

    async def _connect(self, step: _Step, class_name: str | None) -> DiskConnection:
        """The account the disk lives in: the one recorded with the first create, else the
        source's class (recorded now)."""
        account = step.status.account
        connection = await self._connector.connect(
            account.class_name if account is not None else class_name
        )
        if account is None:
            step.status.account = connection.account
        return connection

    async def _expose(self, step: _Step, disk: Disk) -> Result:
        """The PersistentVolume and claim of the disk, when the spec asks for them."""
        claim = _claim_of(step)
        if claim is None:
            return self._ready(step, f"EVS disk {disk.id} is {disk.phase}")
        owner, store = step.owner, self._store
        found = await self._claim_is_free(step)
        name = volume_name(owner.uid)
        volume = await store.read_volume(name)
        if volume is None and step.status.persistent_volume_name is not None:
            return self._lost(step, *lost(VOLUME_LOST, f"PersistentVolume {name}", disk.id))
        if found is None and step.status.claim_name is not None:
            what = f"PersistentVolumeClaim {owner.namespace}/{claim.name}"
            return self._lost(step, *lost(CLAIM_LOST, what, disk.id))
        if volume is None:
            volume = await store.create_volume(persistent_volume(owner, disk, claim))
        if not made_by(volume, owner.uid):
            raise foreign(VOLUME_EXISTS, f"PersistentVolume {name}")
        step.status.persistent_volume_name = name
        if found is None:
            found = await store.create_claim(owner.namespace, claim_body(owner, disk, claim))
            if not made_by(found, owner.uid):
                raise foreign(CLAIM_EXISTS, f"PersistentVolumeClaim {owner.namespace}/{claim.name}")
            step.events.append(
                Event("Normal", "ClaimCreated", f"claim {claim.name} made for disk {disk.id}")
            )
        step.status.claim_name = claim.name
        phase = (found.get("status") or {}).get("phase")
        if phase != "Bound":
            return self._waiting(
                step, "Binding", f"claim {claim.name} is {phase or 'Pending'}; binding to {name}"
            )
        return self._ready(step, f"claim {claim.name} is bound to disk {disk.id}")

    async def _claim_is_free(self, step: _Step) -> dict[str, Any] | None:
        """The claim of spec.newVolume.claim if this restore made it; InputError when one of
        that name exists that it did not make (checked before the create too, so such a restore
        makes nothing)."""
        claim = _claim_of(step)
        if claim is None:
            return None
        owner = step.owner
        found = await self._store.read_claim(owner.namespace, claim.name)
        if found is not None and not made_by(found, owner.uid):
            raise foreign(CLAIM_EXISTS, f"PersistentVolumeClaim {owner.namespace}/{claim.name}")
        return found

    # -- rollback -------------------------------------------------------------------------------

    async def _rollback(self, step: _Step) -> Result:
        """Roll the snapshot back onto its own disk, once, after a safety snapshot of it."""
        status = step.status
        snapshot_id, class_name = await self._source(step)
        connection = await self._connect(step, class_name)
        client = connection.client
        sent = status.rolled_back_at is not None
        entitled = None if sent else await self._entitled(step, connection, snapshot_id)
        snapshot = usable(entitled or await client.snapshot(snapshot_id))
        if not sent:
            await check_rollback_target(
                self._volumes, connection.class_name, step.owner.namespace, snapshot.volume_id
            )
        status.volume_id = snapshot.volume_id
        disk = await client.disk(snapshot.volume_id)
        if status.rolled_back_at is None and status.rollback_requested_at is not None:
            unconfirmed = self._rollback_in_doubt(step, disk)
            if unconfirmed is not None:
                return unconfirmed
        if status.rolled_back_at is not None:
            if disk is not None and disk.phase == "available":
                return self._ready(step, f"disk {disk.id} holds snapshot {snapshot_id}'s data")
            if disk is not None and disk.state is DiskState.FAILED:
                return self._broken(step, f"EVS disk {disk.id} is {disk.phase}")
            phase = disk.phase if disk is not None else "gone"
            return self._waiting(step, "RollingBack", f"EVS disk {snapshot.volume_id} is {phase}")
        users: list[DiskUser] = []
        if disk is not None and disk.phase != "available":
            users = await disk_users(
                self._volumes, self._store, disk.id
            )  # named in the DiskInUse message
        disk = rollback_target(disk, snapshot, users)
        assert step.spec.rollback is not None
        if step.spec.rollback.safety_snapshot:
            waiting = await self._safety_snapshot(step, disk)
            if waiting is not None:
                return waiting
        # Recorded before the rollback, so that one whose answer is lost is not sent again
        # while it may have taken effect; a refusal, or a call that never left, did nothing.
        status.rollback_requested_at = step.now
        status.rollback_disk_updated_at = disk.updated_at
        try:
            await client.rollback(snapshot_id, disk.id)
        except ExternalError as exc:
            if not exc.failure.may_have_happened:
                status.rollback_requested_at = status.rollback_disk_updated_at = None
            raise
        status.rolled_back_at = step.now
        status.rollback_requested_at = status.rollback_disk_updated_at = None
        message = f"rolling disk {disk.id} back to EVS snapshot {snapshot_id}"
        step.events.append(Event("Normal", "RollingBack", message))
        return self._waiting(step, "RollingBack", message)

    async def _safety_snapshot(self, step: _Step, disk: Disk) -> Result | None:
        """The safety CloudSnapshot of the disk, made if missing; a Result until it is Ready."""
        owner, status = step.owner, step.status
        name = safety_snapshot_name(owner.name)
        found = await self._store.read_snapshot(owner.namespace, name)
        if found is None:
            assert status.account is not None
            body = safety_snapshot(owner, disk.id, status.account.class_name)
            found = await self._store.create_snapshot(owner.namespace, body)
            step.events.append(Event("Normal", "SafetySnapshot", f"CloudSnapshot {name} made"))
        if not made_by(found, owner.uid):
            raise foreign(SNAPSHOT_EXISTS, f"CloudSnapshot {owner.namespace}/{name}")
        status.safety_snapshot_name = name
        if condition_in(found, READY).get("status") == "True":
            return None
        error = (found.get("status") or {}).get("error")
        if error:
            raise InputError(
                Failure(
                    str(error.get("code")),
                    f"safety snapshot {name} cannot be made, so the rollback waits:"
                    f" {error.get('message')}",
                    Kind.BLOCKED,
                )
            )
        return self._waiting(step, "SafetySnapshot", f"waiting for safety snapshot {name}")

    # -- delete ---------------------------------------------------------------------------------

    async def _delete(self, step: _Step) -> Result:
        """Keep (Retain) or delete (Delete) what the restore made, then let it go."""
        status = step.status
        if not step.has_finalizer:
            return Result(status)
        status.phase = "Deleting"
        rollback = step.spec.rollback is not None  # made nothing of its own to delete
        if rollback or step.spec.deletion_policy == "Retain" or status.account is None:
            if status.volume_id is not None:
                message = f"disk {status.volume_id} kept (deletionPolicy Retain)"
                step.events.append(Event("Normal", "Retained", message))
            return Result(status, remove_finalizer=True)
        await self._delete_claim(step)
        client = (await self._connect(step, None)).client
        if status.job_id is not None and status.volume_id is None:
            job = await client.job(status.job_id)
            if job.failure is None and not job.done:
                return self._waiting(step, "Deleting", f"EVS job {job.id} still makes the disk")
            status.volume_id = job.volume_id
        ids = {disk.id for disk in await client.find_owned(step.owner.uid)}
        ids.update([status.volume_id] if status.volume_id else [])
        doubt = self._create_in_doubt(step)
        if not ids and doubt is not None:
            return self._waiting(step, "Deleting", doubt)
        remaining = []
        for volume_id in sorted(ids):
            disk = await client.disk(volume_id)
            if disk is None:
                continue
            remaining.append(volume_id)
            if disk.state is not DiskState.DELETING and await client.delete(volume_id):
                step.events.append(Event("Normal", "Deleting", f"deleting disk {volume_id}"))
        if remaining:
            return self._waiting(step, "Deleting", f"deleting disk {', '.join(remaining)}")
        step.events.append(Event("Normal", "Deleted", "the restore's disk is deleted"))
        return Result(status, remove_finalizer=True)

    def _rollback_in_doubt(self, step: _Step, disk: Disk | None) -> Result | None:
        """After a rollback whose answer was lost: taken as sent once the disk shows it (busy,
        or changed since); a Result while EVS may still apply it; None, to send it again, once
        the disk stayed unchanged for create_doubt (nothing was rolled back, nothing written)."""
        status = step.status
        sent = status.rollback_requested_at
        assert sent is not None
        if (
            disk is None
            or disk.phase != "available"
            or disk.updated_at != (status.rollback_disk_updated_at)
        ):
            status.rolled_back_at = sent
            status.rollback_requested_at = status.rollback_disk_updated_at = None
            return None
        if step.now - sent < timedelta(seconds=self._timing.create_doubt):
            message = (
                f"the rollback of disk {disk.id} sent at {sent.isoformat()} was not answered and"
                " the disk has not changed since; it is sent again only if the disk stays"
                f" unchanged {self._timing.create_doubt:g} s after it, as EVS may still apply it"
            )
            return self._waiting(step, "RollingBack", message)
        status.rollback_requested_at = status.rollback_disk_updated_at = None
        return None

    def _create_in_doubt(self, step: _Step) -> str | None:
        """Why deletion waits for a disk not found yet: a create went unanswered (no job
        recorded) less than create_doubt ago, and EVS may still apply it."""
        status = step.status
        sent = status.create_requested_at
        if status.job_id is not None or status.volume_id is not None or sent is None:
            return None
        if step.now - sent >= timedelta(seconds=self._timing.create_doubt):
            return None
        return (
            f"the disk create sent at {sent.isoformat()} was not answered; EVS may still make the"
            f" disk until {self._timing.create_doubt:g} s after it, so deletion waits to delete it"
        )

    async def _delete_claim(self, step: _Step) -> None:
        """Delete the claim and the PersistentVolume this restore made (label checked)."""
        claim = _claim_of(step)
        owner = step.owner
        if claim is not None:
            found = await self._store.read_claim(owner.namespace, claim.name)
            if found is not None and made_by(found, owner.uid):
                uid = str(found["metadata"]["uid"])
                await self._store.delete_claim(owner.namespace, claim.name, uid)
        volume = await self._store.read_volume(volume_name(owner.uid))
        if volume is not None and made_by(volume, owner.uid):
            await self._store.delete_volume(volume_name(owner.uid), str(volume["metadata"]["uid"]))

    # -- outcomes -------------------------------------------------------------------------------

    def _waiting(self, step: _Step, phase: str, message: str) -> Result:
        step.status.phase = phase  # type: ignore[assignment]
        step.condition(READY, "False", phase, message)
        return Result(step.status, requeue=self._timing.poll)

    def _ready(self, step: _Step, message: str) -> Result:
        """Ready; a new disk is looked at again about every resync period (``_resync``)."""
        step.status.phase = "Ready"
        step.condition(READY, "True", "Available", message)
        return Result(step.status, requeue=self._resync(step))

    def _resync(self, step: _Step) -> float | None:
        """When to look at a Ready restore again: a new disk (and its volume and claim) may be
        deleted behind its back, which only a look notices; each look reads one disk, one
        volume and one claim, and writes nothing while all is as it was. Spread over half to
        one and a half resync periods, so restores that became Ready together (or were all
        stepped at a start) do not stay in step. A rollback owns nothing to watch: None."""
        if step.spec.rollback is not None:
            return None
        return self._timing.resync * self._rng.uniform(0.5, 1.5)

    def _lost(self, step: _Step, reason: str, message: str) -> Result:
        """Failed: what the restore made was deleted behind its back, and is not made again.
        A Warning Event when it is first seen, not at every later step."""
        old = next((c for c in step.previous if c.type == READY), None)
        step.status.phase = "Failed"
        step.condition(READY, "False", reason, message)
        if old is None or old.reason != reason:
            step.events.append(Event("Warning", reason, message))
        return Result(step.status)

    def _broken(self, step: _Step, message: str) -> Result:
        step.status.phase = "Failed"
        step.condition(READY, "False", "Error", message)
        step.events.append(Event("Warning", "Failed", message))
        return Result(step.status)

    def _failed(self, step: _Step, failure: Failure) -> Result:
        """Record the failure in status.error and Synced; retry as its class says."""
        status = step.status
        old = status.error
        new = failure.status_error(step.now)
        repeated = old is not None and (old.code, old.message) == (new.code, new.message)
        if old is not None and repeated:
            new.first_seen = old.first_seen
            if step.now - old.time < ERROR_REFRESH:
                new.time = old.time
        status.error = new
        step.condition(SYNCED, "False", failure.reason, failure.describe())
        if status.phase is None:
            status.phase = "Pending"
        if not status.conditions or all(c.type != READY for c in status.conditions):
            step.condition(READY, "False", "Pending", "the restore has not started")
        result = Result(status)
        if not repeated:
            result.events.append(Event("Warning", "Failed", failure.describe()))
        if failure.kind is Kind.TRANSIENT:
            attempt = self._attempts.get(step.owner.uid, 0)
            self._attempts[step.owner.uid] = attempt + 1
            result.requeue = self._timing.backoff.delay(attempt, self._rng)
        elif failure.kind is Kind.BLOCKED:
            result.requeue = self._timing.jittered(self._timing.blocked, self._rng)
        return self._finish(step, result)

    def _finish(self, step: _Step, result: Result) -> Result:
        status = result.status
        status.observed_generation = step.generation
        status.conditions = with_progress(
            status.conditions, restore_progress(status), step.now, step.generation
        )
        result.events = step.events + result.events
        return result


def _claim_of(step: _Step) -> RestoreClaim | None:
    """The claim a newVolume target asks for, if any."""
    target = step.spec.new_volume
    return target.claim if target is not None else None
