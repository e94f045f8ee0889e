"""The operator's own Kubernetes I/O: status and finalizer patches, and watch caches.

kopf delivers the CloudSnapshot watch stream; writes go through the official client so the
scheduler can persist a step whenever it finishes, not only inside a kopf handler. Classes and
the operator namespace's Secrets are kept in list+watch caches, which answer the reconcile layer's
ClassReader/SecretReader protocols without an API call per reconcile and report every change, so
a fixed class or Secret retries blocked resources at once. The sync client runs in a small thread
pool; each watch runs in its own daemon thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api import CLASS_PLURAL, GROUP, SNAPSHOT_KIND, SNAPSHOT_PLURAL, VERSION
from cloudsnap.api.constants import SCHEDULE_PLURAL, SCHEDULE_UID_LABEL
from cloudsnap.api.text import EVENT_MESSAGE_MAX_BYTES, fit_text
from cloudsnap.leader import LeaseConflict, LeaseRecord
from cloudsnap.logs import REDACTOR
from cloudsnap.reconcile import Event
from cloudsnap.reconcile.failures import CACHE_NOT_SYNCED, Failure, Kind, LocalFailure
from cloudsnap.schedules import ChildRefused

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300
# A step waits this long for a cache's first listing before it reports why it cannot proceed.
SYNC_WAIT_SECONDS = 10.0
# A cache that keeps failing to list or watch says so this often, not on every retry.
REPORT_EVERY_SECONDS = 30.0
# Events name their reporter as this.
EVENT_COMPONENT = "cloudsnap-operator"


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read it again and retry."""


def load_config() -> kubernetes.client.ApiClient:
    """An API client from the pod's service account, else from KUBECONFIG."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = 16
    return kubernetes.client.ApiClient(config)


async def wait_for_api(api: kubernetes.client.ApiClient, namespace: str | None) -> None:
    """Wait until the API server serves CloudSnapshots and CloudSnapshotSchedules (the CRDs
    established, their storage ready).

    Installed together with the operator, a CRD can still be initialising when the operator
    starts; kopf would log each refused listing as an ERROR. One INFO line instead.
    """
    custom = kubernetes.client.CustomObjectsApi(api)

    def probe() -> None:
        for plural in (SNAPSHOT_PLURAL, SCHEDULE_PLURAL):
            if namespace is None:
                custom.list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
            else:
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, limit=1)

    loop = asyncio.get_running_loop()
    told = False
    while True:
        try:
            await loop.run_in_executor(None, probe)
            return
        except ApiException as exc:
            if exc.status not in (404, 429, 503):
                return  # not a start-up race: kopf reports it in its own words
            if not told:
                log.info("waiting for the API server to serve the cloudsnap CRDs (%s)", exc.reason)
                told = True
        await asyncio.sleep(1.0)


class KubeWriter:
    """Patches CloudSnapshots (or, with ``plural``, CloudSnapshotSchedules) through the status
    subresource and the main resource, and posts their Events."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        threads: int = 8,
        plural: str = SNAPSHOT_PLURAL,
        component: str = EVENT_COMPONENT,
        instance: str | None = None,
    ) -> None:
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._core = kubernetes.client.CoreV1Api(api)
        self._plural = plural
        # "From" in `kubectl describe`; the instance is the pod name (its hostname).
        self._source = {"component": component, "host": instance or socket.gethostname()}
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, f"cloudsnap-{plural}")

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Call the blocking client in the writer's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def patch_status(
        self, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Replace ``status`` on the object with this UID; the new object, or None if it is gone.

        A JSON patch whose first operation tests the UID: the API server applies it to the
        stored object, so a newer object of the same name refuses it (the status strategy would
        ignore a UID given in a merge patch).
        """
        body: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "add", "path": "/status", "value": dict(status)},
        ]
        return await self.patch(namespace, name, body, status=True)

    async def set_finalizers(
        self,
        namespace: str,
        name: str,
        uid: str,
        finalizers: Sequence[str],
        resource_version: str,
    ) -> dict[str, Any] | None:
        """Replace the finalizer list, only on this UID still at ``resource_version``.

        The list is replaced whole, so the version test keeps a finalizer someone else added
        meanwhile from being dropped; a version mismatch raises Conflict.
        """
        body: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": list(finalizers)},
        ]
        return await self.patch(namespace, name, body, status=False)

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """Record ``event`` on the resource ``body`` as a core/v1 Event.

        Best effort: status carries the truth, so a post refused (say, into a namespace being
        deleted) is logged and not retried.
        """
        meta = body.get("metadata", {})
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = fit_text(event.message, EVENT_MESSAGE_MAX_BYTES)
        manifest = {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": body.get("kind", SNAPSHOT_KIND),
                "name": name,
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": message,
            "source": self._source,
            "reportingComponent": self._source["component"],
            "reportingInstance": self._source["host"],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.run(
                lambda: self._core.create_namespaced_event(namespace, manifest)  # type: ignore[arg-type]
            )
        except ApiException as exc:
            log.warning(
                "Event %s on %s/%s not posted: %s", event.reason, namespace, name, _api_message(exc)
            )

    async def patch(
        self, namespace: str, name: str, body: list[dict[str, Any]], *, status: bool
    ) -> dict[str, Any] | None:
        """Send a JSON patch; None if the object (of the UID tested) is gone, Conflict if the
        resourceVersion tested is not the stored one."""
        call = (
            self._custom.patch_namespaced_custom_object_status
            if status
            else self._custom.patch_namespaced_custom_object
        )

        def send() -> Any:
            return call(
                GROUP,
                VERSION,
                namespace,
                self._plural,
                name,
                body,
                _content_type="application/json-patch+json",
            )

        try:
            result: dict[str, Any] = await self.run(send)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise Conflict(f"{namespace}/{name} changed meanwhile") from None
            if exc.status == 422:
                # A failed JSON-patch test comes back as a bare 422: look at what is stored now.
                stored = await self.read(namespace, name)
                if stored is None or _uid_of(stored) != _tested(body, "/metadata/uid"):
                    return None  # ours is gone; a newer object of the same name is not ours
                version = _tested(body, "/metadata/resourceVersion")
                if version is not None and _version_of(stored) != version:
                    raise Conflict(f"{namespace}/{name} changed meanwhile") from None
            raise
        return result

    async def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None."""

        def get() -> Any:
            return self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, self._plural, name
            )

        try:
            found: dict[str, Any] = await self.run(get)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class KubeScheduleStore:
    """The reads and writes of schedule steps (a ``schedules.ScheduleStore``).

    The schedule's own status and finalizers go through a KubeWriter (UID-tested JSON patches);
    children are created, deleted (with the UID as precondition) and released; claims listed.
    """

    def __init__(self, api: kubernetes.client.ApiClient, *, threads: int = 4) -> None:
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._core = kubernetes.client.CoreV1Api(api)
        self._schedules = KubeWriter(api, threads=threads, plural=SCHEDULE_PLURAL)
        self._snapshots = KubeWriter(api, threads=threads)
        self.patch_status = self._schedules.patch_status
        self.set_finalizers = self._schedules.set_finalizers
        self.post_event = self._schedules.post_event

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        listing = await self._schedules.run(
            lambda: self._custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL
            )
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            created: dict[str, Any] = await self._schedules.run(
                lambda: self._custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, dict(body)
                )
            )
        except ApiException as exc:
            if exc.status in (400, 403, 422):
                raise ChildRefused(f"{exc.status} {exc.reason}: {_api_message(exc)}") from None
            if exc.status != 409:
                raise
            existing = await self._snapshots.read(namespace, body["metadata"]["name"])
            if existing is None:
                raise Conflict(f"{namespace}/{body['metadata']['name']} is being deleted") from None
            return existing
        return created

    async def delete_snapshot(self, namespace: str, name: str, uid: str) -> None:
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid),
            propagation_policy="Background",
        )
        try:
            await self._schedules.run(
                lambda: self._custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name, body=options
                )
            )
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or a newer object of that name
                raise

    async def detach_snapshot(self, namespace: str, name: str, uid: str, owner_uid: str) -> None:
        stored = await self._snapshots.read(namespace, name)
        if stored is None or _uid_of(stored) != uid:
            return
        refs = stored["metadata"].get("ownerReferences") or []
        kept = [ref for ref in refs if ref.get("uid") != owner_uid]
        labels = {**(stored["metadata"].get("labels") or {}), SCHEDULE_UID_LABEL: owner_uid}
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "test", "path": "/metadata/resourceVersion", "value": _version_of(stored)},
            {"op": "add", "path": "/metadata/labels", "value": labels},
            {"op": "add", "path": "/metadata/ownerReferences", "value": kept},
        ]
        await self._snapshots.patch(namespace, name, patch, status=False)

    async def annotate_snapshot(
        self, namespace: str, name: str, uid: str, key: str, value: str
    ) -> None:
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "add", "path": f"/metadata/annotations/{_pointer(key)}", "value": value},
        ]
        await self._snapshots.patch(namespace, name, patch, status=False)

    async def list_claims(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        listing = await self._schedules.run(
            lambda: self._core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector
            )
        )
        items: list[dict[str, Any]] = (
            self._custom.api_client.sanitize_for_serialization(listing).get("items") or []
        )
        return items

    def close(self) -> None:
        """Stop the thread pools."""
        self._schedules.close()
        self._snapshots.close()


def _api_message(exc: ApiException) -> str:
    """The API server's own message in a refusal (e.g. which user may not list what)."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


def _tested(patch: list[dict[str, Any]], path: str) -> str | None:
    """The value a JSON patch tests ``path`` for, if it does."""
    return next((op["value"] for op in patch if op["op"] == "test" and op["path"] == path), None)


def _pointer(key: str) -> str:
    """A map key as one JSON-pointer segment (RFC 6901: ~ and / escaped)."""
    return key.replace("~", "~0").replace("/", "~1")


def _uid_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


def _version_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


class WatchCache:
    """An in-memory copy of one list+watch, fed by a daemon thread.

    Objects are kept by ``key`` (their name by default) after ``transform``. ``on_change(key)``
    is called on the event loop for every added, modified or deleted object after the initial
    listing.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        what: str,
        lister: Callable[..., Any],
        *args: str,
        transform: Callable[[dict[str, Any]], Any] = lambda obj: obj,
        key: Callable[[dict[str, Any]], str] = lambda obj: str(obj["metadata"]["name"]),
    ) -> None:
        self._api = api
        self._what = what
        self._lister = lister
        self._args = args
        self._transform = transform
        self._key = key
        self._items: dict[str, Any] = {}
        self._synced = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._last_report = float("-inf")
        self.on_change: Callable[[str], None] = lambda name: None

    def start(self) -> None:
        """Begin listing and watching in the background."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._follow, name=f"watch-{self._what}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the watch thread to end (it is a daemon; it ends at the next event or timeout)."""
        self._stop.set()

    @property
    def synced(self) -> bool:
        """Whether the initial listing has been loaded."""
        return self._synced.is_set()

    async def get(self, key: str) -> Any:
        """The object kept under ``key`` (transformed), or None; waits for the initial listing."""
        if not self._synced.is_set():  # every step reads its class and Secret: no wait set up
            await self._wait_synced()
        return self._items.get(key)

    async def values(self) -> list[Any]:
        """Every object (transformed); waits for the initial listing."""
        await self._wait_synced()
        return list(self._items.values())

    async def _wait_synced(self) -> None:
        """Wait a bounded time for the first listing; then fail the step with the reason, so the
        resource shows why in its status instead of waiting without a word."""
        try:
            async with asyncio.timeout(SYNC_WAIT_SECONDS):
                await self._synced.wait()
        except TimeoutError:
            why = self._last_error or "no answer yet"
            message = f"the operator cannot read {self._what} ({why})"
            raise LocalFailure(Failure(CACHE_NOT_SYNCED, message, Kind.BLOCKED)) from None

    def _follow(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._relist()
                backoff = 0.5
                self._last_error = ""
                for kind, obj in self._stream(version):
                    self._store(kind, obj)
            except Exception as exc:
                self._report(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _report(self, exc: Exception) -> None:
        """Log a failed list or watch with what was refused, at most every 30 s."""
        if isinstance(exc, ApiException):
            self._last_error = f"list/watch {self._what}: {exc.status} {exc.reason}"
            detail = _api_message(exc)
            if detail:
                self._last_error += f": {detail}"
        else:
            self._last_error = f"list/watch {self._what}: {type(exc).__name__}"
        now = time.monotonic()
        if now - self._last_report >= REPORT_EVERY_SECONDS:
            self._last_report = now
            log.warning("%s; retrying", self._last_error)

    def _relist(self) -> str:
        listing = self._plain(self._lister(*self._args, _request_timeout=60))
        items = {self._key(obj): self._transform(obj) for obj in listing.get("items") or []}
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._replace, items)
        return str(listing["metadata"]["resourceVersion"])

    def _stream(self, version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        for event in watcher.stream(  # type: ignore[no-untyped-call]
            self._lister,
            *self._args,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _request_timeout=WATCH_TIMEOUT_SECONDS + 30,
        ):
            if self._stop.is_set():
                watcher.stop()  # type: ignore[no-untyped-call]
                return
            obj = self._plain(event["object"])
            if event["type"] == "ERROR":
                return  # e.g. 410 Gone: relist
            yield event["type"], obj

    def _plain(self, obj: Any) -> dict[str, Any]:
        """A client model as the JSON the API server sent (camelCase keys)."""
        if isinstance(obj, dict):
            return obj
        plain: dict[str, Any] = self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain

    def _replace(self, items: dict[str, Any]) -> None:
        changed = set(items) ^ set(self._items) | {
            name for name in items if self._items.get(name) != items[name]
        }
        self._items = items
        was_synced = self._synced.is_set()
        self._synced.set()
        if was_synced:
            for name in changed:
                self.on_change(name)

    def _store(self, kind: str, obj: dict[str, Any]) -> None:
        key = self._key(obj)
        value = None if kind == "DELETED" else self._transform(obj)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._set, key, value)

    def _set(self, key: str, value: Any) -> None:
        if value is None:
            self._items.pop(key, None)
        else:
            self._items[key] = value
        self.on_change(key)


class ClassCache(WatchCache):
    """CloudSnapshotClasses, cluster-wide; a ClassReader."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        custom = kubernetes.client.CustomObjectsApi(api)
        super().__init__(
            api,
            "cloudsnapshotclasses",
            custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            CLASS_PLURAL,
        )

    async def get_class(self, name: str) -> Mapping[str, Any] | None:
        """The class body, or None."""
        found: Mapping[str, Any] | None = await self.get(name)
        return found

    async def list_classes(self) -> Sequence[Mapping[str, Any]]:
        """Every class body."""
        return await self.values()


class SecretCache(WatchCache):
    """Secrets of the operator's namespace, decoded; a SecretReader.

    Every value read is registered with the log redactor before anything can log it.
    """

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        core = kubernetes.client.CoreV1Api(api)
        super().__init__(
            api,
            f"secrets in {namespace}",
            core.list_namespaced_secret,
            namespace,
            transform=_decode_secret,
        )

    async def get_secret(self, name: str) -> Mapping[str, str] | None:
        """The decoded data of Secret ``name``, or None."""
        found: Mapping[str, str] | None = await self.get(name)
        return found


class VolumeSources:
    """PersistentVolumeClaims of the watched namespaces and PersistentVolumes cluster-wide, in
    list+watch caches; a VolumeReader (cloudsnap.reconcile.volumes).

    Claims are watched per watched namespace (the chart grants them there only), or across all
    namespaces; volumes are cluster-scoped. Each keeps only what resolving a claim reads, so a
    cluster's thousands of claims and volumes cost little memory. ``on_claim_change(namespace,
    name)`` and ``on_volume_change(name)`` are called for every change after the first listing.
    """

    def __init__(self, api: kubernetes.client.ApiClient, namespaces: Sequence[str]) -> None:
        core = kubernetes.client.CoreV1Api(api)
        self.on_claim_change: Callable[[str, str], None] = lambda namespace, name: None
        self.on_volume_change: Callable[[str], None] = lambda name: None
        if namespaces:
            self._claims = {
                namespace: WatchCache(
                    api,
                    f"persistentvolumeclaims in {namespace}",
                    core.list_namespaced_persistent_volume_claim,
                    namespace,
                    transform=_slim_claim,
                    key=_namespaced_key,
                )
                for namespace in namespaces
            }
        else:
            self._claims = {
                "": WatchCache(
                    api,
                    "persistentvolumeclaims",
                    core.list_persistent_volume_claim_for_all_namespaces,
                    transform=_slim_claim,
                    key=_namespaced_key,
                )
            }
        self._volumes = WatchCache(
            api, "persistentvolumes", core.list_persistent_volume, transform=_slim_volume
        )
        for cache in self._claims.values():
            cache.on_change = self._claim_changed
        self._volumes.on_change = lambda name: self.on_volume_change(name)

    def _claim_changed(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        self.on_claim_change(namespace, name)

    def start(self) -> None:
        """Begin listing and watching in the background."""
        for cache in (*self._claims.values(), self._volumes):
            cache.start()

    def stop(self) -> None:
        """Ask the watch threads to end."""
        for cache in (*self._claims.values(), self._volumes):
            cache.stop()

    async def get_claim(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The claim (only the fields a resolution reads), or None."""
        cache = self._claims.get(namespace) or self._claims.get("")
        if cache is None:
            return None  # not a watched namespace: no CloudSnapshot of it is reconciled either
        found: Mapping[str, Any] | None = await cache.get(f"{namespace}/{name}")
        return found

    async def get_volume(self, name: str) -> Mapping[str, Any] | None:
        """The volume (only the fields a resolution reads), or None."""
        found: Mapping[str, Any] | None = await self._volumes.get(name)
        return found


def _namespaced_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def _slim_claim(obj: dict[str, Any]) -> dict[str, Any]:
    """What resolving a claim reads: its identity, the volume it names and its phase."""
    meta = obj.get("metadata") or {}
    return {
        "metadata": {key: meta.get(key) for key in ("namespace", "name", "uid")},
        "spec": {"volumeName": (obj.get("spec") or {}).get("volumeName")},
        "status": {"phase": (obj.get("status") or {}).get("phase")},
    }


def _slim_volume(obj: dict[str, Any]) -> dict[str, Any]:
    """What resolving a claim reads of its volume: the claim it is bound to and its CSI source."""
    spec = obj.get("spec") or {}
    ref = spec.get("claimRef") or {}
    csi = spec.get("csi") or {}
    return {
        "metadata": {"name": (obj.get("metadata") or {}).get("name")},
        "spec": {
            "claimRef": {key: ref.get(key) for key in ("namespace", "name", "uid")},
            "csi": {key: csi.get(key) for key in ("driver", "volumeHandle")} if csi else None,
        },
    }


def _decode_secret(obj: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            text = base64.b64decode(value or "").decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        REDACTOR.add(text)
        data[key] = text
    return data


class KubeLeaseStore:
    """The Lease through the official client (in a thread pool, like the other writes).

    Each request gives up after ``timeout`` seconds: the elector bounds a try by the renew
    deadline, but a thread stuck on a dead connection would stay behind it, one per try. Answers
    are read as plain JSON, not the client's models: a renewal every two seconds, for the
    operator's whole life, is most of what an idle operator does.
    """

    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, name: str, *, timeout: float
    ) -> None:
        self._api = kubernetes.client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self._timeout = timeout

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def get(self) -> LeaseRecord | None:
        try:
            lease = await self._run(
                lambda: self._api.read_namespaced_lease(
                    self._name,
                    self._namespace,
                    _request_timeout=self._timeout,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _record(lease)

    async def create(self, holder: str, duration: int) -> LeaseRecord:
        body = {
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": _spec(holder, duration, 0, acquired=True),
        }
        try:
            lease = await self._run(
                lambda: self._api.create_namespaced_lease(
                    self._namespace,
                    body,  # type: ignore[arg-type]
                    _request_timeout=self._timeout,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict from None
            raise
        return _record(lease)

    async def update(
        self, old: LeaseRecord, holder: str, duration: int, transitions: int
    ) -> LeaseRecord:
        # The UID makes the API server refuse (409) a write to a Lease deleted meanwhile, which
        # it would otherwise create anew: a renewal must never be what re-creates the Lease.
        body = {
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "resourceVersion": old.resource_version,
                "uid": old.uid,
            },
            "spec": _spec(holder, duration, transitions, acquired=holder != old.holder),
        }
        try:
            lease = await self._run(
                lambda: self._api.replace_namespaced_lease(
                    self._name,
                    self._namespace,
                    body,  # type: ignore[arg-type]
                    _request_timeout=self._timeout,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                raise LeaseConflict from None
            raise
        return _record(lease)


def _spec(holder: str, duration: int, transitions: int, *, acquired: bool) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec: dict[str, Any] = {
        "holderIdentity": holder,
        "leaseDurationSeconds": duration,
        "leaseTransitions": transitions,
        "renewTime": now,
    }
    if acquired:
        spec["acquireTime"] = now
    return spec


def _record(response: Any) -> LeaseRecord:
    """The LeaseRecord in an answer read with ``_preload_content=False``."""
    try:
        lease = json.loads(response.data)
    finally:
        response.release_conn()
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration=int(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(lease["metadata"]["resourceVersion"]),
        uid=str(lease["metadata"]["uid"]),
    )
