"""The interface between the restore reconciler and a cloud's disk API.

As for snapshots (``controllers.snapshot.external``), a ``DiskConnector`` turns a class name into
a ``DiskConnection`` bound to one account, whose ``DiskClient`` knows *how* to read a snapshot,
find, create, follow and delete disks; the reconciler decides *when*. Provider words stay behind
it: the reconciler sees ``DiskState`` values and ``Failure``s (raised as ``ExternalError``). The
EVS implementation is ``providers.evs.disks``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cloudsnap.api.models import AccountRef, CloudSnapshotClassSpec
from cloudsnap.api.objects import Owner
from cloudsnap.runtime.failures import Failure


class DiskState(enum.Enum):
    """Where a disk is in its life, whatever the provider calls it."""

    CREATING = "creating"
    READY = "ready"  # available, or attached to a server
    FAILED = "failed"
    DELETING = "deleting"
    BUSY = "busy"  # another provider operation holds it for now


@dataclass(frozen=True)
class SourceSnapshot:
    """The snapshot to restore, and the defaults its source disk gives the new one;
    ``owner_namespace`` and ``owner_name`` are those of the CloudSnapshot that made it, when the
    snapshot carries the operator's owner tags."""

    id: str
    available: bool
    phase: str
    size: int
    volume_id: str
    owner_namespace: str | None = None
    owner_name: str | None = None


@dataclass(frozen=True)
class Disk:
    """A disk as the reconciler needs it; ``phase`` is the provider's own word."""

    id: str
    state: DiskState
    phase: str
    size: int
    availability_zone: str | None
    volume_type: str | None
    owner_uid: str | None
    updated_at: datetime | None = None
    """When EVS last changed the disk (a rollback changes it; None where EVS does not say)."""


@dataclass(frozen=True)
class DiskRequest:
    """What to make: a disk from the snapshot, in a zone, of a type and size, named."""

    owner: Owner
    snapshot_id: str
    availability_zone: str
    volume_type: str
    size: int
    name: str
    description: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class Job:
    """How a disk create goes: ``volume_id`` once the provider names the disk; ``failure``
    when it failed."""

    id: str
    done: bool
    volume_id: str | None
    failure: Failure | None


class DiskClient(Protocol):
    """Disk operations in one account. Every call raises ExternalError on failure."""

    async def snapshot(self, snapshot_id: str) -> SourceSnapshot | None:
        """The snapshot read by ID; None when the account has none of that ID."""
        ...

    async def disk(self, volume_id: str) -> Disk | None:
        """The disk read by ID; None when it is gone."""
        ...

    async def find_owned(self, owner_uid: str) -> list[Disk]:
        """Every disk of the account tagged with this owner."""
        ...

    async def create(self, request: DiskRequest, token: str) -> str:
        """Start making the disk, tagged with ``request.owner``, under the idempotency token
        ``token``; the ID of the job that makes it."""
        ...

    async def job(self, job_id: str) -> Job:
        """The job as it now is."""
        ...

    async def delete(self, volume_id: str) -> bool:
        """Start deleting the disk; False when it is already gone."""
        ...

    async def rollback(self, snapshot_id: str, volume_id: str) -> None:
        """Start rolling the snapshot's data back onto its own disk ``volume_id``."""
        ...


@dataclass(frozen=True)
class DiskConnection:
    """A disk client bound to the account of one class, with the class's rules."""

    class_name: str
    account: AccountRef
    class_spec: CloudSnapshotClassSpec
    client: DiskClient


class DiskConnector(Protocol):
    """Resolves a class (None: the default class) to a DiskConnection; LocalFailure when
    unusable."""

    async def connect(self, class_name: str | None) -> DiskConnection:
        """The connection for the class."""
        ...
