"""Pydantic models of the CloudSnapshot and CloudSnapshotClass resources (docs/lifecycle.md).

They are the single source of the public API: the operator parses raw Kubernetes bodies with them
(`CloudSnapshotSpec.model_validate(body["spec"])`) and writes status with
`model_dump(mode="json", by_alias=True, exclude_none=True)`, and `cloudsnap.api.crdgen` turns them
into the CRD schemas. So every attribute docstring below is also what `kubectl explain` shows, and
the CEL rules attached with `json_schema_extra` are what the API server enforces at admission.
Python names are snake_case; the Kubernetes (camelCase) names are the aliases.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from cloudsnap.api.constants import (
    API_VERSION,
    CLASS_KIND,
    DEFAULT_CLASS_ANNOTATION,
    DEFAULT_DELETION_POLICY,
    EVS_TEXT_MAX_BYTES,
    IDENTITY_METADATA_PREFIX,
    RESERVED_METADATA_PREFIX,
    RESERVED_NAME_PREFIX,
    SNAPSHOT_KIND,
)
from cloudsnap.api.text import Fitted
from cloudsnap.utc import UTCDateTime

UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""An EVS ID: a UUID in lower case, as EVS writes its IDs. EVS finds nothing by an upper-case
one and answers with the lower-case ID, so the CRD refuses upper case at admission."""
OPTIONAL_UUID_PATTERN = f"^({UUID_PATTERN[1:-1]})?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONDITION_REASON_PATTERN = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
METADATA_MAX_ENTRIES = 50
METADATA_KEY_MAX_LENGTH = 255
METADATA_VALUE_MAX_LENGTH = 255
MAX_CONDITIONS = 16
# CRD limits of the status fields that carry what EVS answered (their texts are Fitted to them).
STATUS_CODE_MAX_LENGTH = 64
STATUS_MESSAGE_MAX_LENGTH = 32768

JsonDict = dict[str, Any]
DeletionPolicy = Literal["Delete", "Retain"]
ConditionStatus = Literal["True", "False", "Unknown"]


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; `field_path` points the error at a child field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def _fixed_at_creation(field: str, zero: str) -> JsonDict:
    """A transition rule refusing any change of `field`, counting an absent field as `zero`.

    A rule on the field itself would only run when both the old and the new object carry it, so
    removing the field (or adding it later) would slip through; on the parent it sees both cases.
    """
    return cel(
        f"(has(self.{field}) ? self.{field} : {zero}) =="
        f" (has(oldSelf.{field}) ? oldSelf.{field} : {zero})",
        f"{field} is immutable: it cannot be added, changed or removed after creation",
        field_path=f".{field}",
    )


def lower_case_id(value: Any) -> Any:
    """An EVS ID stored before the CRD refused upper case, read as EVS writes it, so that
    such a resource works (and its snapshot is recognised as of its disk) after an upgrade."""
    return value.lower() if isinstance(value, str) else value


def invalid_fields(exc: ValidationError) -> str:
    """The dotted paths of the fields a validation error names, for one-line messages."""
    return ", ".join(".".join(str(part) for part in err["loc"]) for err in exc.errors())


def validations(*rules: JsonDict) -> JsonDict:
    """The `json_schema_extra` that attaches CEL rules to a field or a model."""
    return {"x-kubernetes-validations": list(rules)}


MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX_LENGTH)]
SnapshotDescription = Annotated[
    str,
    Field(
        max_length=EVS_TEXT_MAX_BYTES,
        json_schema_extra=validations(
            cel(
                f"size(bytes(self)) <= {EVS_TEXT_MAX_BYTES}",
                f"description must be at most {EVS_TEXT_MAX_BYTES} bytes in UTF-8",
            ),
        ),
    ),
]
"""An EVS snapshot description (shared by CloudSnapshot and a schedule's snapshot template)."""
SnapshotMetadata = Annotated[
    dict[str, MetadataValue],
    Field(
        max_length=METADATA_MAX_ENTRIES,
        json_schema_extra=validations(
            cel(
                f"self.all(k, size(k) >= 1 && size(k) <= {METADATA_KEY_MAX_LENGTH})",
                f"metadata keys must be 1 to {METADATA_KEY_MAX_LENGTH} characters long",
            ),
            cel(
                f"self.all(k, !k.startsWith('{RESERVED_METADATA_PREFIX}'))",
                f"metadata keys must not start with {RESERVED_METADATA_PREFIX} (reserved by EVS)",
            ),
            cel(
                f"self.all(k, !k.startsWith('{IDENTITY_METADATA_PREFIX}'))",
                f"metadata keys must not start with {IDENTITY_METADATA_PREFIX}"
                " (set by the operator to tie the snapshot to this resource)",
            ),
        ),
    ),
]
"""EVS snapshot metadata as users may set it."""
EVSName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=EVS_TEXT_MAX_BYTES,
        json_schema_extra=validations(
            cel(
                f"size(bytes(self)) <= {EVS_TEXT_MAX_BYTES}",
                f"name must be at most {EVS_TEXT_MAX_BYTES} bytes in UTF-8",
            ),
            cel(
                f"!self.startsWith('{RESERVED_NAME_PREFIX}')",
                f"name must not start with {RESERVED_NAME_PREFIX} (reserved for EVS backups)",
            ),
        ),
    ),
]
"""The name of an EVS snapshot or disk as users may set it."""
ClassName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
"""The name of a CloudSnapshotClass."""

# CEL: which source of a CloudSnapshot a spec names (the documented snapshotID "" names none).
_VOLUME_SET = "has(self.volumeID)"
_CLAIM_SET = "has(self.persistentVolumeClaimName)"
_SNAPSHOT_SET = "(has(self.snapshotID) && self.snapshotID != '')"


class _Model(BaseModel):
    """Shared configuration: attribute docstrings become schema descriptions, aliases optional."""

    model_config = ConfigDict(
        populate_by_name=True,
        use_attribute_docstrings=True,
        serialize_by_alias=True,
    )


class StatusModel(_Model):
    """A part of a status: assignments are validated too, so each text field holds what the
    write will carry (cut to its limit, see `cloudsnap.api.text`) from the moment it is set."""

    model_config = ConfigDict(validate_assignment=True)


class ObjectMeta(_Model):
    """The part of Kubernetes object metadata the operator reads."""

    name: str = ""
    """Name of the object, unique in its namespace (or in the cluster for cluster-scoped kinds)."""
    namespace: str | None = None
    """Namespace of the object; None for cluster-scoped objects."""
    uid: str | None = None
    """Identity of this incarnation of the object; tags the EVS snapshot it owns."""
    generation: int | None = None
    """Sequence number of the desired state (spec), mirrored as status.observedGeneration."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations of the object."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels of the object."""


class CloudSnapshotSpec(_Model):
    """Desired state of a CloudSnapshot: which EVS disk to snapshot (by its ID or through a
    PersistentVolumeClaim), or which snapshot to adopt, and the snapshot's name, description and
    metadata."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"{_VOLUME_SET} || {_CLAIM_SET} || {_SNAPSHOT_SET}",
                "one of spec.volumeID, spec.persistentVolumeClaimName or spec.snapshotID is"
                " required",
            ),
            cel(
                f"[{_VOLUME_SET}, {_CLAIM_SET}, {_SNAPSHOT_SET}].filter(isSet, isSet).size() <= 1",
                "only one of spec.volumeID, spec.persistentVolumeClaimName and spec.snapshotID"
                " may be set",
            ),
            _fixed_at_creation("volumeID", "''"),
            _fixed_at_creation("persistentVolumeClaimName", "''"),
            _fixed_at_creation("snapshotID", "''"),
            _fixed_at_creation("metadata", "{}"),
            _fixed_at_creation("className", "''"),
        )
    )

    volume_id: str | None = Field(None, alias="volumeID", pattern=UUID_PATTERN)
    """ID (UUID, lower case as EVS writes it) of the EVS disk to snapshot, the EVS volume_id.
    Exactly one of volumeID, persistentVolumeClaimName and snapshotID is set; immutable."""
    persistent_volume_claim_name: str | None = Field(
        None,
        alias="persistentVolumeClaimName",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    """Name of a PersistentVolumeClaim in this resource's namespace whose disk to snapshot,
    instead of volumeID. The claim must be bound to a CSI PersistentVolume of a Huawei Cloud EVS
    driver (disk.csi.everest.io or evs.csi.huaweicloud.com); its volumeHandle is the disk ID. The
    disk is resolved once, before the snapshot is made, and kept in status.volumeID and
    status.persistentVolumeName: the claim bound to another volume later never moves this
    snapshot. Immutable."""
    name: EVSName | None = None
    """Name of the EVS snapshot, at most 255 bytes in UTF-8, not starting with autobk_snapshot_;
    Huawei's current EVS takes at most 64 characters, and a longer name it refuses is reported
    with the limit. Defaults to "<namespace>-<name>" of this resource, shortened to 64 characters
    with a digest. Updatable."""
    description: SnapshotDescription | None = None
    """Description of the EVS snapshot, at most 255 bytes in UTF-8 (Huawei's current EVS takes
    at most 85 characters); may be omitted or null. Updatable."""
    force: bool | None = None
    """Snapshot the disk even while it is attached to a server (EVS status in-use). The snapshot
    is then crash-consistent, as every CSI snapshot is: what was on the disk at that instant,
    without what the workload still held in memory. When omitted: true for a
    persistentVolumeClaimName source (a claim's disk is normally mounted) and false for a
    volumeID (EVS's own default: it refuses an attached disk). Only the create uses it, so it may
    be changed until the snapshot exists: a create refused for an in-use disk is retried at
    once."""
    metadata: SnapshotMetadata = Field(default_factory=dict)
    """Metadata (string to string) stored on the EVS snapshot. At most 50 entries, keys and values
    at most 255 characters; keys must not start with __system__ (EVS) or cloudsnap.io/ (the
    operator). Immutable."""
    class_name: ClassName | None = Field(None, alias="className")
    """Name of the CloudSnapshotClass (cloud account, project and region) to use; when omitted,
    the class annotated evs.cloudsnap.io/is-default-class="true". Immutable."""
    deletion_policy: DeletionPolicy | None = Field(None, alias="deletionPolicy")
    """What happens to the EVS snapshot when this resource is deleted: Delete removes it, Retain
    keeps it. Defaults to the class's deletionPolicy when the snapshot is created (recorded in
    status.deletionPolicy); an adopted snapshot (spec.snapshotID) defaults to Retain, so only an
    explicit Delete here lets the operator delete a snapshot it did not create."""
    snapshot_id: str | None = Field(None, alias="snapshotID", pattern=OPTIONAL_UUID_PATTERN)
    """ID (UUID, lower case as EVS writes it) of an existing EVS snapshot to adopt instead of
    creating one; empty means none. Immutable."""

    def forces_attached_disk(self) -> bool:
        """Whether the create may snapshot an attached disk: spec.force, else true for a claim
        (the disk of a workload, normally mounted) and false for a volume ID (EVS's default)."""
        if self.force is not None:
            return self.force
        return self.persistent_volume_claim_name is not None

    @field_validator("volume_id", "snapshot_id", mode="before")
    @classmethod
    def _as_evs_writes_it(cls, value: Any) -> Any:
        """See `lower_case_id`."""
        return lower_case_id(value)

    @field_validator("snapshot_id")
    @classmethod
    def _empty_means_none(cls, value: str | None) -> str | None:
        """The documented `snapshotID: ""` means "create one", so the operator sees None."""
        return value or None


class Condition(StatusModel):
    """One aspect of the resource's state, in the shape of Kubernetes' metav1.Condition."""

    type: str = Field(max_length=316)
    """Type of the condition: Ready (the EVS snapshot is available) or Synced (the last
    reconciliation succeeded)."""
    status: ConditionStatus
    """Status of the condition: True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    """Machine-readable CamelCase reason for the last transition, e.g. Available, Creating,
    NotFound, ReconcileError."""
    message: Annotated[str, Fitted(STATUS_MESSAGE_MAX_LENGTH)]
    """Human-readable details of the transition, e.g. the EVS error code and message."""
    last_transition_time: UTCDateTime = Field(alias="lastTransitionTime")
    """When the condition last changed its status."""
    observed_generation: int | None = Field(None, alias="observedGeneration", ge=0)
    """metadata.generation of the spec this condition was computed from."""


def set_condition(
    conditions: list[Condition],
    previous: Condition | None,
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """``conditions`` with the condition of type ``kind`` made of these parts (observed at
    ``generation``), Ready first. It keeps the transition time of ``previous`` (the condition as
    the step found it) while its status is unchanged, as Kubernetes conditions do; else ``now``."""
    since = now
    if previous is not None and previous.status == status:
        since = previous.last_transition_time
    new = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != kind]
    return sorted([*others, new], key=lambda c: (c.type != "Ready", c.type))


def condition_of(conditions: Sequence[Condition], kind: str) -> Condition | None:
    """The condition of type ``kind`` among ``conditions``, if there is one."""
    return next((c for c in conditions if c.type == kind), None)


def map_list(key: str) -> JsonDict:
    """The schema extras of a list merged by ``key`` (a server-side-apply list map)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


class StatusError(StatusModel):
    """The error that currently keeps the resource from its desired state."""

    code: Annotated[str, Fitted(STATUS_CODE_MAX_LENGTH)]
    """EVS error code (e.g. EVS.5404, APIG.0308) or a local one (ClassNotFound, SecretNotFound,
    InvalidCredentials, AlreadyOwned, AccountChanged)."""
    message: Annotated[str, Fitted(STATUS_MESSAGE_MAX_LENGTH)]
    """Human-readable error message."""
    retryable: bool
    """Whether the operator retries by itself soon; false means it waits for a change (of the
    spec, the class, its Secret or the disk) or retries only at a slow interval."""
    request_id: Annotated[str, Fitted(128)] | None = Field(None, alias="requestID")
    """ID of the EVS request that failed (the X-Request-Id answer header); Huawei support asks
    for it."""
    first_seen: UTCDateTime | None = Field(None, alias="firstSeen")
    """When this error (same code and message) was first seen."""
    time: UTCDateTime
    """When the error was last seen (refreshed at most once a minute while it repeats)."""


class AccountRef(StatusModel):
    """Where an EVS snapshot lives: recorded when it is created or adopted, so that neither a
    new default class nor an edited class can make the operator look for it elsewhere."""

    class_name: Annotated[str, Fitted(253)] = Field(alias="className")
    """The CloudSnapshotClass the snapshot was created or adopted with."""
    region: Annotated[str, Fitted(64)]
    """The class's region at that time."""
    project_id: Annotated[str, Fitted(64)] = Field(alias="projectID")
    """The class's project ID at that time."""
    endpoint: Annotated[str, Fitted(2048)]
    """The EVS endpoint host (and port) at that time."""


class CloudSnapshotStatus(StatusModel):
    """Observed state of a CloudSnapshot, mirrored from the EVS snapshot."""

    snapshot_id: Annotated[str, Fitted(64)] | None = Field(None, alias="snapshotID")
    """ID of the EVS snapshot this resource owns, written as soon as EVS has accepted the create."""
    phase: Annotated[str, Fitted(64)] | None = None
    """Status of the EVS snapshot, verbatim (creating, available, error, deleting, ...); empty
    before the snapshot exists."""
    size: int | None = Field(None, ge=0)
    """Size of the snapshot in GB (the size of the source disk)."""
    created_at: UTCDateTime | None = Field(None, alias="createdAt")
    """When EVS created the snapshot."""
    updated_at: UTCDateTime | None = Field(None, alias="updatedAt")
    """When EVS last updated the snapshot."""
    volume_id: Annotated[str, Fitted(64)] | None = Field(None, alias="volumeID")
    """ID of the EVS disk the snapshot was taken of. For spec.persistentVolumeClaimName, the disk
    the claim was bound to when the operator resolved it, before making the snapshot; from then on
    the claim is not looked at again."""
    persistent_volume_name: Annotated[str, Fitted(253)] | None = Field(
        None, alias="persistentVolumeName"
    )
    """For spec.persistentVolumeClaimName: the PersistentVolume the claim was bound to when the
    operator resolved it to status.volumeID."""
    adopted: bool | None = None
    """True when the snapshot was adopted through spec.snapshotID rather than created by this
    resource; an adopted snapshot is kept on delete unless spec.deletionPolicy says Delete."""
    account: AccountRef | None = None
    """Where the snapshot lives. Written with the first create request (answered or not) or at
    adoption; the resource stays with this class and account for its whole life."""
    deletion_policy: DeletionPolicy | None = Field(None, alias="deletionPolicy")
    """The deletion policy in force, recorded when the snapshot was created or adopted, so that a
    class's Retain stays Retain even if the class is later edited or deleted; spec.deletionPolicy,
    when set, still wins."""
    missing_since: UTCDateTime | None = Field(None, alias="missingSince")
    """When EVS was first seen not to list the snapshot. The snapshot is declared NotFound only if
    it is still absent a grace period later."""
    unanswered_create_time: UTCDateTime | None = Field(None, alias="unansweredCreateTime")
    """When a create request for this resource last went unanswered (a timeout or a cut
    connection). EVS may still apply it; until a while after, the operator looks for extra
    snapshots tagged with this resource and removes them."""
    observed_generation: int | None = Field(None, alias="observedGeneration", ge=0)
    """metadata.generation of the spec the operator last reconciled."""
    conditions: list[Condition] = Field(
        default_factory=list, max_length=MAX_CONDITIONS, json_schema_extra=map_list("type")
    )
    """Current state as conditions Ready and Synced; `kubectl wait --for=condition=Ready` waits
    on them."""
    error: StatusError | None = None
    """The current error, if any; cleared when reconciliation succeeds."""


class CloudSnapshot(_Model):
    """A declarative Huawei Cloud EVS disk snapshot: the operator creates (or adopts) the EVS
    snapshot, mirrors its state into status and deletes or retains it when the resource goes."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    """Versioned schema of this representation of the object."""
    kind: str = SNAPSHOT_KIND
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: CloudSnapshotSpec
    """Desired state: the disk to snapshot and the snapshot's attributes."""
    status: CloudSnapshotStatus = Field(default_factory=CloudSnapshotStatus)
    """Observed state of the EVS snapshot."""


class SecretReference(_Model):
    """A Secret in the operator's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Name of the Secret. It holds accessKey and secretKey (AK/SK) and optionally securityToken
    (temporary credentials)."""


class RateLimit(_Model):
    """A ceiling on the EVS calls made with one class, all operations and snapshots together.

    Below it the operator adapts its pace to EVS's throttling by itself."""

    requests_per_second: int = Field(20, alias="requestsPerSecond", ge=1, le=1000)
    """Sustained EVS requests per second."""
    burst: int = Field(40, ge=1, le=1000)
    """Requests that may be made at once after a quiet period."""


LABEL_KEY_MAX_LENGTH = 317  # a 253-character prefix, "/", a 63-character name
LABEL_VALUE_MAX_LENGTH = 63

LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=LABEL_KEY_MAX_LENGTH)]
LabelValue = Annotated[str, StringConstraints(max_length=LABEL_VALUE_MAX_LENGTH)]
LABEL_KEYS_BOUNDED = cel(
    f"self.all(k, size(k) >= 1 && size(k) <= {LABEL_KEY_MAX_LENGTH})",
    f"keys must be 1 to {LABEL_KEY_MAX_LENGTH} characters long",
)
SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
VALUES_FIT_OPERATOR = cel(
    "!has(self.matchExpressions) || self.matchExpressions.all(r,"
    " (r.operator in ['In', 'NotIn']) == (has(r.values) && size(r.values) > 0))",
    "matchExpressions: In and NotIn need values, Exists and DoesNotExist take none",
    field_path=".matchExpressions",
)
"""A selector's CEL rule: values exactly where the operator compares them."""


class LabelSelectorRequirement(_Model):
    """One requirement of a label selector, as in metav1.LabelSelectorRequirement."""

    key: LabelKey
    """The label key the requirement applies to."""
    operator: SelectorOperator
    """In, NotIn, Exists or DoesNotExist."""
    values: list[Annotated[LabelValue, Field(description="A label value.")]] = Field(
        default_factory=list, max_length=100
    )
    """The values for In and NotIn (at least one); empty for Exists and DoesNotExist."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` meet the requirement (Kubernetes' label selector semantics)."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


class Selector(_Model):
    """A label selector, as in metav1.LabelSelector: every requirement must hold (AND)."""

    model_config = ConfigDict(json_schema_extra=validations(VALUES_FIT_OPERATOR))

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        alias="matchLabels",
        max_length=64,
        json_schema_extra=validations(LABEL_KEYS_BOUNDED),
    )
    """Labels that must be set, with exactly these values."""
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions", max_length=64
    )
    """Further requirements on the labels."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (an empty selector selects all)."""
        return all(labels.get(key) == value for key, value in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


class AllowedNamespaces(_Model):
    """The namespaces whose CloudSnapshots (and schedules and restores) may use a class: those
    named, and those whose labels the selector matches. Neither given admits no namespace."""

    names: list[
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=63),
            Field(description="A namespace name."),
        ]
    ] = Field(default_factory=list, max_length=1024)
    """Namespaces admitted by name."""
    selector: Selector | None = None
    """Namespaces admitted by their labels ({} admits every namespace)."""

    def admits(self, namespace: str, labels: Mapping[str, str] | None) -> bool:
        """Whether ``namespace`` (with ``labels``; None when the namespace is not known) may use
        the class. A namespace not known is admitted only by name."""
        if namespace in self.names:
            return True
        return self.selector is not None and labels is not None and self.selector.matches(labels)


VolumeIDRule = Literal["Denied", "Allowed", "Any"]
AdoptionRule = Literal["Denied", "Retain", "Delete"]


class CloudSnapshotClassSpec(_Model):
    """Where and as whom snapshots are made: one cloud account, project and region."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.caBundle) && self.insecureSkipTLSVerify)",
                "caBundle and insecureSkipTLSVerify=true cannot be used together",
                field_path=".insecureSkipTLSVerify",
            ),
            cel(
                "self.region == oldSelf.region",
                "region is immutable: snapshots made with this class live there; create a new"
                " class for another region",
                field_path=".region",
            ),
            cel(
                "self.projectID == oldSelf.projectID",
                "projectID is immutable: snapshots made with this class live there; create a new"
                " class for another project",
                field_path=".projectID",
            ),
        )
    )

    region: str = Field(min_length=1, max_length=64, pattern="^[a-z0-9]+(-[a-z0-9]+)*$")
    """Huawei Cloud region, e.g. cn-north-4. Immutable."""
    project_id: str = Field(
        alias="projectID", min_length=1, max_length=64, pattern="^[0-9A-Za-z_-]+$"
    )
    """Huawei Cloud project ID in that region (the {project_id} of the EVS API paths).
    Immutable."""
    endpoint: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s/]+(/\S*)?$")
    """EVS endpoint URL; defaults to https://evs.<region>.myhuaweicloud.com."""
    credentials_secret_ref: SecretReference = Field(alias="credentialsSecretRef")
    """Secret, in the operator's namespace, with the credentials."""
    deletion_policy: DeletionPolicy = Field(DEFAULT_DELETION_POLICY, alias="deletionPolicy")
    """Default deletion policy of snapshots made with this class: Delete or Retain."""
    ca_bundle: Base64Bytes | None = Field(None, alias="caBundle")
    """PEM-encoded CA certificates, base64-encoded, to verify the endpoint's TLS certificate
    instead of the system roots."""
    insecure_skip_tls_verify: bool = Field(False, alias="insecureSkipTLSVerify")
    """Skip verifying the endpoint's TLS certificate (testing only)."""
    rate_limit: RateLimit | None = Field(None, alias="rateLimit")
    """An optional ceiling on the EVS calls made with this class. Without it the operator goes
    as fast as EVS answers, slowing down when the API gateway throttles (APIG.0308)."""

    allowed_namespaces: AllowedNamespaces | None = Field(None, alias="allowedNamespaces")
    """The namespaces that may use this class. Absent: every namespace (as before the field
    existed); a CloudSnapshot, schedule or restore in a namespace not admitted is refused before
    any EVS call."""

    volume_ids: VolumeIDRule = Field("Allowed", alias="volumeIDs")
    """Whether a CloudSnapshot may name its disk by spec.volumeID, and a CloudSnapshotRestore
    its snapshot by spec.snapshotID. Allowed: any disk of the account except one behind a
    PersistentVolume bound to a claim in another namespace (that namespace's, to snapshot by its
    claim), and any snapshot except one of such a disk or made by a CloudSnapshot of another
    namespace; Any: every disk and snapshot of the account; Denied: claims and CloudSnapshots
    only (spec.persistentVolumeClaimName, spec.snapshotName)."""
    adoption: AdoptionRule = "Delete"
    """Whether a CloudSnapshot may adopt an existing snapshot by spec.snapshotID. Delete: yes, and
    its spec.deletionPolicy may be Delete; Retain: only to keep it (an adopted snapshot is never
    deleted through this class); Denied: no adoption."""

    def evs_endpoint(self) -> str:
        """The explicit endpoint (e.g. a simulator), else the region's public one."""
        return self.endpoint or f"https://evs.{self.region}.myhuaweicloud.com"

    def tls_verify(self) -> bool | str:
        """What the EVS client verifies the endpoint with: nothing, this PEM CA bundle, or the
        system roots."""
        if self.insecure_skip_tls_verify:
            return False
        if self.ca_bundle:
            return self.ca_bundle.decode()
        return True


class CloudSnapshotClass(_Model):
    """Where and as whom CloudSnapshots are made: a cloud account, project and region, with the
    Secret holding its credentials. Cluster-scoped."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    """Versioned schema of this representation of the object."""
    kind: str = CLASS_KIND
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: CloudSnapshotClassSpec
    """The account, project, region and credentials."""

    def is_default(self) -> bool:
        """Whether this class serves resources that name no class (the annotation is "true")."""
        return self.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def recorded_deletion_policy(
    spec: CloudSnapshotSpec, class_spec: CloudSnapshotClassSpec, *, adopted: bool
) -> DeletionPolicy:
    """The policy to record in status when a snapshot is created or adopted.

    The resource's own policy, else Retain for an adopted snapshot (the operator did not make it,
    so it deletes it only when told to), else the class's.
    """
    if spec.deletion_policy is not None:
        return spec.deletion_policy
    return "Retain" if adopted else class_spec.deletion_policy


def effective_deletion_policy(
    spec: CloudSnapshotSpec,
    status: CloudSnapshotStatus,
    class_spec: CloudSnapshotClassSpec | None,
) -> DeletionPolicy | None:
    """The policy in force on delete: the spec's, else the one recorded in status, else the
    class's (for a resource whose snapshot predates the record); None when only the class could
    say and it is gone."""
    if spec.deletion_policy is not None:
        return spec.deletion_policy
    if status.deletion_policy is not None:
        return status.deletion_policy
    if status.adopted:
        return "Retain"
    return class_spec.deletion_policy if class_spec is not None else None
