"""The tenancy rules every controller shares (docs/security.md): whether a class admits a
namespace (spec.allowedNamespaces), and whether a disk belongs to another namespace, being behind
a PersistentVolume bound to a claim there. Each controller checks them before its finalizer and
before any EVS call the resource would not otherwise be entitled to, so a refused resource leaves
nothing behind.

Namespace labels come in through the ``NamespaceReader`` protocol, which the operator answers from
a watch cache (``cloudsnap.kube.caches.NamespaceCache``) and the tests from a dictionary; the
volumes of a disk through ``DiskVolumes`` (``cloudsnap.kube.caches.VolumeSources``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol

from cloudsnap.api.constants import EVS_CSI_DRIVERS
from cloudsnap.api.models import CloudSnapshotClassSpec
from cloudsnap.runtime.failures import (
    CACHE_NOT_SYNCED,
    CLASS_NOT_ALLOWED,
    SOURCE_NOT_ALLOWED,
    Failure,
    Kind,
    LocalFailure,
)

# A refusal names at most this many of the namespaces a class admits by name.
NAMES_SHOWN = 5


class NamespaceReader(Protocol):
    """Namespaces' labels, as Kubernetes has them."""

    async def get_namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The namespace's labels, or None when there is no such namespace."""
        ...


class DiskVolumes(Protocol):
    """The PersistentVolumes of a disk, as Kubernetes has them (raw bodies)."""

    async def volumes_of_disk(self, disk_id: str) -> Sequence[Mapping[str, Any]]:
        """The volumes whose CSI volumeHandle is this disk ID (any case), of any driver."""
        ...


async def admit(
    namespaces: NamespaceReader, class_name: str, rules: CloudSnapshotClassSpec, namespace: str
) -> None:
    """Raise a blocked ClassNotAllowed failure, naming the class and the rule, when the class
    does not admit ``namespace``. Blocked: editing the class or the namespace's labels may admit
    it, and either retries the resource."""
    allowed = rules.allowed_namespaces
    if allowed is None:
        return
    labels = None
    if namespace not in allowed.names and allowed.selector is not None:
        labels = await namespaces.get_namespace_labels(namespace)
        if labels is None:
            # The resource's namespace exists: the cache has not seen it yet. A new namespace
            # retries nothing when it appears (namespaces come and go all day), so look again soon.
            message = f"namespace {namespace} is not yet in the operator's namespace cache"
            raise LocalFailure(Failure(CACHE_NOT_SYNCED, message, Kind.TRANSIENT))
    if allowed.admits(namespace, labels):
        return
    rule = []
    if allowed.names:
        shown = ", ".join(allowed.names[:NAMES_SHOWN])
        more = len(allowed.names) - NAMES_SHOWN
        rule.append(f"names {shown}" + (f" and {more} more" if more > 0 else ""))
    if allowed.selector is not None:
        rule.append("a namespace selector")
    offered = " or ".join(rule) or "no namespace"
    message = (
        f"CloudSnapshotClass {class_name} does not admit namespace {namespace}:"
        f" its spec.allowedNamespaces admits {offered}"
    )
    raise LocalFailure(Failure(CLASS_NOT_ALLOWED, message, Kind.BLOCKED))


async def refuse_foreign_disk(
    volumes: DiskVolumes, disk_id: str, namespace: str, *, may: str, about: str = ""
) -> None:
    """Raise SourceNotAllowed when the disk backs an EVS CSI PersistentVolume bound to a claim
    outside ``namespace``: the disk is that namespace's, and only it ``may`` (the message ends
    with that; ``about`` begins it)."""
    for volume in await volumes.volumes_of_disk(disk_id):
        pv = volume.get("spec") or {}
        owner = str((pv.get("claimRef") or {}).get("namespace") or "")
        if (pv.get("csi") or {}).get("driver") in EVS_CSI_DRIVERS and owner not in ("", namespace):
            name = (volume.get("metadata") or {}).get("name")
            refuse_source(
                f"{about}disk {disk_id} backs PersistentVolume {name}, bound to a claim in"
                f" namespace {owner}: only that namespace may {may}"
            )


def refuse_source(message: str) -> NoReturn:
    """Raise the blocked SourceNotAllowed failure: editing the class may allow the source, and
    a class change retries the resource."""
    raise LocalFailure(Failure(SOURCE_NOT_ALLOWED, message, Kind.BLOCKED))
