"""The pure decisions of a restore: which snapshot a source names, what disk to ask for, the
create's idempotency token, and the PersistentVolume and claim that expose the disk. No I/O."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cloudsnap.api.constants import API_VERSION, EVEREST_CSI_DRIVER, GROUP, READY, SNAPSHOT_KIND
from cloudsnap.api.naming import default_disk_name
from cloudsnap.api.objects import Owner, condition_in
from cloudsnap.api.restore import NewVolume, RestoreClaim
from cloudsnap.controllers.restore.external import Disk, DiskRequest, SourceSnapshot
from cloudsnap.controllers.restore.users import DiskUser, describe_users
from cloudsnap.runtime.failures import Failure, Kind

RESTORE_UID_LABEL = f"{GROUP}/restore-uid"
"""Label on the PersistentVolume and claim a restore made: its UID. Only what carries it is ever
deleted by the restore."""
TOKEN_NAMESPACE = uuid.UUID("6f1d3b8e-2c4a-5e7f-9a0b-1c2d3e4f5a6b")
"""The UUID5 namespace of create tokens: fixed, so a token is a function of the restore's UID."""
ZONE_LABEL = "topology.kubernetes.io/zone"
FS_TYPE = "ext4"

SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
SNAPSHOT_NOT_READY = "SnapshotNotReady"
SIZE_TOO_SMALL = "SizeTooSmall"
CLAIM_EXISTS = "ClaimExists"
SNAPSHOT_EXISTS = "SnapshotExists"
DISK_NOT_FOUND = "DiskNotFound"
DISK_IN_USE = "DiskInUse"
SAFETY_SUFFIX = "safety"
DNS_NAME_MAX = 253
VOLUME_EXISTS = "VolumeExists"
VOLUME_LOST = "VolumeLost"
CLAIM_LOST = "ClaimLost"
SOURCE_DISK_UNKNOWN = "SourceDiskUnknown"


class InputError(Exception):
    """The restore cannot go on as its input stands; ``failure`` says why and what to change."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def _blocked(code: str, message: str) -> InputError:
    return InputError(Failure(code, message, Kind.BLOCKED))


def client_token(restore_uid: str) -> str:
    """The create's X-Client-Token: the same for every attempt of one restore (a repeat within
    EVS's 8 hours answers the first job), different for any other restore."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, restore_uid))


def tracked_source(namespace: str, name: str, body: Mapping[str, Any] | None) -> tuple[str, str]:
    """The EVS snapshot ID and class of a CloudSnapshot source; InputError unless it is Ready."""
    if body is None:
        raise _blocked(SNAPSHOT_NOT_FOUND, f"CloudSnapshot {namespace}/{name} does not exist")
    status = body.get("status") or {}
    snapshot_id = status.get("snapshotID")
    class_name = (status.get("account") or {}).get("className")
    if condition_in(body, READY).get("status") != "True" or not snapshot_id or not class_name:
        raise _blocked(
            SNAPSHOT_NOT_READY,
            f"CloudSnapshot {namespace}/{name} is not Ready"
            f" (phase {status.get('phase') or 'none yet'}); the restore waits for it",
        )
    return str(snapshot_id), str(class_name)


def usable(snapshot: SourceSnapshot | None) -> SourceSnapshot:
    """The snapshot, if it can be restored now; InputError saying why not."""
    if snapshot is None:
        raise _blocked(SNAPSHOT_NOT_FOUND, "the EVS snapshot does not exist in the class's account")
    if not snapshot.available:
        raise _blocked(
            SNAPSHOT_NOT_READY,
            f"EVS snapshot {snapshot.id} is {snapshot.phase}, not available; the restore waits",
        )
    return snapshot


def rollback_target(
    disk: Disk | None, snapshot: SourceSnapshot, users: Sequence[DiskUser] = ()
) -> Disk:
    """The snapshot's own disk, if EVS may roll it back now (detached); InputError otherwise,
    naming the volumes, claims and pods of ``users`` that hold it."""
    if disk is None:
        raise _blocked(DISK_NOT_FOUND, f"the snapshot's disk {snapshot.volume_id} is gone")
    if disk.phase != "available":
        held = describe_users(users)
        stop = (
            "stop them (scale to 0)" if held else "stop the workload that uses it (scale it to 0)"
        )
        raise _blocked(
            DISK_IN_USE,
            f"disk {disk.id} is {disk.phase}{': ' + held if held else ''}; {stop} and the"
            " rollback goes on (EVS rolls back only a detached, available, disk)",
        )
    return disk


def safety_snapshot_name(restore_name: str) -> str:
    """The safety CloudSnapshot of a rollback: "<restore>-safety", shortened with a digest to
    fit a name of 253 characters."""
    name = f"{restore_name}-{SAFETY_SUFFIX}"
    if len(name) <= DNS_NAME_MAX:
        return name
    digest = hashlib.sha256(restore_name.encode()).hexdigest()[:8]
    return f"{restore_name[: DNS_NAME_MAX - len(SAFETY_SUFFIX) - 10]}-{digest}-{SAFETY_SUFFIX}"


def safety_snapshot(owner: Owner, disk_id: str, class_name: str) -> dict[str, Any]:
    """The safety CloudSnapshot of the disk: kept whatever happens to the restore (Retain)."""
    return {
        "apiVersion": API_VERSION,
        "kind": SNAPSHOT_KIND,
        "metadata": {
            "name": safety_snapshot_name(owner.name),
            "namespace": owner.namespace,
            "labels": {RESTORE_UID_LABEL: owner.uid},
        },
        "spec": {
            "volumeID": disk_id,
            "className": class_name,
            "deletionPolicy": "Retain",
            "description": f"before the rollback of restore {owner.name}",
        },
    }


def disk_request(
    owner: Owner, target: NewVolume, snapshot: SourceSnapshot | None, source_disk: Disk | None
) -> DiskRequest:
    """The disk to ask for: the spec's fields, else the snapshot's size and its source disk's
    zone and type; InputError when the snapshot is unusable or the size too small."""
    snapshot = usable(snapshot)
    size = target.size if target.size is not None else snapshot.size
    if size < snapshot.size:
        raise InputError(
            Failure(
                SIZE_TOO_SMALL,
                f"spec.newVolume.size {size} GB is below the snapshot's {snapshot.size} GB",
                Kind.INVALID,
            )
        )
    zone = target.availability_zone or (source_disk.availability_zone if source_disk else None)
    volume_type = target.volume_type or (source_disk.volume_type if source_disk else None)
    if not zone or not volume_type:
        raise _blocked(
            SOURCE_DISK_UNKNOWN,
            f"the snapshot's disk {snapshot.volume_id} is gone, so the new disk's zone and type"
            " are unknown: set spec.newVolume.availabilityZone and spec.newVolume.volumeType",
        )
    return DiskRequest(
        owner=owner,
        snapshot_id=snapshot.id,
        availability_zone=zone,
        volume_type=volume_type,
        size=size,
        name=target.name or default_disk_name(owner.namespace, owner.name),
        description=target.description,
        metadata=dict(target.metadata),
    )


def volume_name(restore_uid: str) -> str:
    """The PersistentVolume a restore makes: one name per restore, so a repeated create finds
    the first one."""
    return f"cloudsnap-{restore_uid}"


def persistent_volume(owner: Owner, disk: Disk, claim: RestoreClaim) -> dict[str, Any]:
    """A static CSI PersistentVolume of the disk, reserved for the claim, kept on release (the
    restore's deletionPolicy decides the disk's fate, not the binder)."""
    spec: dict[str, Any] = {
        "capacity": {"storage": f"{disk.size}Gi"},
        "accessModes": list(claim.access_modes),
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": claim.storage_class_name,
        "volumeMode": "Filesystem",
        "csi": {"driver": EVEREST_CSI_DRIVER, "volumeHandle": disk.id, "fsType": FS_TYPE},
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": owner.namespace,
            "name": claim.name,
        },
    }
    if disk.availability_zone:
        term = {"key": ZONE_LABEL, "operator": "In", "values": [disk.availability_zone]}
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [term]}]}}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name(owner.uid), "labels": {RESTORE_UID_LABEL: owner.uid}},
        "spec": spec,
    }


def claim_body(owner: Owner, disk: Disk, claim: RestoreClaim) -> dict[str, Any]:
    """The claim, bound by name to the restore's PersistentVolume."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim.name,
            "namespace": owner.namespace,
            "labels": {RESTORE_UID_LABEL: owner.uid},
        },
        "spec": {
            "accessModes": list(claim.access_modes),
            "resources": {"requests": {"storage": f"{disk.size}Gi"}},
            "storageClassName": claim.storage_class_name,
            "volumeMode": "Filesystem",
            "volumeName": volume_name(owner.uid),
        },
    }


def made_by(body: Mapping[str, Any] | None, restore_uid: str) -> bool:
    """Whether the object carries this restore's UID label (it made it)."""
    labels = ((body or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(RESTORE_UID_LABEL) == restore_uid)


def foreign(code: str, what: str) -> InputError:
    """An object of the name the restore needs that it did not make: never touched."""
    return _blocked(code, f"{what} exists and was not made by this restore; it is left alone")


def lost(code: str, what: str, kept_disk: str | None) -> tuple[str, str]:
    """The Ready reason and message of a restore whose disk, volume or claim (``what``) was
    deleted behind its back (``kept_disk``: the disk, if it is still there). Nothing is made
    again: a disk made anew from the snapshot now would not hold what the user saw on it."""
    if kept_disk is None:
        undo = "delete the restore and create it again to restore the snapshot anew"
    else:
        undo = (
            f"disk {kept_disk} is kept; delete the restore (deletionPolicy Retain keeps the"
            " disk) and create it again for a new disk, or expose the kept disk yourself"
        )
    return code, f"{what} made by this restore was deleted; it is not made again: {undo}"
