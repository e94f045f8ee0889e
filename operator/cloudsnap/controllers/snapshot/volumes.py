"""Which EVS disk a PersistentVolumeClaim stands for: claim, then its bound PersistentVolume,
then that volume's CSI volumeHandle (docs/lifecycle.md).

The reconcile layer reads claims and volumes through the ``VolumeReader`` protocol, which the
operator answers from list+watch caches (``cloudsnap.kube.writer.VolumeSources``) and the tests from
dictionaries. A claim that cannot be resolved yet is a *blocked* failure that names the claim (and
the volume) and says which objects to wait for: a change to any of them retries the resource at
once, besides the slow blocked retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cloudsnap.api.constants import EVS_CSI_DRIVERS
from cloudsnap.api.models import UUID_PATTERN
from cloudsnap.controllers.tenancy import DiskVolumes
from cloudsnap.runtime.failures import (
    CLAIM_NOT_BOUND,
    CLAIM_NOT_FOUND,
    UNSUPPORTED_VOLUME,
    Failure,
    Kind,
)

_DISK_ID = re.compile(UUID_PATTERN, re.IGNORECASE)  # read in lower case, as EVS writes IDs


class VolumeReader(DiskVolumes, Protocol):
    """PersistentVolumeClaims and PersistentVolumes as Kubernetes has them (raw bodies)."""

    async def get_claim(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The claim, or None when there is none."""
        ...

    async def get_volume(self, name: str) -> Mapping[str, Any] | None:
        """The (cluster-scoped) volume, or None when there is none."""
        ...


@dataclass(frozen=True)
class ResolvedVolume:
    """The disk behind a claim, and the PersistentVolume that said so."""

    volume_id: str
    persistent_volume: str


class Unresolved(Exception):
    """The claim does not lead to an EVS disk (yet): why, and which objects' change may fix it."""

    def __init__(self, failure: Failure, waits_for: tuple[str, ...]) -> None:
        super().__init__(failure.describe())
        self.failure = failure
        self.waits_for = waits_for


def claim_to_resolve(claim: str | None, status: Mapping[str, Any]) -> str | None:
    """The claim a step of a resource resolves: the one its spec names, until its status (as
    stored) pins a disk or knows a snapshot, after which the claim is never looked at again."""
    if claim and not (status.get("volumeID") or status.get("snapshotID")):
        return claim
    return None


def claim_key(namespace: str, name: str) -> str:
    """The key a resource waiting on this PersistentVolumeClaim is woken by."""
    return f"persistentvolumeclaims/{namespace}/{name}"


def volume_key(name: str) -> str:
    """The key a resource waiting on this PersistentVolume is woken by."""
    return f"persistentvolumes/{name}"


async def resolve_claim(reader: VolumeReader, namespace: str, claim: str) -> ResolvedVolume:
    """The EVS disk the claim is bound to; Unresolved (blocked) when it is missing, not bound,
    or bound to a volume that is not an EVS CSI disk.

    May raise LocalFailure when the reader cannot answer (its cache is not synced).
    """
    what = f"PersistentVolumeClaim {namespace}/{claim}"
    waits_for: tuple[str, ...] = (claim_key(namespace, claim),)
    body = await reader.get_claim(namespace, claim)
    if body is None:
        raise Unresolved(_blocked(CLAIM_NOT_FOUND, f"{what} does not exist"), waits_for)
    phase = str((body.get("status") or {}).get("phase") or "")
    bound_to = str((body.get("spec") or {}).get("volumeName") or "")
    if phase != "Bound" or not bound_to:
        message = f"{what} is not bound to a PersistentVolume yet (phase {phase or 'unknown'})"
        raise Unresolved(_blocked(CLAIM_NOT_BOUND, message), waits_for)
    waits_for = (*waits_for, volume_key(bound_to))
    volume = await reader.get_volume(bound_to)
    if volume is None or not _claimed_by(volume, body):
        message = f"{what} names PersistentVolume {bound_to}, which is not bound to it"
        raise Unresolved(_blocked(CLAIM_NOT_BOUND, message), waits_for)
    csi = (volume.get("spec") or {}).get("csi") or {}
    driver = str(csi.get("driver") or "")
    handle = str(csi.get("volumeHandle") or "")
    drivers = " or ".join(EVS_CSI_DRIVERS)
    if not driver:
        message = (
            f"{what} is bound to PersistentVolume {bound_to}, which is not a CSI volume; only"
            f" disks of the EVS CSI drivers ({drivers}) can be snapshotted"
        )
        raise Unresolved(_blocked(UNSUPPORTED_VOLUME, message), waits_for)
    if driver not in EVS_CSI_DRIVERS:
        message = (
            f"{what} is bound to PersistentVolume {bound_to} of CSI driver {driver}, not an EVS"
            f" disk ({drivers})"
        )
        raise Unresolved(_blocked(UNSUPPORTED_VOLUME, message), waits_for)
    if not _DISK_ID.match(handle):
        message = (
            f"{what} is bound to PersistentVolume {bound_to}, whose volumeHandle {handle!r} is"
            " not an EVS disk ID"
        )
        raise Unresolved(_blocked(UNSUPPORTED_VOLUME, message), waits_for)
    return ResolvedVolume(volume_id=handle.lower(), persistent_volume=bound_to)


def _claimed_by(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """Whether the volume's claimRef names this claim (and this incarnation of it, if both say)."""
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    meta = claim.get("metadata") or {}
    same_name = (ref.get("namespace"), ref.get("name")) == (meta.get("namespace"), meta.get("name"))
    uids = (ref.get("uid"), meta.get("uid"))
    return same_name and (None in uids or uids[0] == uids[1])


def _blocked(code: str, message: str) -> Failure:
    return Failure(code, message, Kind.BLOCKED)
