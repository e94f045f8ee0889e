"""The CloudSnapshotRestore controller: keeps each restore's latest body from the watch, runs
reconcile steps on its work queue, and persists their results (finalizer, status, Events)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cloudsnap import metrics
from cloudsnap.api.constants import GROUP, READY
from cloudsnap.api.objects import condition_in, object_key, uid_of
from cloudsnap.controllers.restore.reconciler import Reconciler, Result
from cloudsnap.controllers.restore.store import RestoreStore
from cloudsnap.runtime.controller import NOT_LEADING_RETRY_SECONDS, QueuedController
from cloudsnap.runtime.writes import Conflict, FencedWriter, NotLeading
from cloudsnap.utc import parse_time

RESTORE_FINALIZER = f"{GROUP}/restore-protection"
"""Held from before a restore's first create until what it made is kept or deleted."""
# A 409 on the finalizer patch means our copy is behind the watch; it catches up within moments.
CONFLICT_RETRY_SECONDS = 0.5

log = logging.getLogger(__name__)


class RestoreController(QueuedController):
    """Steps CloudSnapshotRestores and persists each step."""

    def __init__(
        self,
        reconciler: Reconciler,
        store: RestoreStore,
        *,
        max_workers: int,
        may_act: Callable[[], bool],
    ) -> None:
        super().__init__(name="cloudsnap-restores", max_workers=max_workers, may_act=may_act)
        self._reconciler = reconciler
        self._writer = FencedWriter(store, may_act)
        self._bodies: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, tuple[str, int, bool]] = {}
        self._by_source: dict[str, set[str]] = {}
        """The restores naming each CloudSnapshot ("namespace/name") as their source."""
        self._phases: dict[str, str] = {}
        """The phase of each restore as this replica last wrote it (the leader's gauge)."""
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}
        """The status this replica last wrote for each restore, with the restore's UID: only the
        leader writes it, so it is newer than the status of a body the watch has not caught up
        with (a step must not forget the create it just sent)."""

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A restore's watch event: keep the body; step it when it is new, its spec changed or
        its deletion began."""
        key = object_key(body)
        source = _source_key(body)
        if event_type == "DELETED":
            self._by_source.get(source, set()).discard(key)
            self._bodies.pop(key, None)
            self._seen.pop(key, None)
            self._written.pop(key, None)
            if self._phases.pop(key, None) is not None:
                self._publish_phases()
            self._reconciler.forget(uid_of(body))
            self.queue.forget(key)
            return
        meta = body.get("metadata") or {}
        self._bodies[key] = dict(body)
        self._by_source.setdefault(source, set()).add(key)  # the source is immutable
        seen = (uid_of(body), int(meta.get("generation") or 0), bool(meta.get("deletionTimestamp")))
        if self._seen.get(key) != seen:
            self._seen[key] = seen
            self.queue.enqueue(key)

    def observe_source(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A CloudSnapshot's watch event: the restores naming it that have no disk yet look
        again (it may have become Ready)."""
        for key in self._by_source.get(object_key(body), ()):
            restore = self._bodies.get(key)
            if restore is not None and not (restore.get("status") or {}).get("volumeID"):
                self.queue.enqueue(key)

    def retry_blocked(self) -> None:
        """A class or Secret changed: every restore not Ready looks again at once."""
        for key, restore in self._bodies.items():
            if condition_in(restore, READY).get("status") != "True":
                self.queue.enqueue(key)

    def _keys(self) -> Iterable[str]:
        return self._bodies

    def _body(self, key: str) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def _gained_lease(self) -> None:
        """Nothing: what this replica wrote while leading was dropped when it stopped."""

    def _lost_lease(self) -> None:
        """The next leader writes the statuses, so they are read from the watch again, and
        publishes the phase gauge."""
        self._written.clear()
        self._phases.clear()
        metrics.RESTORES.clear()

    async def _step(self, key: str, body: dict[str, Any]) -> float | None:
        """One reconcile step of the restore and its persistence."""
        uid = uid_of(body)
        written = self._written.get(key)
        status = written[1] if written is not None and written[0] == uid else body.get("status")
        result = await self._reconciler.reconcile(body, status or {})
        try:
            return await self._persist(key, body, status or {}, result)
        except NotLeading:
            return NOT_LEADING_RETRY_SECONDS
        except Conflict:
            return CONFLICT_RETRY_SECONDS

    async def _persist(
        self, key: str, body: dict[str, Any], previous: Mapping[str, Any], result: Result
    ) -> float | None:
        """Finalizer first (before any create), then status, Events, the finalizer's removal."""
        uid = uid_of(body)
        finalizers = list(body["metadata"].get("finalizers") or ())
        if result.add_finalizer and RESTORE_FINALIZER not in finalizers:
            fresh = await self._writer.set_finalizers(body, [*finalizers, RESTORE_FINALIZER])
            if fresh is None:
                return None
            self._bodies[key] = body = fresh
        status = result.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        unchanged = status == dict(previous)
        if not unchanged and await self._writer.patch_status(body, status) is None:
            return None
        self._written[key] = (uid, status)
        self._observe(key, body, previous, status)
        for event in result.events:
            await self._writer.post_event(body, event)
        if result.remove_finalizer and RESTORE_FINALIZER in finalizers:
            kept = [each for each in finalizers if each != RESTORE_FINALIZER]
            await self._writer.set_finalizers(body, kept)
        return result.requeue

    def _observe(
        self,
        key: str,
        body: Mapping[str, Any],
        previous: Mapping[str, Any],
        status: Mapping[str, Any],
    ) -> None:
        """The metrics of a written status: the phase gauge, and a restore turning Ready
        (counted, its time since creation observed) or Failed (counted)."""
        phase = str(status.get("phase") or "Pending")
        target = "rollback" if (body.get("spec") or {}).get("rollback") is not None else "newVolume"
        if phase != previous.get("phase"):
            if phase == "Ready":
                metrics.RESTORES_COMPLETED.labels(target=target).inc()
                created = (body.get("metadata") or {}).get("creationTimestamp")
                if created:
                    since = datetime.now(UTC) - parse_time(str(created))
                    metrics.RESTORE_SECONDS.labels(target=target).observe(
                        max(0.0, since.total_seconds())
                    )
            elif phase == "Failed":
                metrics.RESTORES_FAILED.labels(target=target).inc()
        if self._phases.get(key) != phase:
            self._phases[key] = phase
            self._publish_phases()

    def _publish_phases(self) -> None:
        metrics.RESTORES.clear()
        for phase, count in Counter(self._phases.values()).items():
            metrics.RESTORES.labels(phase=phase).set(count)


def _source_key(body: Mapping[str, Any]) -> str:
    """The CloudSnapshot a restore names, as "namespace/name" ("" for an EVS snapshot ID)."""
    name = (body.get("spec") or {}).get("snapshotName")
    return f"{(body.get('metadata') or {}).get('namespace', '')}/{name}" if name else ""
