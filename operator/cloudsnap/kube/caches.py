"""List+watch caches: classes, the operator namespace's Secrets, namespaces, claims and volumes.

They answer the reconcile layer's ClassReader/SecretReader/NamespaceReader/VolumeReader
protocols without an API call per step and report every change, so a fixed class, Secret or
namespace retries blocked resources at once. Each watch runs in its own daemon thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import CLASS_PLURAL, GROUP, VERSION
from cloudsnap.api.objects import object_key
from cloudsnap.kube.objects import api_message
from cloudsnap.logs import REDACTOR
from cloudsnap.runtime.failures import CACHE_NOT_SYNCED, Failure, Kind, LocalFailure

log = logging.getLogger(__name__)


WATCH_TIMEOUT_SECONDS = 300


# A step waits this long for a cache's first listing before it reports why it cannot proceed.
SYNC_WAIT_SECONDS = 10.0


# A cache that keeps failing to list or watch says so this often, not on every retry.
REPORT_EVERY_SECONDS = 30.0


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
            detail = api_message(exc)
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
        changed = {
            name
            for name in set(items) | set(self._items)
            if self._changed(self._items.get(name), items.get(name))
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
        before = self._items.get(key)
        if value is None:
            self._items.pop(key, None)
        else:
            self._items[key] = value
        if self._changed(before, value):
            self.on_change(key)

    def _changed(self, before: Any, after: Any) -> bool:
        """Whether an object going from ``before`` to ``after`` (None: absent) is a change to
        report."""
        return bool(before != after)


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


class NamespaceCache(WatchCache):
    """Namespaces' labels, cluster-wide; a NamespaceReader (cloudsnap.controllers.tenancy)
    for the classes that admit namespaces by a selector."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        core = kubernetes.client.CoreV1Api(api)
        super().__init__(api, "namespaces", core.list_namespace, transform=_labels)

    async def get_namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The namespace's labels, or None."""
        found: Mapping[str, str] | None = await self.get(name)
        return found

    def _changed(self, before: Any, after: Any) -> bool:
        # Namespaces change for reasons of their own (status, annotations), and come and go all
        # day; only a change of a known namespace's labels may admit a refused resource, so only
        # that retries them (a resource whose namespace the cache has not seen yet waits as for an
        # unsynced cache).
        return before is not None and after is not None and before != after


class VolumeSources:
    """PersistentVolumeClaims of the watched namespaces and PersistentVolumes cluster-wide, in
    list+watch caches; a VolumeReader (cloudsnap.controllers.snapshot.volumes).

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
                    key=object_key,
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
                    key=object_key,
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

    async def volumes_of_disk(self, disk_id: str) -> Sequence[Mapping[str, Any]]:
        """The volumes whose CSI volumeHandle is this disk: a scan, since it is asked only
        before a create by raw volume ID, once per resource."""
        wanted = disk_id.lower()
        return [
            volume
            for volume in await self._volumes.values()
            if str(((volume["spec"].get("csi") or {}).get("volumeHandle")) or "").lower() == wanted
        ]


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


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


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
