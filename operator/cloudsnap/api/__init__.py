"""The public API of cloudsnap: the custom resources' models and their fixed names.

The CRDs in crds/ are generated from these models by `cloudsnap.api.crdgen`.
"""

from cloudsnap.api.constants import (
    API_VERSION,
    CLASS_KIND,
    CLASS_PLURAL,
    DEFAULT_CLASS_ANNOTATION,
    GROUP,
    OWNER_NAME_METADATA_KEY,
    OWNER_NAMESPACE_METADATA_KEY,
    OWNER_UID_METADATA_KEY,
    SNAPSHOT_KIND,
    SNAPSHOT_PLURAL,
    VERSION,
)
from cloudsnap.api.models import (
    CONDITION_REASON_PATTERN,
    AccountRef,
    CloudSnapshot,
    CloudSnapshotClass,
    CloudSnapshotClassSpec,
    CloudSnapshotSpec,
    CloudSnapshotStatus,
    Condition,
    ConditionStatus,
    DeletionPolicy,
    ObjectMeta,
    RateLimit,
    SecretReference,
    StatusError,
    effective_deletion_policy,
    recorded_deletion_policy,
)
from cloudsnap.api.naming import effective_snapshot_name

__all__ = [
    "API_VERSION",
    "CLASS_KIND",
    "CLASS_PLURAL",
    "CONDITION_REASON_PATTERN",
    "DEFAULT_CLASS_ANNOTATION",
    "GROUP",
    "OWNER_NAMESPACE_METADATA_KEY",
    "OWNER_NAME_METADATA_KEY",
    "OWNER_UID_METADATA_KEY",
    "SNAPSHOT_KIND",
    "SNAPSHOT_PLURAL",
    "VERSION",
    "AccountRef",
    "CloudSnapshot",
    "CloudSnapshotClass",
    "CloudSnapshotClassSpec",
    "CloudSnapshotSpec",
    "CloudSnapshotStatus",
    "Condition",
    "ConditionStatus",
    "DeletionPolicy",
    "ObjectMeta",
    "RateLimit",
    "SecretReference",
    "StatusError",
    "effective_deletion_policy",
    "effective_snapshot_name",
    "recorded_deletion_policy",
]
