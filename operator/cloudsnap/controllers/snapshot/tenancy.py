"""Which namespaces may use a class, and which sources they may name through it
(docs/security.md): checked on every step before the finalizer and before any EVS call, so a
refused resource leaves nothing behind.

Namespace labels come in through the ``NamespaceReader`` protocol, which the operator answers from
a watch cache (``cloudsnap.kube.caches.NamespaceCache``) and the tests from a dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from cloudsnap.api import CloudSnapshotSpec
from cloudsnap.api.constants import EVS_CSI_DRIVERS
from cloudsnap.controllers.snapshot.external import Connection
from cloudsnap.controllers.snapshot.volumes import VolumeReader
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


async def admit(namespaces: NamespaceReader, conn: Connection, namespace: str) -> None:
    """Raise a blocked ClassNotAllowed failure, naming the class and the rule, when the class
    does not admit ``namespace``. Blocked: editing the class or the namespace's labels may admit
    it, and either retries the resource."""
    allowed = conn.class_spec.allowed_namespaces
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
        f"CloudSnapshotClass {conn.class_name} does not admit namespace {namespace}:"
        f" its spec.allowedNamespaces admits {offered}"
    )
    raise LocalFailure(Failure(CLASS_NOT_ALLOWED, message, Kind.BLOCKED))


async def check_source(
    volumes: VolumeReader,
    conn: Connection,
    namespace: str,
    spec: CloudSnapshotSpec,
    *,
    created: bool,
) -> None:
    """Raise a blocked SourceNotAllowed failure when the class does not let the resource name
    its source: a raw volume ID (spec.volumeIDs), a disk behind another namespace's claim, or an
    adoption (spec.adoption). ``created``: the resource already has its snapshot, so only what
    its spec still asks (an adopted snapshot's deletion) matters."""
    rules = conn.class_spec
    where = f"CloudSnapshotClass {conn.class_name}"
    if spec.snapshot_id:
        if rules.adoption == "Denied" and not created:
            _refuse(f"{where} allows no adoption by spec.snapshotID (its spec.adoption is Denied)")
        if rules.adoption == "Retain" and spec.deletion_policy == "Delete":
            _refuse(
                f"{where} lets adopted snapshots be kept only (its spec.adoption is Retain):"
                " remove spec.deletionPolicy or set it to Retain; an adopted snapshot is never"
                " deleted through this class"
            )
    if not spec.volume_id or created or rules.volume_ids == "Any":
        return
    if rules.volume_ids == "Denied":
        _refuse(
            f"{where} allows no raw volume IDs (its spec.volumeIDs is Denied): name the disk by"
            " spec.persistentVolumeClaimName"
        )
    for volume in await volumes.volumes_of_disk(spec.volume_id):
        pv = volume.get("spec") or {}
        owner = str((pv.get("claimRef") or {}).get("namespace") or "")
        if (pv.get("csi") or {}).get("driver") in EVS_CSI_DRIVERS and owner not in ("", namespace):
            name = (volume.get("metadata") or {}).get("name")
            _refuse(
                f"disk {spec.volume_id} backs PersistentVolume {name}, bound to a claim in"
                f" namespace {owner}: only that namespace may snapshot it, by its claim"
            )


def _refuse(message: str) -> None:
    raise LocalFailure(Failure(SOURCE_NOT_ALLOWED, message, Kind.BLOCKED))
