"""The EVS implementation of the restore controller's disk client: disk statuses, the owner tags
on every disk a restore makes, jobs, and what EVS's refusals of a disk create mean."""

from __future__ import annotations

import dataclasses

from cloudsnap.api.constants import (
    OWNER_NAME_METADATA_KEY,
    OWNER_NAMESPACE_METADATA_KEY,
    OWNER_UID_METADATA_KEY,
)
from cloudsnap.controllers.restore.external import (
    Disk,
    DiskConnection,
    DiskRequest,
    DiskState,
    Job,
    SourceSnapshot,
)
from cloudsnap.evs.models import CreateVolumeRequest, ListVolumesQuery
from cloudsnap.evs.models import Volume as EVSVolume
from cloudsnap.providers.evs.accounts import Account, Accounts
from cloudsnap.providers.evs.connector import account_ref, failing_as, unless_gone
from cloudsnap.runtime.failures import ExternalError, Failure, Kind

_STATES = {
    "creating": DiskState.CREATING,
    "downloading": DiskState.CREATING,
    "available": DiskState.READY,
    "in-use": DiskState.READY,
    "error": DiskState.FAILED,
    "error_restoring": DiskState.FAILED,
    "deleting": DiskState.DELETING,
}
# What EVS's refusals of a disk create mean for a restore (docs/restore.md), and whether a change
# outside the restore (a quota raised) can let it through.
_CREATE_REFUSALS = {
    "EVS.1036": (
        "spec.newVolume.availabilityZone: EVS knows no such availability zone",
        Kind.INVALID,
    ),
    "EVS.1020": ("spec.newVolume.volumeType: EVS knows no such disk type", Kind.INVALID),
    "EVS.2054": (
        "spec.newVolume.availabilityZone: EVS makes a disk only in its snapshot's zone",
        Kind.INVALID,
    ),
    "EVS.2096": (
        "spec.newVolume.volumeType: EVS makes a disk only of its snapshot's disk type",
        Kind.INVALID,
    ),
    "EVS.1010": (
        "spec.newVolume.size: EVS refused the size (at least the snapshot's)",
        Kind.INVALID,
    ),
    "EVS.1034": ("the account's disk quota is used up; raise it or free a disk", Kind.BLOCKED),
    "EVS.2219": (
        "EVS holds this restore's token for another request: the new disk's defaults (its source"
        " disk's zone or type) changed since the first create",
        Kind.BLOCKED,
    ),
    "EVS.2220": (
        "the create's token expired (8 hours) before a disk was made; recreate the restore",
        Kind.INVALID,
    ),
}
FAILED_JOB = "JobFailed"


class EVSDiskConnector:
    """Connects a class to a disk client of its EVS account (a DiskConnector)."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    async def connect(self, class_name: str | None) -> DiskConnection:
        """The class's account and a disk client bound to it; LocalFailure when unusable."""
        account = await self._accounts.resolve(class_name)
        return DiskConnection(
            account.class_name, account_ref(account), account.spec, EVSDisks(account)
        )


class EVSDisks:
    """Disk operations over one account's EVS client (a DiskClient)."""

    def __init__(self, account: Account) -> None:
        self._account = account

    async def snapshot(self, snapshot_id: str) -> SourceSnapshot | None:
        """A direct show; None on EVS's 404."""
        client = self._account.client
        found = await unless_gone(self._account, "show", client.show_snapshot(snapshot_id))
        if found is None:
            return None
        return SourceSnapshot(
            id=found.id,
            available=found.status == "available",
            phase=found.status,
            size=found.size or 0,
            volume_id=found.volume_id,
            owner_namespace=found.metadata.get(OWNER_NAMESPACE_METADATA_KEY),
            owner_name=found.metadata.get(OWNER_NAME_METADATA_KEY),
        )

    async def disk(self, volume_id: str) -> Disk | None:
        """A direct show; None on EVS's 404."""
        client = self._account.client
        found = await unless_gone(self._account, "show", client.show_volume(volume_id))
        return None if found is None else _disk(found)

    async def find_owned(self, owner_uid: str) -> list[Disk]:
        """The disks EVS lists with this owner's tag (one page: a restore makes one disk)."""
        query = ListVolumesQuery(metadata={OWNER_UID_METADATA_KEY: owner_uid})
        with failing_as(self._account, "list"):
            page = await self._account.client.list_volumes(query)
        return [
            _disk(v) for v in page.volumes if v.metadata.get(OWNER_UID_METADATA_KEY) == owner_uid
        ]

    async def create(self, request: DiskRequest, token: str) -> str:
        """POST the disk, always tagged with its owner, under the idempotency token."""
        owner = request.owner
        body = CreateVolumeRequest(
            availability_zone=request.availability_zone,
            volume_type=request.volume_type,
            size=request.size,
            snapshot_id=request.snapshot_id,
            name=request.name,
            description=request.description,
            metadata=dict(request.metadata)
            | {
                OWNER_UID_METADATA_KEY: owner.uid,
                OWNER_NAMESPACE_METADATA_KEY: owner.namespace,
                OWNER_NAME_METADATA_KEY: owner.name,
            },
        )
        try:
            with failing_as(self._account, "create"):
                created = await self._account.client.create_volume(body, token)
        except ExternalError as exc:
            raise ExternalError(_explained(exc.failure)) from None
        return created.job_id

    async def job(self, job_id: str) -> Job:
        """The job; a FAIL carries EVS's error code and reason."""
        with failing_as(self._account, "show"):
            found = await self._account.client.show_job(job_id)
        failure = None
        if found.status == "FAIL":
            code = found.error_code or FAILED_JOB
            failure = Failure(code, found.fail_reason or "the job failed", Kind.BLOCKED)
        return Job(
            id=found.job_id,
            done=found.status in ("SUCCESS", "FAIL"),
            volume_id=found.entities.volume_id,
            failure=failure,
        )

    async def delete(self, volume_id: str) -> bool:
        """DELETE the disk; False on EVS's 404 (already gone)."""
        client = self._account.client
        job = await unless_gone(self._account, "delete_volume", client.delete_volume(volume_id))
        return job is not None

    async def rollback(self, snapshot_id: str, volume_id: str) -> None:
        """POST the rollback of the snapshot onto its disk."""
        with failing_as(self._account, "rollback"):
            await self._account.client.rollback_snapshot(snapshot_id, volume_id)


def _disk(volume: EVSVolume) -> Disk:
    return Disk(
        id=volume.id,
        state=_STATES.get(volume.status, DiskState.BUSY),
        phase=volume.status,
        size=volume.size,
        availability_zone=volume.availability_zone,
        volume_type=volume.volume_type,
        owner_uid=volume.metadata.get(OWNER_UID_METADATA_KEY),
        updated_at=volume.updated_at,
    )


def _explained(failure: Failure) -> Failure:
    """A refused disk create with what it means for the restore before EVS's own words."""
    known = _CREATE_REFUSALS.get(failure.code)
    if known is None:
        return failure
    meaning, kind = known
    message = f"{meaning}; EVS says: {failure.message}"
    return dataclasses.replace(failure, message=message, kind=kind)
