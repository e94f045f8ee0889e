"""Status, finalizer and Event writes for a controller's own resources (``runtime.writes.Writer``).

Writes go through the official client so a step is persisted whenever it finishes, not only
inside a kopf handler: JSON patches that test the UID (and, for finalizers, the resourceVersion),
run in a small thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import GROUP, SNAPSHOT_KIND, SNAPSHOT_PLURAL, VERSION
from cloudsnap.api.objects import namespace_and_name, uid_of, version_of
from cloudsnap.api.text import EVENT_MESSAGE_MAX_BYTES, fit_text
from cloudsnap.kube.objects import api_message, unless_missing
from cloudsnap.runtime.writes import Conflict, Event
from cloudsnap.utc import rfc3339

log = logging.getLogger(__name__)


# Events name their reporter as this.
EVENT_COMPONENT = "cloudsnap-operator"


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
        self, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Replace ``status`` on the object ``body`` is; the new object, or None if it is gone.

        A JSON patch whose first operation tests the UID: the API server applies it to the
        stored object, so a newer object of the same name refuses it (the status strategy would
        ignore a UID given in a merge patch).
        """
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid_of(body)},
            {"op": "add", "path": "/status", "value": dict(status)},
        ]
        return await self.patch(*namespace_and_name(body), patch, status=True)

    async def set_finalizers(
        self, body: Mapping[str, Any], finalizers: Sequence[str]
    ) -> dict[str, Any] | None:
        """Replace the finalizer list, only on ``body``'s object still at its resourceVersion.

        The list is replaced whole, so the version test keeps a finalizer someone else added
        meanwhile from being dropped; a version mismatch raises Conflict.
        """
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid_of(body)},
            {"op": "test", "path": "/metadata/resourceVersion", "value": version_of(body)},
            {"op": "add", "path": "/metadata/finalizers", "value": list(finalizers)},
        ]
        return await self.patch(*namespace_and_name(body), patch, status=False)

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """Record ``event`` on the resource ``body`` as a core/v1 Event.

        Best effort: status carries the truth, so a post refused (say, into a namespace being
        deleted) is logged and not retried.
        """
        namespace, name = namespace_and_name(body)
        now = rfc3339(datetime.now(UTC))
        message = fit_text(event.message, EVENT_MESSAGE_MAX_BYTES)
        manifest = {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": body.get("kind", SNAPSHOT_KIND),
                "name": name,
                "namespace": namespace,
                "uid": uid_of(body),
                "resourceVersion": version_of(body),
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
                "Event %s on %s/%s not posted: %s", event.reason, namespace, name, api_message(exc)
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
                if stored is None or uid_of(stored) != _tested(body, "/metadata/uid"):
                    return None  # ours is gone; a newer object of the same name is not ours
                version = _tested(body, "/metadata/resourceVersion")
                if version is not None and version_of(stored) != version:
                    raise Conflict(f"{namespace}/{name} changed meanwhile") from None
            raise
        return result

    async def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None."""

        def get() -> Any:
            return self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, self._plural, name
            )

        found: dict[str, Any] | None = await self.run(lambda: unless_missing(get))
        return found

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _tested(patch: list[dict[str, Any]], path: str) -> str | None:
    """The value a JSON patch tests ``path`` for, if it does."""
    return next((op["value"] for op in patch if op["op"] == "test" and op["path"] == path), None)
