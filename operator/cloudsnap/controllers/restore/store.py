"""What the restore controller reads and writes in Kubernetes, as a protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cloudsnap.controllers.restore.users import PodReader
from cloudsnap.runtime.writes import Writer


class RestoreStore(Writer, PodReader, Protocol):
    """The Kubernetes reads and writes of a restore step (``kube.restore_store``; in memory in
    tests): the restore's own status, finalizers and Events (``Writer``), the CloudSnapshot it
    names, the PersistentVolume and claim it makes, and (``PodReader``) the pods that may hold
    a disk a rollback waits for. Every write is fenced by the caller."""

    async def read_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The CloudSnapshot, or None."""
        ...

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the CloudSnapshot (a rollback's safety snapshot); on AlreadyExists the one
        stored under that name."""
        ...

    async def read_volume(self, name: str) -> dict[str, Any] | None:
        """The PersistentVolume, or None."""
        ...

    async def read_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The PersistentVolumeClaim, or None."""
        ...

    async def create_volume(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the PersistentVolume; on AlreadyExists the one stored under that name."""
        ...

    async def create_claim(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the claim; on AlreadyExists the one stored under that name."""
        ...

    async def delete_volume(self, name: str, uid: str) -> None:
        """Delete the PersistentVolume with this UID (nothing if gone or another one)."""
        ...

    async def delete_claim(self, namespace: str, name: str, uid: str) -> None:
        """Delete the claim with this UID (nothing if gone or another one)."""
        ...
