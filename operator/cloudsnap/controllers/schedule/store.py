"""What the schedule controller reads and writes in Kubernetes, as a protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cloudsnap.runtime.writes import Writer


class ScheduleStore(Writer, Protocol):
    """The Kubernetes reads and writes of a schedule step (``kube.schedule_store``; in memory in
    tests): the schedule's own status, finalizers and Events (``Writer``), its children and the
    claims its selector picks. Every write is fenced by the caller's ``may_act``."""

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        """Every CloudSnapshot of the namespace, read from the API server."""
        ...

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create it; on AlreadyExists the object stored under that name; Refused when
        the API server refuses it."""
        ...

    async def delete_snapshot(self, namespace: str, name: str, uid: str) -> None:
        """Delete the CloudSnapshot with this UID (nothing if it is gone or another one)."""
        ...

    async def detach_snapshot(self, namespace: str, name: str, uid: str, owner_uid: str) -> None:
        """Give a child made with an ownerReference to its schedule (``owner_uid``) the schedule's
        UID label instead, and drop that reference, so no garbage collector deletes it with the
        schedule (nothing if the child is gone or another one)."""
        ...

    async def annotate_snapshot(
        self, namespace: str, name: str, uid: str, key: str, value: str
    ) -> None:
        """Set one annotation of the CloudSnapshot with this UID (nothing if gone)."""
        ...

    async def list_claims(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The PersistentVolumeClaims of the namespace matching a label selector."""
        ...
