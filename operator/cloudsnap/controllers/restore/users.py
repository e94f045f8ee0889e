"""Who holds a disk a rollback waits for: the PersistentVolumes of the disk, the claims bound to
them, and the pods that mount those claims, so that the DiskInUse message says what to stop.

Looked up only while a rollback is blocked on an attached disk: the volumes from the operator's
PersistentVolume cache (the ``DiskVolumes`` the tenancy rules read), the pods with one list call
in each claim's namespace, filtered here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cloudsnap.api.constants import EVS_CSI_DRIVERS
from cloudsnap.controllers.tenancy import DiskVolumes

MAX_PODS_NAMED = 5
"""Pods named per claim in a message; more are counted, not named."""


class PodReader(Protocol):
    """The pods of a namespace (raw bodies)."""

    async def pods_in(self, namespace: str) -> Sequence[Mapping[str, Any]] | None:
        """The pods of the namespace (at least their metadata.name and spec.volumes); None
        where they may not be listed."""
        ...


@dataclass(frozen=True)
class DiskUser:
    """A PersistentVolume of the disk, the claim bound to it (namespace, name) and the pods
    ("namespace/name", sorted) that mount that claim (None: they may not be listed)."""

    volume: str
    claim: tuple[str, str] | None
    pods: tuple[str, ...] | None


async def disk_users(volumes: DiskVolumes, pods: PodReader, disk_id: str) -> list[DiskUser]:
    """The EVS CSI volumes of the disk, with their claims and the pods mounting them."""
    users = []
    for volume in await volumes.volumes_of_disk(disk_id):
        spec = volume.get("spec") or {}
        if (spec.get("csi") or {}).get("driver") not in EVS_CSI_DRIVERS:
            continue
        name = str((volume.get("metadata") or {}).get("name") or "")
        ref = spec.get("claimRef") or {}
        if not (ref.get("namespace") and ref.get("name")):
            users.append(DiskUser(name, None, ()))
            continue
        namespace, claim = str(ref["namespace"]), str(ref["name"])
        listed = await pods.pods_in(namespace)
        if listed is None:
            users.append(DiskUser(name, (namespace, claim), None))
            continue
        mounting = [pod for pod in listed if _mounts(pod, claim)]
        names = sorted(f"{namespace}/{(pod.get('metadata') or {}).get('name')}" for pod in mounting)
        users.append(DiskUser(name, (namespace, claim), tuple(names)))
    return sorted(users, key=lambda user: user.volume)


def _mounts(pod: Mapping[str, Any], claim: str) -> bool:
    """Whether the pod names the claim in one of its volumes."""
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        if ((volume or {}).get("persistentVolumeClaim") or {}).get("claimName") == claim:
            return True
    return False


def describe_users(users: Sequence[DiskUser]) -> str:
    """The users as one clause, e.g. "it backs PersistentVolume pv-a bound to claim ns/data,
    used by pods ns/web-0, ns/web-1"; "" when the disk backs no PersistentVolume."""
    parts = []
    for user in users:
        part = f"PersistentVolume {user.volume}"
        if user.claim is not None:
            part += f" bound to claim {user.claim[0]}/{user.claim[1]}"
            if user.pods is None:
                part += " (the operator may not list that namespace's pods)"
            elif user.pods:
                named = ", ".join(user.pods[:MAX_PODS_NAMED])
                more = len(user.pods) - MAX_PODS_NAMED
                named += f" and {more} more" if more > 0 else ""
                part += f", used by pod{'s' if len(user.pods) > 1 else ''} {named}"
            else:
                part += ", mounted by no pod of that namespace"
        parts.append(part)
    return f"it backs {'; '.join(parts)}" if parts else ""
