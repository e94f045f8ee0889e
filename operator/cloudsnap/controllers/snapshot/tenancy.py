"""Which sources a CloudSnapshot may name through its class (docs/security.md): a raw volume ID
(spec.volumeIDs), a disk behind another namespace's claim, an adoption (spec.adoption). The
namespace rule and the claim lookup are shared with the other controllers
(``cloudsnap.controllers.tenancy``).
"""

from __future__ import annotations

from cloudsnap.api.models import CloudSnapshotSpec
from cloudsnap.controllers.snapshot.external import Connection
from cloudsnap.controllers.tenancy import DiskVolumes, refuse_foreign_disk, refuse_source


async def check_source(
    volumes: DiskVolumes,
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
            refuse_source(
                f"{where} allows no adoption by spec.snapshotID (its spec.adoption is Denied)"
            )
        if rules.adoption == "Retain" and spec.deletion_policy == "Delete":
            refuse_source(
                f"{where} lets adopted snapshots be kept only (its spec.adoption is Retain):"
                " remove spec.deletionPolicy or set it to Retain; an adopted snapshot is never"
                " deleted through this class"
            )
    if not spec.volume_id or created or rules.volume_ids == "Any":
        return
    if rules.volume_ids == "Denied":
        refuse_source(
            f"{where} allows no raw volume IDs (its spec.volumeIDs is Denied): name the disk by"
            " spec.persistentVolumeClaimName"
        )
    await refuse_foreign_disk(volumes, spec.volume_id, namespace, may="snapshot it, by its claim")
