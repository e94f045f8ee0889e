"""Async client for Huawei Cloud EVS snapshots, disks and jobs; knows nothing of Kubernetes."""

from cloudsnap.evs.auth import AKSKAuth, TokenAuth
from cloudsnap.evs.client import UNSET, EVSClient, Observer, Unset
from cloudsnap.evs.errors import (
    EVSAPIError,
    EVSConnectionError,
    EVSError,
    EVSNotSent,
    EVSResponseError,
    EVSTimeoutError,
)
from cloudsnap.evs.models import (
    CreatedVolume,
    CreateSnapshotRequest,
    CreateVolumeRequest,
    Job,
    JobEntities,
    ListSnapshotsQuery,
    ListVolumesQuery,
    Snapshot,
    SnapshotPage,
    Volume,
    VolumePage,
)

__all__ = [
    "UNSET",
    "AKSKAuth",
    "CreateSnapshotRequest",
    "CreateVolumeRequest",
    "CreatedVolume",
    "EVSAPIError",
    "EVSClient",
    "EVSConnectionError",
    "EVSError",
    "EVSNotSent",
    "EVSResponseError",
    "EVSTimeoutError",
    "Job",
    "JobEntities",
    "ListSnapshotsQuery",
    "ListVolumesQuery",
    "Observer",
    "Snapshot",
    "SnapshotPage",
    "TokenAuth",
    "Unset",
    "Volume",
    "VolumePage",
]
