"""The Kubernetes reads and writes of restore steps (a ``controllers.restore.store`` store)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import GROUP, RESTORE_PLURAL, SNAPSHOT_PLURAL, VERSION
from cloudsnap.kube.step_store import KubeStepStore


class KubeRestoreStore(KubeStepStore):
    """The reads and writes of restore steps (a ``RestoreStore``): the restore's own status,
    finalizers and Events through a KubeWriter, the CloudSnapshot it names, the
    PersistentVolume and claim it makes (created once by name, deleted with their UID as a
    precondition), and the pods of a namespace (for who holds a disk a rollback waits for)."""

    def __init__(self, api: kubernetes.client.ApiClient, *, threads: int = 4) -> None:
        super().__init__(api, plural=RESTORE_PLURAL, threads=threads)

    async def read_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._snapshots.read(namespace, name)

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return await self._create(
            lambda: self._custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL, dict(body)
            ),
            lambda: self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name
            ),
        )

    async def read_volume(self, name: str) -> dict[str, Any] | None:
        return await self._get(lambda: self._core.read_persistent_volume(name))

    async def read_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            lambda: self._core.read_namespaced_persistent_volume_claim(name, namespace)
        )

    async def create_volume(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return await self._create(
            lambda: self._core.create_persistent_volume(dict(body)),  # type: ignore[arg-type]
            lambda: self._core.read_persistent_volume(name),
        )

    async def create_claim(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return await self._create(
            lambda: self._core.create_namespaced_persistent_volume_claim(namespace, dict(body)),  # type: ignore[arg-type]
            lambda: self._core.read_namespaced_persistent_volume_claim(name, namespace),
        )

    async def delete_volume(self, name: str, uid: str) -> None:
        await self._delete(
            lambda options: self._core.delete_persistent_volume(name, body=options), uid
        )

    async def delete_claim(self, namespace: str, name: str, uid: str) -> None:
        await self._delete(
            lambda options: self._core.delete_namespaced_persistent_volume_claim(
                name, namespace, body=options
            ),
            uid,
        )

    async def pods_in(self, namespace: str) -> Sequence[Mapping[str, Any]] | None:
        """The namespace's pods, each reduced to its name and the claims its volumes name (the
        raw JSON is read: no client models are built for the pods); None where the operator may
        not list them (a namespace it does not watch)."""
        try:
            answer = await self._own.run(
                lambda: self._core.list_namespaced_pod(namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 403:
                return None
            raise
        listed = json.loads(answer.data)
        return [_slim_pod(pod) for pod in listed.get("items") or ()]

    async def _get(self, read: Callable[[], Any]) -> dict[str, Any] | None:
        """The object read, as the API server serves it (JSON names), or None on 404."""
        try:
            found = await self._own.run(read)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._json(found)

    async def _create(self, create: Callable[[], Any], read: Callable[[], Any]) -> dict[str, Any]:
        """Create; on AlreadyExists (a repeated step) the object stored under that name."""
        try:
            return self._json(await self._own.run(create))
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self._json(await self._own.run(read))

    async def _delete(self, delete: Callable[[Any], Any], uid: str) -> None:
        """Delete with the UID as precondition; nothing if it is gone or another one."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid)
        )
        try:
            await self._own.run(lambda: delete(options))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _json(self, found: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._core.api_client.sanitize_for_serialization(found)
        return result


def _slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What naming a claim's users reads of a pod: its name and its claim volumes."""
    volumes = (pod.get("spec") or {}).get("volumes") or ()
    return {
        "metadata": {"name": (pod.get("metadata") or {}).get("name")},
        "spec": {
            "volumes": [
                {"persistentVolumeClaim": volume["persistentVolumeClaim"]}
                for volume in volumes
                if volume.get("persistentVolumeClaim")
            ]
        },
    }
