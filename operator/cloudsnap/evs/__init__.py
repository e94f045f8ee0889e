"""Async client for Huawei Cloud EVS snapshots; knows nothing of Kubernetes."""

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
from cloudsnap.evs.models import CreateSnapshotRequest, ListSnapshotsQuery, Snapshot, SnapshotPage

__all__ = [
    "UNSET",
    "AKSKAuth",
    "CreateSnapshotRequest",
    "EVSAPIError",
    "EVSClient",
    "EVSConnectionError",
    "EVSError",
    "EVSNotSent",
    "EVSResponseError",
    "EVSTimeoutError",
    "ListSnapshotsQuery",
    "Observer",
    "Snapshot",
    "SnapshotPage",
    "TokenAuth",
    "Unset",
]
