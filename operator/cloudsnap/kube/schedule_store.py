"""The Kubernetes reads and writes of schedule steps (a ``controllers.schedule.store`` store)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import (
    GROUP,
    SCHEDULE_PLURAL,
    SCHEDULE_UID_LABEL,
    SNAPSHOT_PLURAL,
    VERSION,
)
from cloudsnap.api.objects import uid_of, version_of
from cloudsnap.kube.objects import api_message, json_pointer
from cloudsnap.kube.step_store import KubeStepStore
from cloudsnap.runtime.writes import Conflict, Refused


class KubeScheduleStore(KubeStepStore):
    """The reads and writes of schedule steps (a ``schedules.ScheduleStore``).

    The schedule's own status and finalizers go through a KubeWriter (UID-tested JSON patches);
    children are created, deleted (with the UID as precondition) and released; claims listed.
    """

    def __init__(self, api: kubernetes.client.ApiClient, *, threads: int = 4) -> None:
        super().__init__(api, plural=SCHEDULE_PLURAL, threads=threads)

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        listing = await self._own.run(
            lambda: self._custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL
            )
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            created: dict[str, Any] = await self._own.run(
                lambda: self._custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, dict(body)
                )
            )
        except ApiException as exc:
            if exc.status in (400, 403, 422):
                raise Refused(f"{exc.status} {exc.reason}: {api_message(exc)}") from None
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
            await self._own.run(
                lambda: self._custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name, body=options
                )
            )
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or a newer object of that name
                raise

    async def detach_snapshot(self, namespace: str, name: str, uid: str, owner_uid: str) -> None:
        stored = await self._snapshots.read(namespace, name)
        if stored is None or uid_of(stored) != uid:
            return
        refs = stored["metadata"].get("ownerReferences") or []
        kept = [ref for ref in refs if ref.get("uid") != owner_uid]
        labels = {**(stored["metadata"].get("labels") or {}), SCHEDULE_UID_LABEL: owner_uid}
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "test", "path": "/metadata/resourceVersion", "value": version_of(stored)},
            {"op": "add", "path": "/metadata/labels", "value": labels},
            {"op": "add", "path": "/metadata/ownerReferences", "value": kept},
        ]
        await self._snapshots.patch(namespace, name, patch, status=False)

    async def annotate_snapshot(
        self, namespace: str, name: str, uid: str, key: str, value: str
    ) -> None:
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "add", "path": f"/metadata/annotations/{json_pointer(key)}", "value": value},
        ]
        await self._snapshots.patch(namespace, name, patch, status=False)

    async def list_claims(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        listing = await self._own.run(
            lambda: self._core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector
            )
        )
        items: list[dict[str, Any]] = (
            self._custom.api_client.sanitize_for_serialization(listing).get("items") or []
        )
        return items
