"""Pydantic model of the CloudSnapshotRestore resource (docs/restore.md).

A restore makes one new EVS disk from a snapshot, and optionally a PersistentVolume and a claim
bound to it, so a workload can mount the data a snapshot holds. Like the other models, these are
the single source of the CRD (`crdgen`): attribute docstrings are what `kubectl explain` shows and
the CEL rules are what the API server enforces.
"""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from cloudsnap.api.constants import (
    API_VERSION,
    RESTORE_DEFAULT_DELETION_POLICY,
    RESTORE_KIND,
)
from cloudsnap.api.models import (
    DNS_SUBDOMAIN_PATTERN,
    MAX_CONDITIONS,
    UUID_PATTERN,
    AccountRef,
    ClassName,
    Condition,
    DeletionPolicy,
    EVSName,
    JsonDict,
    ObjectMeta,
    SnapshotDescription,
    SnapshotMetadata,
    StatusError,
    StatusModel,
    _fixed_at_creation,
    _Model,
    cel,
    lower_case_id,
    map_list,
    validations,
)
from cloudsnap.api.text import Fitted
from cloudsnap.utc import UTCDateTime

MAX_DISK_GB = 32768
"""The largest EVS data disk, in GB."""
AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
RestorePhase = Literal[
    "Pending", "Creating", "Binding", "SafetySnapshot", "RollingBack", "Ready", "Failed", "Deleting"
]

_SNAPSHOT_NAME_SET = "has(self.snapshotName)"
_SNAPSHOT_ID_SET = "has(self.snapshotID)"


class RestoreClaim(_Model):
    """A PersistentVolumeClaim to make for the new disk, bound to a PersistentVolume the operator
    makes for it (static provisioning through the EVS CSI driver disk.csi.everest.io)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Name of the claim, in the restore's namespace. A claim of that name that the operator did
    not make is never touched: the restore waits, blocked, naming it."""
    storage_class_name: Annotated[str, StringConstraints(max_length=253)] = Field(
        "", alias="storageClassName"
    )
    """storageClassName of the PersistentVolume and the claim; empty binds them statically,
    outside any storage class."""
    access_modes: list[AccessMode] = Field(
        ["ReadWriteOnce"], alias="accessModes", min_length=1, max_length=4
    )
    """Access modes of the PersistentVolume and the claim. An EVS disk attaches to one node at a
    time, so ReadWriteOnce (the default) or ReadWriteOncePod."""


class NewVolume(_Model):
    """The new EVS disk to make from the snapshot; unset fields follow the snapshot's source
    disk."""

    availability_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = (
        Field(None, alias="availabilityZone")
    )
    """Availability zone of the new disk, e.g. cn-north-4a. Defaults to the source disk's."""
    volume_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, alias="volumeType"
    )
    """EVS disk type (SATA, SAS, SSD, GPSSD, ESSD, ...). Defaults to the source disk's."""
    size: int | None = Field(None, ge=1, le=MAX_DISK_GB)
    """Size of the new disk in GB, at least the snapshot's. Defaults to the snapshot's size."""
    name: EVSName | None = None
    """Name of the new disk (EVS takes at most 64 characters). Defaults to
    "<namespace>-<name>" of this restore, shortened to 64 characters with a digest."""
    description: SnapshotDescription | None = None
    """Description of the new disk, at most 255 bytes in UTF-8."""
    metadata: SnapshotMetadata = Field(default_factory=dict)
    """Metadata (string to string) stored on the new disk. At most 50 entries, keys and values at
    most 255 characters; keys must not start with __system__ (EVS) or cloudsnap.io/ (the
    operator tags the disk with this restore's UID, namespace and name under that prefix)."""
    claim: RestoreClaim | None = None
    """A PersistentVolume and a PersistentVolumeClaim to make for the new disk, so a pod can
    mount it; without it only the disk is made."""


def _target_fixed(field: str) -> JsonDict:
    """A transition rule refusing any change of the target ``field``, its adding or removal."""
    return cel(
        f"has(self.{field}) == has(oldSelf.{field})"
        f" && (!has(self.{field}) || self.{field} == oldSelf.{field})",
        f"{field} is immutable: a restore has one target; create another restore for another",
        field_path=f".{field}",
    )


class Rollback(_Model):
    """Roll the snapshot's data back onto its own source disk (the only disk EVS rolls a snapshot
    back onto). The disk must be detached (available); what it holds now is kept first in a
    safety snapshot, so that the rollback can be undone by a restore from it."""

    safety_snapshot: bool = Field(True, alias="safetySnapshot")
    """Take a CloudSnapshot of the disk (deletionPolicy Retain, named "<restore>-safety") and
    wait for it to be Ready before rolling back; false rolls back without one."""


class CloudSnapshotRestoreSpec(_Model):
    """Desired state of a CloudSnapshotRestore: which snapshot to restore and the disk to make
    from it. The source and the target are immutable."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"{_SNAPSHOT_NAME_SET} != {_SNAPSHOT_ID_SET}",
                "exactly one of spec.snapshotName and spec.snapshotID is required",
            ),
            cel(
                f"!has(self.className) || {_SNAPSHOT_ID_SET}",
                "spec.className goes with spec.snapshotID: a CloudSnapshot named by"
                " spec.snapshotName is restored with the class it was made with",
                field_path=".className",
            ),
            _fixed_at_creation("snapshotName", "''"),
            _fixed_at_creation("snapshotID", "''"),
            _fixed_at_creation("className", "''"),
            cel(
                "has(self.newVolume) != has(self.rollback)",
                "exactly one of spec.newVolume and spec.rollback is required",
            ),
            _target_fixed("newVolume"),
            _target_fixed("rollback"),
        )
    )

    snapshot_name: str | None = Field(
        None, alias="snapshotName", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN
    )
    """Name of a CloudSnapshot in this namespace to restore; it must be Ready. Exactly one of
    snapshotName and snapshotID is set; immutable."""
    snapshot_id: str | None = Field(None, alias="snapshotID", pattern=UUID_PATTERN)
    """ID (UUID, lower case) of an EVS snapshot the cluster does not track, instead of
    snapshotName; it must be available. Immutable."""
    class_name: ClassName | None = Field(None, alias="className")
    """With snapshotID: the CloudSnapshotClass (account, project, region) the snapshot lives in;
    when omitted, the default class. Immutable."""
    new_volume: NewVolume | None = Field(None, alias="newVolume")
    """A new disk to make from the snapshot. Exactly one of newVolume and rollback is set;
    immutable."""
    rollback: Rollback | None = None
    """Roll the snapshot back onto its own source disk instead of making a new one.
    Immutable."""
    deletion_policy: DeletionPolicy = Field(RESTORE_DEFAULT_DELETION_POLICY, alias="deletionPolicy")
    """What happens to the disk, PersistentVolume and claim this restore made when it is deleted:
    Retain keeps them, Delete deletes them (the claim and volume first, then the disk)."""

    @field_validator("snapshot_id", mode="before")
    @classmethod
    def _as_evs_writes_it(cls, value: object) -> object:
        """See `lower_case_id`."""
        return lower_case_id(value)


class CloudSnapshotRestoreStatus(StatusModel):
    """Observed state of a CloudSnapshotRestore."""

    phase: RestorePhase | None = None
    """Pending (checking the input), Creating (EVS is making the disk), Binding (the claim waits
    for its volume), SafetySnapshot (a rollback waits for its safety snapshot), RollingBack,
    Ready, Failed (the disk went into error, or the disk, volume or claim it made was deleted
    behind its back) or Deleting."""
    snapshot_id: Annotated[str, Fitted(64)] | None = Field(None, alias="snapshotID")
    """ID of the EVS snapshot restored (spec.snapshotID, or the one of spec.snapshotName)."""
    volume_id: Annotated[str, Fitted(64)] | None = Field(None, alias="volumeID")
    """ID of the EVS disk this restore made (written as soon as EVS names it), or for a rollback
    the snapshot's own disk."""
    safety_snapshot_name: Annotated[str, Fitted(253)] | None = Field(
        None, alias="safetySnapshotName"
    )
    """For a rollback: the CloudSnapshot of the disk taken before it, to undo it with."""
    rolled_back_at: UTCDateTime | None = Field(None, alias="rolledBackAt")
    """For a rollback: when EVS was asked to roll the disk back (asked once), or when an
    unanswered ask was seen to take effect."""
    rollback_requested_at: UTCDateTime | None = Field(None, alias="rollbackRequestedAt")
    """For a rollback: when the rollback was sent, kept until EVS answers it. A rollback whose
    answer was lost is sent again only if the disk stays unchanged (rollbackDiskUpdatedAt) for
    the create-doubt time after it: a rollback is never applied twice."""
    rollback_disk_updated_at: UTCDateTime | None = Field(None, alias="rollbackDiskUpdatedAt")
    """The disk's updated_at when the rollback was sent: a later one shows it took effect."""
    job_id: Annotated[str, Fitted(64)] | None = Field(None, alias="jobID")
    """ID of the EVS job making the disk."""
    persistent_volume_name: Annotated[str, Fitted(253)] | None = Field(
        None, alias="persistentVolumeName"
    )
    """The PersistentVolume made for the disk (with spec.newVolume.claim)."""
    claim_name: Annotated[str, Fitted(253)] | None = Field(None, alias="claimName")
    """The PersistentVolumeClaim made for the disk (with spec.newVolume.claim)."""
    account: AccountRef | None = None
    """Where the disk lives: written with the first create request."""
    create_requested_at: UTCDateTime | None = Field(None, alias="createRequestedAt")
    """When the disk create was first sent. EVS answers a repeat of it within 8 hours with the
    first one's job (the request carries an idempotency token derived from this restore's UID)."""
    observed_generation: int | None = Field(None, alias="observedGeneration", ge=0)
    """metadata.generation of the spec the operator last reconciled."""
    conditions: list[Condition] = Field(
        default_factory=list, max_length=MAX_CONDITIONS, json_schema_extra=map_list("type")
    )
    """Ready (the disk is available and, with a claim, the claim is bound), Synced (the last step
    succeeded), and Reconciling or Stalled while so."""
    error: StatusError | None = None
    """The current error, if any; cleared when a step succeeds."""


class CloudSnapshotRestore(_Model):
    """A restore of an EVS snapshot to a new disk (and optionally a PersistentVolumeClaim bound to
    it): the operator makes exactly one disk per restore, tagged with the restore's UID."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    """Versioned schema of this representation of the object."""
    kind: str = RESTORE_KIND
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: CloudSnapshotRestoreSpec
    """Desired state: the snapshot and the disk to make from it."""
    status: CloudSnapshotRestoreStatus = Field(default_factory=CloudSnapshotRestoreStatus)
    """Observed state of the restore and its disk."""
