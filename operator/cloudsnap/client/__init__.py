"""A typed client of cloudsnap's resources for pipelines, Jobs and other controllers.

It speaks to the Kubernetes API only (never to EVS): it creates CloudSnapshots and
CloudSnapshotRestores, lists them, and waits until one is Ready or has failed for good
(``Stalled``, docs/automation.md). ``Client`` is
synchronous; ``AsyncClient`` runs the same calls in a thread for asyncio code. In a pod it uses
the pod's service account, elsewhere the current kubeconfig context.

    client = Client.from_environment()
    snap = client.snapshot_claim("db", "data-db-0", wait=True, timeout=600)
    print(snap.name, snap.snapshot_id)
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import (
    GROUP,
    READY,
    RESTORE_KIND,
    RESTORE_PLURAL,
    RUN_NOW_ANNOTATION,
    SCHEDULE_LABEL,
    SCHEDULE_PLURAL,
    SCHEDULE_UID_LABEL,
    SLOT_ANNOTATION,
    SNAPSHOT_KIND,
    SNAPSHOT_PLURAL,
    VERSION,
)
from cloudsnap.api.objects import condition_in
from cloudsnap.api.progress import STALLED
from cloudsnap.utc import parse_time

POLL_SECONDS = 2.0


class Outcome(enum.Enum):
    """How a wait ended; each has the exit code the kubectl plugin returns."""

    READY = 0
    FAILED = 1
    TIMED_OUT = 2


@dataclass(frozen=True)
class Settling:
    """What every waited-on object shares: its identity and how far it has come."""

    namespace: str
    name: str
    uid: str
    created: datetime | None
    ready: bool
    reason: str
    """The Ready condition's reason, or the Stalled one when it failed for good."""
    message: str
    stalled: bool
    deleting: bool

    @staticmethod
    def read(body: Mapping[str, Any]) -> dict[str, Any]:
        """The shared fields of an object as the API server returns it."""
        meta = body.get("metadata") or {}
        ready = condition_in(body, READY)
        stalled = condition_in(body, STALLED)
        telling = stalled if stalled.get("status") == "True" else ready
        created = meta.get("creationTimestamp")
        return {
            "namespace": str(meta.get("namespace", "")),
            "name": str(meta.get("name", "")),
            "uid": str(meta.get("uid", "")),
            "created": parse_time(str(created)) if created else None,
            "ready": ready.get("status") == "True",
            "reason": str(telling.get("reason") or "Pending"),
            "message": str(telling.get("message") or ""),
            "stalled": stalled.get("status") == "True",
            "deleting": bool(meta.get("deletionTimestamp")),
        }

    KIND: ClassVar[str]

    @property
    def ref(self) -> str:
        """``kind/name`` as kubectl writes it."""
        return f"{self.KIND.lower()}/{self.name}"

    @property
    def outcome(self) -> Outcome | None:
        """READY or FAILED once it got there; None while it is on its way."""
        if self.ready:
            return Outcome.READY
        if self.stalled:
            return Outcome.FAILED
        return None


@dataclass(frozen=True)
class Snapshot(Settling):
    """A CloudSnapshot as a client sees it."""

    KIND = SNAPSHOT_KIND

    source: str
    """``pvc/NAME``, ``volume/ID`` or ``snapshot/ID`` (adopted)."""
    snapshot_id: str | None
    size_gib: int | None
    schedule: str | None
    slot: str | None
    """The run of its schedule that made it (RFC 3339), for a schedule's child."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Snapshot:
        """Read a CloudSnapshot object as the API server returns it."""
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        if spec.get("persistentVolumeClaimName"):
            source = f"pvc/{spec['persistentVolumeClaimName']}"
        elif spec.get("volumeID"):
            source = f"volume/{spec['volumeID']}"
        else:
            source = f"snapshot/{spec.get('snapshotID', '')}"
        return cls(
            **cls.read(body),
            source=source,
            snapshot_id=status.get("snapshotID"),
            size_gib=status.get("size"),
            schedule=(meta.get("labels") or {}).get(SCHEDULE_LABEL),
            slot=(meta.get("annotations") or {}).get(SLOT_ANNOTATION),
        )


@dataclass(frozen=True)
class Restore(Settling):
    """A CloudSnapshotRestore as a client sees it."""

    KIND = RESTORE_KIND

    source: str
    """``NAME`` (a CloudSnapshot of the namespace) or ``snapshot/ID`` (an EVS snapshot)."""
    target: str
    """``pvc/NAME`` (a new disk and a claim bound to it), ``volume`` (a new disk only) or
    ``rollback`` (the snapshot's own disk)."""
    phase: str
    snapshot_id: str | None
    volume_id: str | None
    """The disk made (or, for a rollback, rolled back)."""
    safety_snapshot: str | None
    """For a rollback: the CloudSnapshot of the disk taken before it."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Restore:
        """Read a CloudSnapshotRestore object as the API server returns it."""
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        claim = (spec.get("newVolume") or {}).get("claim")
        if spec.get("rollback") is not None:
            target = "rollback"
        else:
            target = f"pvc/{claim['name']}" if claim else "volume"
        return cls(
            **cls.read(body),
            source=spec.get("snapshotName") or f"snapshot/{spec.get('snapshotID', '')}",
            target=target,
            phase=str(status.get("phase") or "Pending"),
            snapshot_id=status.get("snapshotID"),
            volume_id=status.get("volumeID"),
            safety_snapshot=status.get("safetySnapshotName"),
        )


_Watched = TypeVar("_Watched", Snapshot, Restore)


@dataclass(frozen=True)
class Run:
    """The schedule's answer to a run asked for now."""

    schedule_uid: str
    slot: str | None
    """The run's slot (RFC 3339); None when the schedule did not run it (it is suspended)."""
    sources: int


class NotFound(LookupError):
    """The CloudSnapshot does not exist (or no longer does)."""


class Client:
    """Create, list and wait on CloudSnapshots through the Kubernetes API."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api
        """The Kubernetes API client it speaks through."""
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._core = kubernetes.client.CoreV1Api(api)

    @classmethod
    def from_environment(
        cls, context: str | None = None, *, config_file: str | None = None
    ) -> Client:
        """The kubeconfig's current context (or ``context``), else the pod's service account."""
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=config_file, context=context, client_configuration=config
            )
        except (kubernetes.config.ConfigException, FileNotFoundError, TypeError):
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        return cls(kubernetes.client.ApiClient(config))

    def create(
        self,
        namespace: str,
        name: str | None,
        *,
        claim: str | None = None,
        volume_id: str | None = None,
        snapshot_id: str | None = None,
        class_name: str | None = None,
        deletion_policy: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """A new CloudSnapshot of a claim or a disk, or adopting the EVS snapshot
        ``snapshot_id``; ``name`` None lets the API server name it after the source."""
        sources = {
            "persistentVolumeClaimName": claim,
            "volumeID": volume_id,
            "snapshotID": snapshot_id,
        }
        given = {field: value for field, value in sources.items() if value is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of claim, volume_id and snapshot_id")
        spec: dict[str, Any] = dict(given)
        if class_name:
            spec["className"] = class_name
        prefix = f"{claim[:50]}-" if claim else ("volume-" if volume_id else "snapshot-")
        made = self._create(SNAPSHOT_KIND, namespace, name, prefix, spec, deletion_policy, labels)
        return Snapshot.of(made)

    def get(self, namespace: str, name: str) -> Snapshot:
        """The CloudSnapshot now; NotFound if it does not exist."""
        return Snapshot.of(self._read(SNAPSHOT_PLURAL, namespace, name))

    def get_restore(self, namespace: str, name: str) -> Restore:
        """The CloudSnapshotRestore now; NotFound if it does not exist."""
        return Restore.of(self._read(RESTORE_PLURAL, namespace, name))

    def snapshots(
        self, namespace: str | None = None, *, selector: str | None = None
    ) -> list[Snapshot]:
        """Every CloudSnapshot of a namespace (all namespaces with None), oldest first."""
        found = [Snapshot.of(item) for item in self._list(SNAPSHOT_PLURAL, namespace, selector)]
        return sorted(found, key=_oldest_first)

    def restores(
        self, namespace: str | None = None, *, selector: str | None = None
    ) -> list[Restore]:
        """Every CloudSnapshotRestore of a namespace (all namespaces with None), oldest first."""
        found = [Restore.of(item) for item in self._list(RESTORE_PLURAL, namespace, selector)]
        return sorted(found, key=_oldest_first)

    def wait(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float,
        progress: Callable[[Snapshot], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> tuple[Outcome, Snapshot]:
        """Wait until the CloudSnapshot is Ready or failed for good, or ``timeout`` seconds pass.

        ``progress`` hears each new reason on the way. A snapshot deleted while waited on raises
        NotFound.
        """
        return _wait(lambda: self.get(namespace, name), timeout, progress, clock, pause)

    def wait_restore(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float,
        progress: Callable[[Restore], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> tuple[Outcome, Restore]:
        """Wait until the CloudSnapshotRestore is Ready or failed for good (its disk failed, or
        it is blocked or invalid), or ``timeout`` seconds pass; as ``wait``."""
        return _wait(lambda: self.get_restore(namespace, name), timeout, progress, clock, pause)

    def claims(self, namespace: str, selector: str) -> list[str]:
        """The names of the namespace's PersistentVolumeClaims a label selector picks, sorted."""
        listing = self._core.list_namespaced_persistent_volume_claim(
            namespace, label_selector=selector
        )
        return sorted(str(item.metadata.name) for item in listing.items if item.metadata)

    def wait_all(
        self,
        namespace: str,
        names: Sequence[str],
        *,
        timeout: float,
        progress: Callable[[Snapshot], None] | None = None,
    ) -> tuple[Outcome, list[Snapshot]]:
        """Wait for every named CloudSnapshot: READY when all are Ready, FAILED as soon as one
        failed for good, TIMED_OUT when the time is up first."""
        deadline = time.monotonic() + timeout
        settled: dict[str, Snapshot] = {}
        for name in names:
            outcome, snap = self.wait(
                namespace, name, timeout=max(0.0, deadline - time.monotonic()), progress=progress
            )
            settled[name] = snap
            if outcome is not Outcome.READY:
                return outcome, list(settled.values())
        return Outcome.READY, list(settled.values())

    def run_now(
        self,
        namespace: str,
        schedule: str,
        *,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> Run:
        """Ask a CloudSnapshotSchedule for one extra run now (a new value of its run-now
        annotation) and return its answer; TimeoutError if the operator gives none in time."""
        value = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        patch = {"metadata": {"annotations": {RUN_NOW_ANNOTATION: value}}}
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, SCHEDULE_PLURAL, schedule, patch
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"cloudsnapshotschedule {namespace}/{schedule} not found") from None
            raise
        deadline = clock() + timeout
        while True:
            body = cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, SCHEDULE_PLURAL, schedule
                ),
            )
            status = body.get("status") or {}
            answer = status.get("runNow") or {}
            if answer.get("value") == value:
                return Run(
                    schedule_uid=str(body["metadata"]["uid"]),
                    slot=answer.get("slot"),
                    sources=int(status.get("sourceCount") or 0),
                )
            if clock() >= deadline:
                raise TimeoutError(f"cloudsnapshotschedule {namespace}/{schedule}: no answer")
            pause(min(POLL_SECONDS, max(0.0, deadline - clock())))

    def run_children(self, namespace: str, run: Run) -> list[Snapshot]:
        """The children a run has made so far."""
        selector = f"{SCHEDULE_UID_LABEL}={run.schedule_uid}"
        return [s for s in self.snapshots(namespace, selector=selector) if s.slot == run.slot]

    def snapshot_claim(
        self,
        namespace: str,
        claim: str,
        *,
        name: str | None = None,
        wait: bool = False,
        timeout: float = 600.0,
        **options: Any,
    ) -> Snapshot:
        """Snapshot a PersistentVolumeClaim; with ``wait``, return once it is Ready and raise
        ``SnapshotFailed`` if it fails for good or is not Ready in time."""
        snap = self.create(namespace, name, claim=claim, **options)
        if not wait:
            return snap
        outcome, snap = self.wait(namespace, snap.name, timeout=timeout)
        return _ready(outcome, snap, SnapshotFailed)

    def create_restore(
        self,
        namespace: str,
        name: str | None,
        *,
        snapshot: str | None = None,
        snapshot_id: str | None = None,
        class_name: str | None = None,
        claim: str | None = None,
        size_gb: int | None = None,
        rollback: bool = False,
        safety_snapshot: bool = True,
        deletion_policy: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Restore:
        """A new CloudSnapshotRestore (docs/restore.md) of the CloudSnapshot ``snapshot`` of the
        namespace, or of the EVS snapshot ``snapshot_id`` (in ``class_name``'s account): to a new
        disk of ``size_gb`` (the snapshot's size when None) with, given ``claim``, a claim bound
        to it; or, with ``rollback``, back onto the snapshot's own disk, first kept in a safety
        snapshot unless ``safety_snapshot`` is False. ``name`` None lets the API server name it
        after the source."""
        if (snapshot is None) == (snapshot_id is None):
            raise ValueError("give exactly one of snapshot and snapshot_id")
        if rollback and (claim is not None or size_gb is not None):
            raise ValueError("a rollback makes no disk: no claim, no size")
        spec: dict[str, Any] = (
            {"snapshotName": snapshot} if snapshot else {"snapshotID": snapshot_id}
        )
        if class_name:
            spec["className"] = class_name
        if rollback:
            spec["rollback"] = {"safetySnapshot": safety_snapshot}
        else:
            volume: dict[str, Any] = {} if size_gb is None else {"size": size_gb}
            if claim is not None:
                volume["claim"] = {"name": claim}
            spec["newVolume"] = volume
        prefix = f"{(snapshot or 'snapshot')[:50]}-restore-"
        made = self._create(RESTORE_KIND, namespace, name, prefix, spec, deletion_policy, labels)
        return Restore.of(made)

    def restore(
        self,
        namespace: str,
        *,
        name: str | None = None,
        wait: bool = False,
        timeout: float = 600.0,
        **options: Any,
    ) -> Restore:
        """Create a restore (``create_restore``'s options); with ``wait``, return once it is
        Ready and raise ``RestoreFailed`` if it fails for good or is not Ready in time."""
        made = self.create_restore(namespace, name, **options)
        if not wait:
            return made
        outcome, made = self.wait_restore(namespace, made.name, timeout=timeout)
        return _ready(outcome, made, RestoreFailed)

    def _create(
        self,
        kind: str,
        namespace: str,
        name: str | None,
        prefix: str,
        spec: dict[str, Any],
        deletion_policy: str | None,
        labels: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        """Create an object of ``kind``: named ``name``, or by the API server from ``prefix``."""
        if deletion_policy:
            spec["deletionPolicy"] = deletion_policy
        metadata: dict[str, Any] = {"labels": dict(labels or {})}
        if name:
            metadata["name"] = name
        else:
            metadata["generateName"] = prefix
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": metadata,
            "spec": spec,
        }
        plural = SNAPSHOT_PLURAL if kind == SNAPSHOT_KIND else RESTORE_PLURAL
        return cast(
            dict[str, Any],
            self._custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body),
        )

    def _read(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{plural[:-1]} {namespace}/{name} not found") from None
            raise

    def _list(self, plural: str, namespace: str | None, selector: str | None) -> list[Any]:
        kwargs: dict[str, Any] = {"label_selector": selector} if selector else {}
        listing: dict[str, Any]
        if namespace is None:
            listing = cast(
                dict[str, Any],
                self._custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs),
            )
        else:
            listing = cast(
                dict[str, Any],
                self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, **kwargs
                ),
            )
        return list(listing.get("items") or [])


def _oldest_first(found: Settling) -> tuple[bool, datetime | None, str, str]:
    return (found.created is None, found.created, found.namespace, found.name)


def _wait(
    get: Callable[[], _Watched],
    timeout: float,
    progress: Callable[[_Watched], None] | None,
    clock: Callable[[], float],
    pause: Callable[[float], None],
) -> tuple[Outcome, _Watched]:
    """Look with ``get`` until the object is Ready or failed for good, or ``timeout`` passes;
    ``progress`` hears each new reason."""
    deadline = clock() + timeout
    told: tuple[str, str] | None = None
    while True:
        found = get()
        if progress is not None and (found.reason, found.message) != told:
            told = (found.reason, found.message)
            progress(found)
        if found.outcome is not None:
            return found.outcome, found
        left = deadline - clock()
        if left <= 0:
            return Outcome.TIMED_OUT, found
        pause(min(POLL_SECONDS, left))


class NotSettled(RuntimeError):
    """A waited-on object failed for good or was not Ready in time."""

    def __init__(self, outcome: Outcome, found: Settling) -> None:
        what = "failed" if outcome is Outcome.FAILED else "is not Ready in time"
        super().__init__(
            f"{found.KIND.lower()} {found.namespace}/{found.name} {what}:"
            f" {found.reason}: {found.message}"
        )
        self.outcome = outcome


class SnapshotFailed(NotSettled):
    """A waited-on snapshot failed for good or was not Ready in time."""

    def __init__(self, outcome: Outcome, snapshot: Snapshot) -> None:
        super().__init__(outcome, snapshot)
        self.snapshot = snapshot


class RestoreFailed(NotSettled):
    """A waited-on restore failed for good or was not Ready in time."""

    def __init__(self, outcome: Outcome, restore: Restore) -> None:
        super().__init__(outcome, restore)
        self.restore = restore


def _ready(
    outcome: Outcome, found: _Watched, failure: Callable[[Outcome, _Watched], NotSettled]
) -> _Watched:
    """What a ``wait=True`` call returns: the object its wait found Ready, else ``failure``
    (SnapshotFailed, RestoreFailed) raised with how the wait ended."""
    if outcome is not Outcome.READY:
        raise failure(outcome, found)
    return found


class AsyncClient:
    """``Client``'s calls for asyncio code, each run in a worker thread."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @classmethod
    def from_environment(
        cls, context: str | None = None, *, config_file: str | None = None
    ) -> AsyncClient:
        return cls(Client.from_environment(context, config_file=config_file))

    async def create(self, namespace: str, name: str | None, **options: Any) -> Snapshot:
        return await asyncio.to_thread(self._client.create, namespace, name, **options)

    async def get(self, namespace: str, name: str) -> Snapshot:
        return await asyncio.to_thread(self._client.get, namespace, name)

    async def snapshots(
        self, namespace: str | None = None, *, selector: str | None = None
    ) -> Sequence[Snapshot]:
        return await asyncio.to_thread(self._client.snapshots, namespace, selector=selector)

    async def get_restore(self, namespace: str, name: str) -> Restore:
        return await asyncio.to_thread(self._client.get_restore, namespace, name)

    async def restores(
        self, namespace: str | None = None, *, selector: str | None = None
    ) -> Sequence[Restore]:
        return await asyncio.to_thread(self._client.restores, namespace, selector=selector)

    async def create_restore(self, namespace: str, name: str | None, **options: Any) -> Restore:
        return await asyncio.to_thread(self._client.create_restore, namespace, name, **options)

    async def wait(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float,  # noqa: ASYNC109 - a deadline, as Client.wait
    ) -> tuple[Outcome, Snapshot]:
        """Wait as ``Client.wait`` does, without holding a thread between looks."""
        return await _wait_async(lambda: self.get(namespace, name), timeout)

    async def wait_restore(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float,  # noqa: ASYNC109 - a deadline, as Client.wait_restore
    ) -> tuple[Outcome, Restore]:
        """Wait as ``Client.wait_restore`` does, without holding a thread between looks."""
        return await _wait_async(lambda: self.get_restore(namespace, name), timeout)

    async def restore(
        self,
        namespace: str,
        *,
        name: str | None = None,
        wait: bool = False,
        timeout: float = 600.0,  # noqa: ASYNC109 - a deadline, as Client.restore
        **options: Any,
    ) -> Restore:
        """``Client.restore`` for asyncio code."""
        made = await self.create_restore(namespace, name, **options)
        if not wait:
            return made
        outcome, made = await self.wait_restore(namespace, made.name, timeout=timeout)
        return _ready(outcome, made, RestoreFailed)


async def _wait_async(
    get: Callable[[], Awaitable[_Watched]],
    timeout: float,  # noqa: ASYNC109 - a deadline
) -> tuple[Outcome, _Watched]:
    """``_wait`` for asyncio code: look with ``get`` until settled or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await get()
        if found.outcome is not None:
            return found.outcome, found
        left = deadline - loop.time()
        if left <= 0:
            return Outcome.TIMED_OUT, found
        await asyncio.sleep(min(POLL_SECONDS, left))
