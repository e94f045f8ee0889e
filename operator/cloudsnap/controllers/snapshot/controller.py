"""The CloudSnapshot controller: keeps each resource's latest body from the watch, runs reconcile
steps on its work queue, and persists their results (status, finalizer, Events), fenced.

The finalizer is ours (not kopf's, which kopf would strip when no kopf handler needs it) and
present only while a cloud snapshot may exist. Status goes through the status subresource.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cloudsnap import metrics
from cloudsnap.api.constants import GROUP, SCHEDULE_LABEL, SCHEDULE_UID_LABEL
from cloudsnap.api.objects import object_key, uid_of, version_of
from cloudsnap.controllers.snapshot.reconciler import Outcome, Reconciler, Result
from cloudsnap.controllers.snapshot.volumes import claim_to_resolve
from cloudsnap.runtime.controller import NOT_LEADING_RETRY_SECONDS, QueuedController
from cloudsnap.runtime.failures import ALREADY_OWNED
from cloudsnap.runtime.writes import Conflict, FencedWriter, NotLeading, Writer
from cloudsnap.utc import parse_time

FINALIZER = f"{GROUP}/snapshot-protection"
# A 409 on the finalizer patch means our copy is behind the watch; it catches up within moments.
CONFLICT_RETRY_SECONDS = 0.5
# The metadata a step, a finalizer write or an Event's object reference reads; nothing else is kept.
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
)
# The labels a step reads: a schedule's child names its schedule in what it tells the user.
_KEPT_LABELS = (SCHEDULE_LABEL, SCHEDULE_UID_LABEL)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Seen:
    """What changed-or-not is judged on, one per resource (slots: no per-instance dict)."""

    generation: int
    deleting: bool
    outcome: str = ""
    phase: str = ""
    parked_on: str | None = None
    waits_for: tuple[str, ...] = ()


class SnapshotController(QueuedController):
    """Keeps the latest body per resource (by UID), runs reconcile steps, persists their results.

    It is also the reconciler's ``Claims``: it knows which resource claims which snapshot.
    """

    def __init__(
        self,
        reconciler: Reconciler,
        writer: Writer,
        *,
        max_workers: int,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(name="cloudsnap-scheduler", max_workers=max_workers, may_act=may_act)
        self._reconciler = reconciler
        self._writer = writer
        self._bodies = _Bodies()
        self._seen: dict[str, _Seen] = {}
        # Snapshot ID -> UIDs of the resources claiming it (nearly always one: a tuple is a
        # quarter of a set's size, and there is one per resource).
        self._claims: dict[str, tuple[str, ...]] = {}
        self._parked: dict[str, set[str]] = {}
        # Resources whose finalizer this controller is removing itself (the write in flight).
        self._releasing: set[str] = set()
        # Key of a Kubernetes object (a claim, a volume) -> UIDs of the resources waiting on it.
        self._waiting: dict[str, set[str]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        reconciler.claims = self

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take a watch event: remember the body, and queue the resource if it changed.

        ``event_type`` None is kopf's initial listing. Our own status and finalizer writes come
        back as events too; they do not change the generation, so they queue nothing.
        """
        meta = body.get("metadata", {})
        # One copy of each UID, however many events and structures name it.
        uid = sys.intern(uid_of(body))
        if event_type == "DELETED":
            self._drop(uid)
            return
        if event_type == "ADDED" and _unborn(body) and self._may_act():
            # Created while we watch and lead: nothing can have been sent for it before us.
            self._reconciler.witness_birth(uid)
        generation = int(meta.get("generation") or 0)
        deleting = bool(meta.get("deletionTimestamp"))
        old = self._bodies.get(uid)
        lost_finalizer = not deleting and self._lost_finalizer(uid, old, body)
        self._remember(uid, body, old)
        seen = self._seen.get(uid)
        if seen is None:
            self._seen[uid] = _Seen(generation, deleting)
            self.queue.enqueue(uid)
        elif (seen.generation, seen.deleting) != (generation, deleting) or lost_finalizer:
            # Our finalizer removed from a live resource (`kubectl replace` or an apply of a
            # manifest without it) changes no generation, but it leaves the snapshot unprotected
            # until it is put back: a delete meanwhile would leave the snapshot behind.
            seen.generation, seen.deleting = generation, deleting
            self.queue.enqueue(uid)

    def _lost_finalizer(
        self, uid: str, old: Mapping[str, Any] | None, body: Mapping[str, Any]
    ) -> bool:
        """Whether ``body`` lacks our finalizer while the stored (``old``), not newer, body had
        it, and not because this controller removed it (its own release, whose event can beat
        the answer)."""
        if old is None or _version(old) > _version(body) or uid in self._releasing:
            return False
        had = FINALIZER in (old.get("metadata", {}).get("finalizers") or ())
        return had and FINALIZER not in (body.get("metadata", {}).get("finalizers") or ())

    def start(self) -> None:
        """Start the scheduler once, from inside a kopf handler: kopf keeps its Event queue in
        context variables it sets for its per-object tasks, and tasks inherit the context."""
        super().start()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_drift(), name="cloudsnap-drift-sweep")

    async def stop(self) -> None:
        """Cancel the drift sweeps, the scheduler and the steps in flight."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await super().stop()

    async def sweep(self) -> None:
        """The drift check of every steady resource, a few list calls per class; a step for
        each that needs one (``Reconciler.sweep``)."""
        for uid, delay in await self._reconciler.sweep():
            if uid in self._seen:
                self.queue.enqueue(uid, delay)
        metrics.DRIFT_SWEEPS.inc()

    async def _sweep_drift(self) -> None:
        """A sweep every resync period, while this replica may act."""
        while True:
            await asyncio.sleep(self._reconciler.sweep_interval())
            if not self._may_act():
                continue
            try:
                await self.sweep()
            except Exception:
                log.exception("Unexpected failure in the drift sweep; trying again next period")

    def _gained_lease(self) -> None:
        """What the reconciler remembers proves nothing about what the previous leader sent."""
        self._reconciler.forget_all()

    def _lost_lease(self) -> None:
        """Nothing: what the reconciler remembers is forgotten when the Lease is gained again."""

    def _keys(self) -> Iterable[str]:
        return self._seen

    def _body(self, key: str) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def retry_blocked(self) -> None:
        """A class or Secret changed: resources waiting on one try again now."""
        for uid, seen in self._seen.items():
            if seen.outcome == Outcome.BLOCKED:
                self.queue.enqueue(uid)

    def wake(self, key: str) -> None:
        """The object with this key (a claim, a volume) changed: resources whose last step waits
        for it try again now, not at their slow blocked retry.

        A step running now may have read the object just before this change and says what it
        waits for only when it ends, too late to be woken: a running step that is resolving a
        claim is run again right after it ends (the scheduler does so for a key asked for while
        it runs).
        """
        for uid in self._waiting.get(key, ()):
            self.queue.enqueue(uid)
        for uid in self.queue.running():
            body = self._bodies.get(uid)
            if body is not None and claim_to_resolve(
                (body.get("spec") or {}).get("persistentVolumeClaimName"), body.get("status") or {}
            ):
                self.queue.enqueue(uid)

    # -- Claims -------------------------------------------------------------------------------

    def resource(self, uid: str) -> str | None:
        """``namespace/name`` of the live CloudSnapshot with this UID."""
        body = self._bodies.get(uid)
        return None if body is None else object_key(body)

    def prior_claimant(self, snapshot_id: str, uid: str) -> str | None:
        """Another resource whose claim on the snapshot comes first: one whose status already
        names it, else the one created first (then by UID, so exactly one claim wins)."""
        mine = self._bodies.get(uid)
        rank = _claim_rank(mine, snapshot_id, uid) if mine is not None else None
        for other in self._claims.get(snapshot_id, ()):
            body = self._bodies.get(other)
            if other == uid or body is None:
                continue
            if rank is None or _claim_rank(body, snapshot_id, other) < rank:
                return object_key(body)
        return None

    # -- bookkeeping --------------------------------------------------------------------------

    def _remember(
        self, uid: str, body: Mapping[str, Any], old: Mapping[str, Any] | None = None
    ) -> None:
        """Keep the newer of the stored body (``old``, read here if not given) and ``body``: our
        write answers can beat the watch."""
        if old is None:
            old = self._bodies.get(uid)
        if old is not None and _version(old) > _version(body):
            return
        self._unclaim(uid, old)
        slim = _slim(body)
        self._bodies.put(uid, slim)
        for snapshot_id in _claimed(slim):
            holders = self._claims.get(snapshot_id, ())
            if uid not in holders:
                self._claims[snapshot_id] = (*holders, uid)

    def _unclaim(self, uid: str, old: Mapping[str, Any] | None = None) -> None:
        """Drop the claims of the stored body (``old``, read here if not given)."""
        if old is None:
            old = self._bodies.get(uid)
        for snapshot_id in _claimed(old) if old is not None else ():
            others = tuple(holder for holder in self._claims.get(snapshot_id, ()) if holder != uid)
            if others:
                self._claims[snapshot_id] = others
            else:
                self._claims.pop(snapshot_id, None)

    def _drop(self, uid: str) -> None:
        self._unclaim(uid)
        self._bodies.pop(uid)
        seen = self._seen.pop(uid, None)
        if seen is not None and seen.parked_on is not None:
            self._parked.get(seen.parked_on, set()).discard(uid)
        if seen is not None:
            self._stop_waiting(uid, seen.waits_for)
        self.queue.forget(uid)
        self._reconciler.forget(uid)
        self._publish_phases()

    async def _step(self, uid: str, body: dict[str, Any]) -> float | None:
        """One persisted reconcile step; seconds until the next one (None: on the next change)."""
        started = time.perf_counter()
        result = await self._reconciler.reconcile(body)
        elapsed = time.perf_counter() - started
        if uid not in self._bodies:
            # Deleted while the step ran: whatever the step remembered of it is stale already.
            self._reconciler.forget(uid)
            return None
        log.debug(
            "%s: %s, %d event(s), next step in %s",
            object_key(body),
            result.outcome,
            len(result.events),
            "-" if result.requeue_after is None else f"{result.requeue_after:.1f}s",
        )
        metrics.RECONCILE_TOTAL.labels(outcome=result.outcome).inc()
        metrics.RECONCILE_SECONDS.labels(outcome=result.outcome).observe(elapsed)
        if result.duplicates_deleted:
            metrics.DUPLICATES_DELETED.inc(result.duplicates_deleted)
        try:
            await self._persist(uid, body, result)
        except Conflict:
            return CONFLICT_RETRY_SECONDS
        except NotLeading:
            return NOT_LEADING_RETRY_SECONDS
        finally:
            if uid not in self._seen:
                # The DELETED event came while a write was in flight; the write's answer must
                # not bring back what that event dropped.
                self._unclaim(uid)
                self._bodies.pop(uid)
                self._reconciler.forget(uid)
        self._after(uid, result)
        if result.became_ready:
            _observe_time_to_ready(body)
        return result.requeue_after

    def _after(self, uid: str, result: Result) -> None:
        """Bookkeeping of a persisted step: phase metric, quota parking, waking parked ones."""
        seen = self._seen.get(uid)
        if seen is not None:
            seen.outcome = result.outcome
            if result.phase != seen.phase:
                seen.phase = result.phase
                self._publish_phases()
            if seen.parked_on is not None and seen.parked_on != result.parked_on_volume:
                self._parked.get(seen.parked_on, set()).discard(uid)
            seen.parked_on = result.parked_on_volume
            if result.parked_on_volume is not None:
                self._parked.setdefault(result.parked_on_volume, set()).add(uid)
            self._stop_waiting(uid, seen.waits_for)
            seen.waits_for = result.waits_for
            for key in result.waits_for:
                self._waiting.setdefault(key, set()).add(uid)
        if result.freed_volume is not None:
            for waiting in self._parked.pop(result.freed_volume, set()):
                self.queue.enqueue(waiting)

    def _stop_waiting(self, uid: str, keys: tuple[str, ...]) -> None:
        for key in keys:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(uid)
                if not waiting:
                    del self._waiting[key]

    async def _persist(self, uid: str, body: dict[str, Any], result: Result) -> None:
        """Finalizer first (it must hold before a create), then status, events, release.

        Each write first checks that this replica may still act (it holds the Lease).
        """
        writer = FencedWriter(self._writer, self._may_act)
        current = body
        finalizers = list(body.get("metadata", {}).get("finalizers") or [])
        if result.finalizer is True and FINALIZER not in finalizers:
            fresh = await writer.set_finalizers(body, [*finalizers, FINALIZER])
            if fresh is None:
                return
            current = fresh
            self._remember(uid, fresh)
        if result.status is not None:
            fresh = await writer.patch_status(current, result.status)
            if fresh is None:
                return
            current = fresh
            self._remember(uid, fresh)
        for event in result.events:
            await writer.post_event(current, event)
        if result.finalizer is False and FINALIZER in finalizers:
            remaining = [f for f in current["metadata"].get("finalizers") or [] if f != FINALIZER]
            self._releasing.add(uid)
            try:
                fresh = await writer.set_finalizers(current, remaining)
                if fresh is not None:
                    self._remember(uid, fresh)
            finally:
                self._releasing.discard(uid)

    def _publish_phases(self) -> None:
        counts = Counter(seen.phase or "pending" for seen in self._seen.values())
        metrics.SNAPSHOTS.clear()
        for phase, count in counts.items():
            metrics.SNAPSHOTS.labels(phase=phase).set(count)


def _unborn(body: Mapping[str, Any]) -> bool:
    """A body as its creator sent it: first generation, no finalizer, no status."""
    meta = body.get("metadata", {})
    return (
        int(meta.get("generation") or 0) <= 1
        and not meta.get("finalizers")
        and not body.get("status")
    )


def _claimed(body: Mapping[str, Any]) -> set[str]:
    """The snapshot IDs a body claims: the one its status names and the one its spec adopts."""
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    return {sid for sid in (status.get("snapshotID"), spec.get("snapshotID")) if sid}


def _claim_rank(body: Mapping[str, Any], snapshot_id: str, uid: str) -> tuple[int, str, str]:
    """Lower ranks claim first: an established claim (status names it, not refused), then age."""
    status = body.get("status") or {}
    error = status.get("error") or {}
    established = status.get("snapshotID") == snapshot_id and error.get("code") != ALREADY_OWNED
    created = str(body.get("metadata", {}).get("creationTimestamp", ""))
    return (0 if established else 1, created, uid)


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    kept_meta = {key: meta[key] for key in _KEPT_METADATA if key in meta}
    labels = meta.get("labels") or {}
    kept_labels = {key: labels[key] for key in _KEPT_LABELS if key in labels}
    if kept_labels:
        kept_meta["labels"] = kept_labels
    kept = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept_meta,
        "spec": body.get("spec"),
        "status": body.get("status"),
    }
    return {k: v for k, v in kept.items() if v is not None}


class _Bodies:
    """The body kept per resource: only the fields the steps read (no managedFields, no labels
    but a schedule's two on its children, no annotations such as kubectl's last-applied copy of
    the spec, which are most of an object's size), as compact JSON.

    This is what the operator holds per resource. Decoded, a Ready resource's body is about
    2.5 KiB of dictionaries and strings; its JSON is half that, in one object the garbage
    collector never walks, and decoding it (tens of microseconds) is nothing beside a step.
    Every ``get`` is a fresh copy, which a step may keep while the stored body moves on.
    """

    def __init__(self) -> None:
        self._encoded: dict[str, bytes] = {}

    def get(self, uid: str) -> dict[str, Any] | None:
        encoded = self._encoded.get(uid)
        return None if encoded is None else cast(dict[str, Any], json.loads(encoded))

    def put(self, uid: str, body: Mapping[str, Any]) -> None:
        self._encoded[uid] = json.dumps(body, separators=(",", ":")).encode()

    def pop(self, uid: str) -> None:
        self._encoded.pop(uid, None)

    def __contains__(self, uid: object) -> bool:
        return uid in self._encoded

    def __len__(self) -> int:
        return len(self._encoded)


def _version(body: Mapping[str, Any]) -> int:
    """resourceVersion as a number where it is one (etcd's revision); opaque ones compare equal."""
    text = version_of(body)
    return int(text) if text.isdigit() else 0


def _observe_time_to_ready(body: Mapping[str, Any]) -> None:
    created = body.get("metadata", {}).get("creationTimestamp")
    if not created:
        return
    since = datetime.now(UTC) - parse_time(str(created))
    metrics.TIME_TO_READY_SECONDS.observe(max(0.0, since.total_seconds()))
