"""A typed client of cloudsnap's resources for pipelines, Jobs and other controllers.

It speaks to the Kubernetes API only (never to EVS): it creates CloudSnapshots, lists them, and
waits until one is Ready or has failed for good (``Stalled``, docs/automation.md). ``Client`` is
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import (
    GROUP,
    READY,
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
class Snapshot:
    """A CloudSnapshot as a client sees it."""

    namespace: str
    name: str
    uid: str
    created: datetime | None
    source: str
    """``pvc/NAME``, ``volume/ID`` or ``snapshot/ID`` (adopted)."""
    ready: bool
    reason: str
    """The Ready condition's reason, or the Stalled one when it failed for good."""
    message: str
    stalled: bool
    snapshot_id: str | None
    size_gib: int | None
    schedule: str | None
    slot: str | None
    """The run of its schedule that made it (RFC 3339), for a schedule's child."""
    deleting: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Snapshot:
        """Read a CloudSnapshot object as the API server returns it."""
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        ready = condition_in(body, READY)
        stalled = condition_in(body, STALLED)
        telling = stalled if stalled.get("status") == "True" else ready
        if spec.get("persistentVolumeClaimName"):
            source = f"pvc/{spec['persistentVolumeClaimName']}"
        elif spec.get("volumeID"):
            source = f"volume/{spec['volumeID']}"
        else:
            source = f"snapshot/{spec.get('snapshotID', '')}"
        created = meta.get("creationTimestamp")
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            created=parse_time(str(created)) if created else None,
            source=source,
            ready=ready.get("status") == "True",
            reason=str(telling.get("reason") or "Pending"),
            message=str(telling.get("message") or ""),
            stalled=stalled.get("status") == "True",
            snapshot_id=status.get("snapshotID"),
            size_gib=status.get("size"),
            schedule=(meta.get("labels") or {}).get(SCHEDULE_LABEL),
            slot=(meta.get("annotations") or {}).get(SLOT_ANNOTATION),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def outcome(self) -> Outcome | None:
        """READY or FAILED once the snapshot got there; None while it is on its way."""
        if self.ready:
            return Outcome.READY
        if self.stalled:
            return Outcome.FAILED
        return None


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
        class_name: str | None = None,
        deletion_policy: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """A new CloudSnapshot of a claim or a disk; ``name`` None lets the API server name it
        after the source."""
        if (claim is None) == (volume_id is None):
            raise ValueError("give exactly one of claim and volume_id")
        spec: dict[str, Any] = (
            {"persistentVolumeClaimName": claim} if claim else {"volumeID": volume_id}
        )
        if class_name:
            spec["className"] = class_name
        if deletion_policy:
            spec["deletionPolicy"] = deletion_policy
        metadata: dict[str, Any] = {"labels": dict(labels or {})}
        if name:
            metadata["name"] = name
        else:
            metadata["generateName"] = f"{(claim or 'volume')[:50]}-"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": SNAPSHOT_KIND,
            "metadata": metadata,
            "spec": spec,
        }
        created = cast(
            dict[str, Any],
            self._custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL, body
            ),
        )
        return Snapshot.of(created)

    def get(self, namespace: str, name: str) -> Snapshot:
        """The CloudSnapshot now; NotFound if it does not exist."""
        try:
            body = cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"cloudsnapshot {namespace}/{name} not found") from None
            raise
        return Snapshot.of(body)

    def snapshots(
        self, namespace: str | None = None, *, selector: str | None = None
    ) -> list[Snapshot]:
        """Every CloudSnapshot of a namespace (all namespaces with None), oldest first."""
        kwargs: dict[str, Any] = {"label_selector": selector} if selector else {}
        listing: dict[str, Any]
        if namespace is None:
            listing = cast(
                dict[str, Any],
                self._custom.list_cluster_custom_object(GROUP, VERSION, SNAPSHOT_PLURAL, **kwargs),
            )
        else:
            listing = cast(
                dict[str, Any],
                self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, **kwargs
                ),
            )
        found = [Snapshot.of(item) for item in listing.get("items") or []]
        return sorted(found, key=lambda s: (s.created is None, s.created, s.namespace, s.name))

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
        deadline = clock() + timeout
        told: tuple[str, str] | None = None
        while True:
            snap = self.get(namespace, name)
            if progress is not None and (snap.reason, snap.message) != told:
                told = (snap.reason, snap.message)
                progress(snap)
            if snap.outcome is not None:
                return snap.outcome, snap
            left = deadline - clock()
            if left <= 0:
                return Outcome.TIMED_OUT, snap
            pause(min(POLL_SECONDS, left))

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
        if outcome is not Outcome.READY:
            raise SnapshotFailed(outcome, snap)
        return snap


class SnapshotFailed(RuntimeError):
    """A waited-on snapshot failed for good or was not Ready in time."""

    def __init__(self, outcome: Outcome, snapshot: Snapshot) -> None:
        what = "failed" if outcome is Outcome.FAILED else "is not Ready in time"
        super().__init__(
            f"cloudsnapshot {snapshot.namespace}/{snapshot.name} {what}:"
            f" {snapshot.reason}: {snapshot.message}"
        )
        self.outcome = outcome
        self.snapshot = snapshot


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

    async def wait(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float,  # noqa: ASYNC109 - a deadline, as Client.wait
    ) -> tuple[Outcome, Snapshot]:
        """Wait as ``Client.wait`` does, without holding a thread between looks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            snap = await self.get(namespace, name)
            if snap.outcome is not None:
                return snap.outcome, snap
            left = deadline - loop.time()
            if left <= 0:
                return Outcome.TIMED_OUT, snap
            await asyncio.sleep(min(POLL_SECONDS, left))
