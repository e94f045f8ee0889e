"""The writes a controller step makes to its own resource, as a protocol, and how they fail.

Every controller persists a step the same way: status through the status subresource, the
finalizer list, and Events; ``kube.writer.KubeWriter`` makes them for each kind (by plural), the
tests keep them in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the resource."""

    type: EventType
    reason: str
    message: str


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read it again and retry."""


class Refused(Exception):
    """The API server refused a write (e.g. a field it does not serve); the message says why."""


class NotLeading(Exception):
    """A write was about to leave a replica that no longer holds the Lease."""


class Writer(Protocol):
    """The writes a step needs (KubeWriter in the operator, an in-memory one in tests).

    Each write names its resource by the object it was decided on, ``body`` as read: it lands
    only on that object, never on a newer one of the same name (its UID is a precondition, and
    the answer is then None, as for a gone object), and a finalizer write only at the
    resourceVersion read, so the namespace, name, UID and version always come from one object.
    """

    async def patch_status(
        self, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Replace the status; the new object, or None if it is gone."""
        ...

    async def set_finalizers(
        self, body: Mapping[str, Any], finalizers: Sequence[str]
    ) -> dict[str, Any] | None:
        """Replace the finalizers at ``body``'s resourceVersion (Conflict otherwise); None if
        gone."""
        ...

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """Record ``event`` on the resource ``body``; best effort, a refusal is not raised."""
        ...


@dataclass(frozen=True)
class FencedWriter:
    """A writer behind a check that this replica may still act (NotLeading otherwise)."""

    writer: Writer
    may_act: Callable[[], bool]

    def check(self) -> None:
        if not self.may_act():
            raise NotLeading

    async def patch_status(
        self, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        self.check()
        return await self.writer.patch_status(body, status)

    async def set_finalizers(
        self, body: Mapping[str, Any], finalizers: Sequence[str]
    ) -> dict[str, Any] | None:
        self.check()
        return await self.writer.set_finalizers(body, finalizers)

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        self.check()
        await self.writer.post_event(body, event)
