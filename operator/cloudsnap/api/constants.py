"""Names of the custom resources and the fixed strings of the public API (docs/lifecycle.md).

Kept apart from the models so the handlers, the CRD generator and the tests all spell a group, a
plural or a reserved prefix the same way.
"""

from typing import Final

GROUP: Final = "evs.cloudsnap.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "cloudsnap"

READY: Final = "Ready"
"""The condition type that says the resource is what it asks for."""
SYNCED: Final = "Synced"
"""The condition type that says the last step reached the cloud and the API server."""

SNAPSHOT_KIND: Final = "CloudSnapshot"
SNAPSHOT_PLURAL: Final = "cloudsnapshots"
SNAPSHOT_SHORT_NAME: Final = "csnap"

CLASS_KIND: Final = "CloudSnapshotClass"
CLASS_PLURAL: Final = "cloudsnapshotclasses"
CLASS_SHORT_NAME: Final = "csnapclass"

DEFAULT_CLASS_ANNOTATION: Final = f"{GROUP}/is-default-class"
"""A class annotated with this key set to "true" serves resources that name no class."""

DEFAULT_DELETION_POLICY: Final = "Delete"
"""The policy when neither the resource nor its class chooses one."""

EVS_TEXT_MAX_BYTES: Final = 255
"""EVS limit on a snapshot's name and description, counted in UTF-8 bytes, as the API's older
pages and the SDK state it (and as the CRD enforces it)."""
EVS_NAME_MAX_CHARS: Final = 64
"""The limit on a snapshot's name that Huawei's current API pages state, in characters. Names
the operator makes up fit it; a user's longer name is sent, and explained if EVS refuses it."""
EVS_DESCRIPTION_MAX_CHARS: Final = 85
"""The limit on a snapshot's description that Huawei's current API pages state, in characters."""

RESERVED_NAME_PREFIX: Final = "autobk_snapshot_"
"""EVS gives names with this prefix to snapshots made by backups; users must not imitate them."""

RESERVED_METADATA_PREFIX: Final = "__system__"
"""EVS keeps metadata keys with this prefix (e.g. __system__encrypted) for itself."""

IDENTITY_METADATA_PREFIX: Final = "cloudsnap.io/"
"""Metadata keys with this prefix tie an EVS snapshot to its resource; only the operator sets
them, so users may not."""

OWNER_UID_METADATA_KEY: Final = f"{IDENTITY_METADATA_PREFIX}owner-uid"
OWNER_NAMESPACE_METADATA_KEY: Final = f"{IDENTITY_METADATA_PREFIX}namespace"
OWNER_NAME_METADATA_KEY: Final = f"{IDENTITY_METADATA_PREFIX}name"

SCHEDULE_KIND: Final = "CloudSnapshotSchedule"
SCHEDULE_PLURAL: Final = "cloudsnapshotschedules"
SCHEDULE_SHORT_NAME: Final = "csnapsched"

SCHEDULE_LABEL: Final = f"{GROUP}/schedule"
"""Label on a schedule's children: the schedule's name (shortened with a digest to fit)."""
SCHEDULE_UID_LABEL: Final = f"{GROUP}/schedule-uid"
"""Label on a schedule's children: the UID of the schedule that made them. With SCHEDULE_LABEL it
is what makes a CloudSnapshot a schedule's own child; children carry no ownerReference to their
schedule, so that no garbage collector deletes a backup with its schedule."""
SOURCE_LABEL: Final = f"{GROUP}/source"
"""Label on a schedule's children: which of the schedule's sources the child snapshots."""
SLOT_ANNOTATION: Final = f"{GROUP}/slot"
"""Annotation on a schedule's children: the scheduled time (UTC, RFC 3339) of the run that made
the child."""
ROOM_ANNOTATION: Final = f"{GROUP}/room-made"
"""Annotation on a schedule's child refused for want of room on its disk (or made right after
room was made for it): which child the schedule deleted to free a place, and when that child was
seen gone, so that one refusal frees one place whoever leads and however long the deletion takes."""
RUN_NOW_ANNOTATION: Final = f"{GROUP}/run-now"
"""Annotation on a CloudSnapshotSchedule: a new value asks for one extra run now (once per value;
`kubectl cloudsnap run` sets it)."""
SOURCE_ANNOTATION: Final = f"{GROUP}/source"
"""Annotation on a schedule's children: the full source ("volume/<id>" or "pvc/<name>"); the
label may be a shortened form."""

EVS_SNAPSHOTS_PER_DISK: Final = 7
"""EVS keeps at most this many snapshots of one disk and refuses the next create (EVS.5413)."""
DISK_FULL_CODE: Final = "EVS.5413"
"""The ``status.error.code`` of a CloudSnapshot whose create was refused because its disk holds
EVS_SNAPSHOTS_PER_DISK snapshots: the provider maps it to the quota cause, and a schedule reads
it on its children to make room for them."""

RESTORE_KIND: Final = "CloudSnapshotRestore"
RESTORE_PLURAL: Final = "cloudsnapshotrestores"
RESTORE_SHORT_NAME: Final = "csnaprestore"
RESTORE_DEFAULT_DELETION_POLICY: Final = "Retain"
"""A restore keeps the disk, PersistentVolume and claim it made unless told to delete them:
restored data is what a user asked to get back."""
EVEREST_CSI_DRIVER: Final = "disk.csi.everest.io"
"""The EVS CSI driver of Huawei Cloud CCE, named in a restored claim's PersistentVolume."""
EVS_CSI_DRIVERS: Final = (EVEREST_CSI_DRIVER, "evs.csi.huaweicloud.com")
"""The Huawei Cloud EVS CSI drivers: CCE's everest add-on, and the cloud-provider-huaweicloud one.
Both put the EVS disk ID in the PersistentVolume's spec.csi.volumeHandle."""

SECRET_ACCESS_KEY: Final = "accessKey"  # noqa: S105 - the name of a Secret key, not a secret
"""Keys of a class's credentials Secret: the access key, the secret key and (for temporary
credentials) the security token."""
SECRET_SECRET_KEY: Final = "secretKey"  # noqa: S105 - the name of a Secret key, not a secret
SECRET_SECURITY_TOKEN: Final = "securityToken"  # noqa: S105 - a key name

DEFAULT_OPERATOR_NAMESPACE: Final = "cloudsnap-system"
"""The chart's namespace, where the operator reads the classes' Secrets unless told another."""
