"""What a restore may read and roll back through its class (docs/security.md, docs/restore.md).

The class must admit the restore's namespace (``cloudsnap.controllers.tenancy.admit``). A raw
spec.snapshotID reads a snapshot by ID, so it follows the class's spec.volumeIDs: Denied refuses
it; Allowed reads the snapshot and refuses it when a CloudSnapshot of another namespace made it
(the operator's owner tags) or its disk backs a PersistentVolume bound to a claim in another
namespace; Any lets the account's every snapshot be restored. A rollback overwrites the
snapshot's own disk, so whatever the source, that disk must not be another namespace's.
"""

from __future__ import annotations

from cloudsnap.api.models import CloudSnapshotClassSpec
from cloudsnap.controllers.restore.external import SourceSnapshot
from cloudsnap.controllers.tenancy import DiskVolumes, refuse_foreign_disk, refuse_source


def snapshot_ids_allowed(class_name: str, rules: CloudSnapshotClassSpec) -> bool:
    """Whether the class lets a raw snapshot ID through without reading it first (Any); raise
    SourceNotAllowed when it lets none through (Denied)."""
    if rules.volume_ids == "Denied":
        refuse_source(
            f"CloudSnapshotClass {class_name} allows no raw IDs (its spec.volumeIDs is Denied):"
            " restore a CloudSnapshot of this namespace by spec.snapshotName"
        )
    return rules.volume_ids == "Any"


async def check_snapshot_by_id(
    volumes: DiskVolumes, class_name: str, namespace: str, snapshot: SourceSnapshot
) -> None:
    """Raise SourceNotAllowed when the snapshot read by ID is another namespace's: made by a
    CloudSnapshot there, or of a disk behind a claim there (the class's volumeIDs is Allowed)."""
    rule = f"CloudSnapshotClass {class_name} has spec.volumeIDs Allowed"
    owner = snapshot.owner_namespace
    if owner and owner != namespace:
        refuse_source(
            f"EVS snapshot {snapshot.id} was made by CloudSnapshot {owner}/{snapshot.owner_name}:"
            f" only namespace {owner} may restore it ({rule}: a raw snapshot ID may not name"
            " another namespace's snapshot)"
        )
    await refuse_foreign_disk(
        volumes,
        snapshot.volume_id,
        namespace,
        about=f"EVS snapshot {snapshot.id} is of another namespace's disk: ",
        may=f"restore it ({rule}: a raw snapshot ID may not name another namespace's disk)",
    )


async def check_rollback_target(
    volumes: DiskVolumes, class_name: str, namespace: str, disk_id: str
) -> None:
    """Raise SourceNotAllowed when the disk a rollback would overwrite is another namespace's."""
    await refuse_foreign_disk(
        volumes,
        disk_id,
        namespace,
        may=f"roll it back (whatever CloudSnapshotClass {class_name} allows, a rollback never"
        " overwrites another namespace's disk)",
    )
