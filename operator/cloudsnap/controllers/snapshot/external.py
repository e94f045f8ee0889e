"""The interface between the generic lifecycle loop and a cloud's snapshot API.

Modelled on crossplane-runtime's managed reconciler: a ``Connector`` turns a class name into a
``Connection`` (an ``ExternalClient`` bound to one account), and the client knows *how* to observe,
find, create, update and delete a snapshot; the loop in ``reconciler`` decides *when*. Provider
status words and error codes stay behind this interface: the loop sees a ``State`` and a
``Failure`` (raised as ``ExternalError``). The EVS implementation is
``providers.evs.connector``; tests and a future backend (e.g. OpenStack Cinder) slot in another.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cloudsnap.api.models import AccountRef, CloudSnapshotClassSpec
from cloudsnap.api.objects import Owner


class State(enum.Enum):
    """Where a snapshot is in its life, whatever the provider calls it."""

    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"  # creation failed; it can only be deleted
    DELETING = "deleting"
    DELETE_FAILED = "delete failed"  # the provider could not delete it; a support case
    BUSY = "busy"  # a provider operation (rollback, backup) holds it for now

    @property
    def settled(self) -> bool:
        """Whether the snapshot may be deleted now."""
        return self in (State.READY, State.FAILED)

    @property
    def usable(self) -> bool:
        """Whether the snapshot is, or may become, a good snapshot."""
        return self in (State.CREATING, State.READY, State.BUSY)


@dataclass(frozen=True)
class ExternalSnapshot:
    """A snapshot as the loop needs it; ``phase`` is the provider's own word, shown verbatim."""

    id: str
    state: State
    phase: str
    volume_id: str
    owner_uid: str | None
    name: str
    description: str | None
    size: int | None
    created_at: datetime
    updated_at: datetime | None


class NotWorthSurveying(Exception):
    """The account holds too many snapshots for a listing of it to be the cheaper look."""


@dataclass(frozen=True)
class CreateRequest:
    """What to snapshot and how to label it."""

    owner: Owner
    volume_id: str
    name: str
    description: str | None
    force: bool
    metadata: dict[str, str]


@dataclass(frozen=True)
class Changes:
    """Fields to change on a snapshot; None leaves a field as it is, "" empties a description."""

    name: str | None = None
    description: str | None = None

    def __bool__(self) -> bool:
        return self.name is not None or self.description is not None


class ExternalClient(Protocol):
    """Snapshot operations in one account. Every call raises ExternalError on failure."""

    async def observe(self, snapshot_id: str, *, recent: bool = False) -> ExternalSnapshot | None:
        """The snapshot as a (batched, possibly lagging) list sees it; None when not listed.

        ``recent``: a look the class took within the last poll interval will do, where an older
        look is harmless (a snapshot still being created, which nothing of ours changes)."""
        ...

    async def confirm(self, snapshot_id: str) -> ExternalSnapshot | None:
        """The snapshot read directly by ID, the authoritative answer; None when it is gone."""
        ...

    def survey(self, wanted: int) -> AsyncIterator[ExternalSnapshot]:
        """Every snapshot in the account, page by page, for the drift sweep of ``wanted`` of
        them. A snapshot deleted meanwhile may make another go unlisted: an absence here proves
        nothing. Raises NotWorthSurveying when asking for the wanted ones one by one (batched)
        takes fewer calls: an account that mostly holds snapshots made by others."""
        ...

    async def find_owned(self, volume_id: str, owner_uid: str) -> list[ExternalSnapshot]:
        """Every snapshot of the disk tagged with this owner, oldest first."""
        ...

    async def create(self, request: CreateRequest) -> ExternalSnapshot:
        """Create a snapshot tagged with ``request.owner``."""
        ...

    async def update(self, snapshot_id: str, changes: Changes) -> ExternalSnapshot:
        """Change name and/or description."""
        ...

    async def delete(self, snapshot: ExternalSnapshot) -> ExternalSnapshot | None:
        """Start deleting the snapshot: it as it now is (deleting), or None when already gone."""
        ...


@dataclass(frozen=True)
class Connection:
    """An external client bound to the account of one class."""

    class_name: str
    account: AccountRef
    class_spec: CloudSnapshotClassSpec
    client: ExternalClient


class Connector(Protocol):
    """Resolves a class (None: the default class) to a Connection; LocalFailure when unusable."""

    async def connect(self, class_name: str | None) -> Connection:
        """The connection for the class."""
        ...
