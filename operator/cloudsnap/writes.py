"""The writes a controller step makes to its own resource, as a protocol.

Both controllers persist a step the same way: status through the status subresource, the
finalizer list, and Events; `kube.KubeWriter` makes them for CloudSnapshots and (by plural) for
CloudSnapshotSchedules, the tests keep them in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cloudsnap.reconcile import Event


class Writer(Protocol):
    """The writes a step needs (KubeWriter in the operator, an in-memory one in tests).

    Status and finalizer writes carry the resource's UID as a precondition: a write meant for a
    deleted resource never lands on a newer one of the same name (the answer is then None, as for
    a gone object).
    """

    async def patch_status(
        self, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Replace the status; the new object, or None if it is gone."""
        ...

    async def set_finalizers(
        self,
        namespace: str,
        name: str,
        uid: str,
        finalizers: Sequence[str],
        resource_version: str,
    ) -> dict[str, Any] | None:
        """Replace the finalizers at ``resource_version`` (Conflict otherwise); None if gone."""
        ...

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """Record ``event`` on the resource ``body``; best effort, a refusal is not raised."""
        ...
