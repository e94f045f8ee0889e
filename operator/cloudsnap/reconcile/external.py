"""The external client: observe / create / update / delete one EVS snapshot for one resource.

Kept apart from the generic loop (as crossplane-runtime keeps its ExternalClient), so the loop in
``reconciler`` decides *when* and this module only knows *how*, including how a snapshot made for a
resource is recognised again: EVS metadata ``cloudsnap.io/owner-uid`` set to the resource's UID.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cloudsnap.api import (
    OWNER_NAME_METADATA_KEY,
    OWNER_NAMESPACE_METADATA_KEY,
    OWNER_UID_METADATA_KEY,
    CloudSnapshotSpec,
    effective_snapshot_name,
)
from cloudsnap.evs import UNSET, CreateSnapshotRequest, EVSAPIError, ListSnapshotsQuery, Snapshot
from cloudsnap.evs.client import Unset
from cloudsnap.reconcile.accounts import Account


class Source(enum.StrEnum):
    """How the snapshot of a resource was found."""

    STATUS = "status"  # status.snapshotID, written by us earlier
    SPEC = "spec"  # spec.snapshotID, an adoption asked for by the user
    IDENTITY = "identity"  # our owner-uid tag, e.g. after a lost create answer


@dataclass(frozen=True)
class Target:
    """The resource as the external client needs it."""

    namespace: str
    name: str
    uid: str
    spec: CloudSnapshotSpec
    known_id: str | None

    @property
    def snapshot_name(self) -> str:
        """The EVS name this resource's snapshot should carry."""
        return effective_snapshot_name(self.namespace, self.name, self.spec)


@dataclass(frozen=True)
class Observation:
    """What EVS holds for a resource; ``snapshot`` None with a ``source`` means it vanished."""

    snapshot: Snapshot | None
    source: Source | None


class External:
    """EVS operations for resources of one class, over its account."""

    def __init__(self, account: Account) -> None:
        self._account = account

    async def observe(self, target: Target) -> Observation:
        """Find the resource's snapshot: by a known id (batched), else by identity lookup."""
        if target.known_id:
            snapshot = await self._account.poller.refresh(target.known_id)
            source = Source.SPEC if target.known_id == target.spec.snapshot_id else Source.STATUS
            return Observation(snapshot, source)
        if target.spec.snapshot_id:
            snapshot = await self._account.poller.refresh(target.spec.snapshot_id)
            return Observation(snapshot, Source.SPEC)
        return Observation(await self._identity_lookup(target), None)

    async def _identity_lookup(self, target: Target) -> Snapshot | None:
        """The snapshot tagged with this resource's UID, if a create already went through."""
        query = ListSnapshotsQuery(volume_id=target.spec.volume_id, name=target.snapshot_name)
        async for snapshot in self._account.client.iter_snapshots(query):
            if snapshot.metadata.get(OWNER_UID_METADATA_KEY) == target.uid:
                return snapshot
        return None

    async def create(self, target: Target) -> Snapshot:
        """POST the snapshot, always tagged with the resource's identity."""
        spec = target.spec
        if spec.volume_id is None:
            raise ValueError("a snapshot can only be created from spec.volumeID")
        metadata = dict(spec.metadata) | {
            OWNER_UID_METADATA_KEY: target.uid,
            OWNER_NAMESPACE_METADATA_KEY: target.namespace,
            OWNER_NAME_METADATA_KEY: target.name,
        }
        request = CreateSnapshotRequest(
            volume_id=spec.volume_id,
            name=target.snapshot_name,
            description=spec.description,
            force=spec.force,
            metadata=metadata,
        )
        return await self._account.client.create_snapshot(request)

    def needs_update(self, target: Target, snapshot: Snapshot) -> bool:
        """Whether name or description on EVS differ from what the spec asks for."""
        name, description = self._wanted(target, snapshot)
        return not isinstance(name, Unset) or not isinstance(description, Unset)

    async def update(self, target: Target, snapshot: Snapshot) -> Snapshot:
        """PUT only the fields that differ."""
        name, description = self._wanted(target, snapshot)
        return await self._account.client.update_snapshot(
            snapshot.id, name=name, description=description
        )

    def _wanted(self, target: Target, snapshot: Snapshot) -> tuple[str | Unset, str | Unset | None]:
        """Fields to change. A snapshot we made follows the spec fully; an adopted one only in
        the fields the spec sets, so adopting never renames or wipes a snapshot unasked."""
        ours = snapshot.metadata.get(OWNER_UID_METADATA_KEY) == target.uid
        spec = target.spec
        name: str | Unset = UNSET
        description: str | Unset | None = UNSET
        wanted_name = target.snapshot_name if ours else spec.name
        if wanted_name is not None and wanted_name != snapshot.name:
            name = wanted_name
        if (ours or spec.description is not None) and (spec.description or "") != (
            snapshot.description or ""
        ):
            description = spec.description
        return name, description

    async def delete(self, snapshot: Snapshot) -> bool:
        """DELETE the snapshot; False when EVS says it is already gone."""
        try:
            await self._account.client.delete_snapshot(snapshot.id)
        except EVSAPIError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True
