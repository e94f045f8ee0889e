"""Pydantic model of the CloudSnapshotSchedule resource (docs/schedules.md).

A schedule makes one child CloudSnapshot per source at each slot of a cron schedule and deletes
its own old children by a retention policy. Like the models in `models.py`, these are the single
source of the CRD (`crdgen`): attribute docstrings are what `kubectl explain` shows and the CEL
rules are what the API server enforces. What CEL cannot check (a cron field's ranges, a time
zone's existence) the operator checks and reports as `Synced=False` with reason `InvalidSpec`.
"""

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from cloudsnap.api.constants import (
    API_VERSION,
    EVS_SNAPSHOTS_PER_DISK,
    ROOM_ANNOTATION,
    SCHEDULE_KIND,
    SCHEDULE_LABEL,
    SCHEDULE_UID_LABEL,
    SLOT_ANNOTATION,
    SOURCE_ANNOTATION,
    SOURCE_LABEL,
)
from cloudsnap.api.models import (
    LABEL_KEYS_BOUNDED,
    MAX_CONDITIONS,
    UUID_PATTERN,
    VALUES_FIT_OPERATOR,
    ClassName,
    Condition,
    DeletionPolicy,
    LabelValue,
    ObjectMeta,
    Selector,
    SnapshotDescription,
    SnapshotMetadata,
    StatusModel,
    _Model,
    cel,
    lower_case_id,
    map_list,
    validations,
)
from cloudsnap.api.text import Fitted
from cloudsnap.utc import UTCDateTime

MAX_SOURCES = 1000
"""Sources one schedule may name or select; each is a child per run and a status entry."""
MAX_JITTER_SECONDS = 3600
CRON_MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_CRON_FIELD = "[0-9A-Za-z*/,-]+"
CRON_SHAPE = f"^({'|'.join(CRON_MACROS)}|{_CRON_FIELD}( +{_CRON_FIELD}){{4}})$"
"""Five space-separated cron fields or a macro; the fields' values are checked by the operator."""
DURATION_PATTERN = "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
"""A duration in hours, minutes and seconds, Go style without fractions: 168h, 1h30m, 90s."""
TIME_ZONE_PATTERN = "^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"


class LabelSelector(Selector):
    """Which PersistentVolumeClaims a schedule snapshots: all labels must match (AND)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.matchLabels) && size(self.matchLabels) > 0)"
                " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                "persistentVolumeClaimSelector needs matchLabels or matchExpressions: an empty"
                " selector would snapshot every claim in the namespace",
            ),
            VALUES_FIT_OPERATOR,
        )
    )


class ScheduleSources(_Model):
    """What a schedule snapshots: EVS disks by ID and/or PersistentVolumeClaims by label."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.volumeIDs) && size(self.volumeIDs) > 0)"
                " || has(self.persistentVolumeClaimSelector)",
                "sources needs volumeIDs or persistentVolumeClaimSelector",
            ),
        )
    )

    volume_ids: list[
        Annotated[
            str,
            StringConstraints(pattern=UUID_PATTERN),
            BeforeValidator(lower_case_id),  # after the constraint: wraps it, so runs first
            Field(description="A disk ID, in lower case as EVS writes it."),
        ]
    ] = Field(
        default_factory=list,
        alias="volumeIDs",
        max_length=MAX_SOURCES,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """IDs (UUIDs, lower case as EVS writes them) of EVS disks to snapshot."""
    persistent_volume_claim_selector: LabelSelector | None = Field(
        None, alias="persistentVolumeClaimSelector"
    )
    """PersistentVolumeClaims of the schedule's namespace to snapshot, chosen by label at each
    run; each becomes a child with spec.persistentVolumeClaimName."""


class Retention(_Model):
    """Which of a source's children to keep. Only Ready children count; children still
    creating are never deleted; failed ones go once a newer Ready one exists."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.minReady <= self.maxCount",
                "minReady must not exceed maxCount",
                field_path=".minReady",
            ),
        )
    )

    max_count: int = Field(alias="maxCount", ge=1, le=EVS_SNAPSHOTS_PER_DISK)
    """Ready children kept per source, 1 to 7 (EVS keeps at most 7 snapshots of a disk)."""
    max_age: str | None = Field(
        None,
        alias="maxAge",
        max_length=32,
        json_schema_extra=validations(
            cel(
                f"self.matches('{DURATION_PATTERN}') && self != ''"
                " && duration(self) > duration('0s')",
                "maxAge must be a positive duration in hours, minutes and seconds, e.g. 168h",
            ),
        ),
    )
    """Ready children older than this (e.g. 168h, 90m) are deleted, except the newest
    minReady."""
    min_ready: int = Field(1, alias="minReady", ge=0, le=EVS_SNAPSHOTS_PER_DISK)
    """The newest this many Ready children of each source are never deleted, whatever maxAge
    or maxCount say."""


class TemplateMetadata(_Model):
    """Labels and annotations given to every child."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!has(self.labels) || !('{SCHEDULE_LABEL}' in self.labels"
                f" || '{SCHEDULE_UID_LABEL}' in self.labels || '{SOURCE_LABEL}' in self.labels)",
                f"labels {SCHEDULE_LABEL}, {SCHEDULE_UID_LABEL} and {SOURCE_LABEL} are set by"
                " the operator",
                field_path=".labels",
            ),
            cel(
                f"!has(self.annotations) || !('{SLOT_ANNOTATION}' in self.annotations"
                f" || '{SOURCE_ANNOTATION}' in self.annotations"
                f" || '{ROOM_ANNOTATION}' in self.annotations)",
                f"annotations {SLOT_ANNOTATION}, {SOURCE_ANNOTATION} and {ROOM_ANNOTATION} are set"
                " by the operator",
                field_path=".annotations",
            ),
        )
    )

    labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64, json_schema_extra=validations(LABEL_KEYS_BOUNDED)
    )
    """Labels of each child."""
    annotations: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=64, json_schema_extra=validations(LABEL_KEYS_BOUNDED)
    )
    """Annotations of each child."""


class TemplateSpec(_Model):
    """The spec of each child, less its source (the schedule fills that in)."""

    class_name: ClassName | None = Field(None, alias="className")
    """CloudSnapshotClass of the children; when omitted, the default class."""
    description: SnapshotDescription | None = None
    """Description of each EVS snapshot, at most 255 bytes in UTF-8 (Huawei's current EVS
    takes at most 85 characters)."""
    force: bool = True
    """Snapshot disks even while attached to a server (in-use), crash-consistent as every CSI
    snapshot is; default true, so that a disk a workload mounts is not refused at every run.
    Set false to snapshot only detached disks. Written into each child's spec.force."""
    metadata: SnapshotMetadata = Field(default_factory=dict)
    """Metadata stored on each EVS snapshot (the rules of CloudSnapshot spec.metadata)."""
    deletion_policy: DeletionPolicy | None = Field(None, alias="deletionPolicy")
    """What happens to a child's EVS snapshot when the child is deleted (by retention too):
    Delete or Retain; defaults to the class's."""


class SnapshotTemplate(_Model):
    """What every child looks like."""

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata)
    """Labels and annotations of each child."""
    spec: TemplateSpec = Field(default_factory=TemplateSpec)
    """The spec of each child, less its source."""


class CloudSnapshotScheduleSpec(_Model):
    """When to snapshot what, and how many snapshots to keep."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.startingDeadlineSeconds)"
                " || self.jitterSeconds < self.startingDeadlineSeconds",
                "jitterSeconds must be less than startingDeadlineSeconds, or a run's later"
                " creates would count as missed",
                field_path=".jitterSeconds",
            ),
        )
    )

    schedule: str = Field(
        max_length=256,
        json_schema_extra=validations(
            cel(
                f"self.matches('{CRON_SHAPE}')",
                "schedule must be five cron fields (minute hour day-of-month month day-of-week)"
                f" or one of {', '.join(CRON_MACROS)}",
            ),
        ),
    )
    """When to run: five cron fields (minute hour day-of-month month day-of-week, with ranges,
    steps, lists and month/day names) or @hourly, @daily, @weekly, @monthly, @yearly, read in
    timeZone."""
    time_zone: str = Field(
        "UTC", alias="timeZone", min_length=1, max_length=64, pattern=TIME_ZONE_PATTERN
    )
    """IANA time zone the schedule is read in, e.g. Europe/Berlin. A local time skipped by a
    daylight-saving change runs at the first instant after the gap; a repeated one runs once."""
    suspend: bool = False
    """Make no new runs while true; retention still applies. A run missed meanwhile is made on
    resume only if it is within startingDeadlineSeconds."""
    starting_deadline_seconds: int | None = Field(
        None, alias="startingDeadlineSeconds", ge=1, le=31 * 24 * 3600
    )
    """A run not started within this many seconds of its time is skipped (an Event and a
    metric). Without it, a missed run is made late. Either way, after downtime only the latest
    missed run is made, never one per missed slot."""
    jitter_seconds: int = Field(0, alias="jitterSeconds", ge=0, le=MAX_JITTER_SECONDS)
    """Spread a run's creates over up to this many seconds after the slot: each source's delay
    is fixed by the schedule, the source and the slot. Less than startingDeadlineSeconds, and
    less than the shortest time between two slots of schedule (else Synced=False, InvalidSpec)."""
    sources: ScheduleSources
    """What to snapshot."""
    retention: Retention
    """How many children of each source to keep."""
    snapshot_template: SnapshotTemplate = Field(
        default_factory=SnapshotTemplate, alias="snapshotTemplate"
    )
    """Labels, annotations and spec given to each child."""
    delete_children_on_delete: bool = Field(False, alias="deleteChildrenOnDelete")
    """Delete the children (and so, by their deletion policy, their EVS snapshots) when the
    schedule is deleted; by default they are kept."""


class SourceStatus(StatusModel):
    """The children of one source."""

    source: Annotated[str, Fitted(300)]
    """The source: volume/<EVS disk ID> or pvc/<claim name>."""
    ready: int = Field(0, ge=0)
    """Children whose snapshot is available."""
    creating: int = Field(0, ge=0)
    """Children whose snapshot is not available yet."""
    failed: int = Field(0, ge=0)
    """Children whose snapshot failed; deleted once a newer one is Ready."""
    newest_ready: Annotated[str, Fitted(253)] | None = Field(None, alias="newestReady")
    """Name of the newest Ready child."""
    newest_ready_snapshot_id: Annotated[str, Fitted(64)] | None = Field(
        None, alias="newestReadySnapshotID"
    )
    """ID of the EVS snapshot of the newest Ready child."""
    last_run_time: UTCDateTime | None = Field(None, alias="lastRunTime")
    """Slot of the newest child made for this source."""
    blocked: Annotated[str, Fitted(1024)] | None = None
    """Why the last run could not make this source's child, if it could not."""
    retained_snapshot_ids: list[
        Annotated[str, Fitted(64), Field(description="An EVS snapshot ID.")]
    ] = Field(default_factory=list, alias="retainedSnapshotIDs", max_length=EVS_SNAPSHOTS_PER_DISK)
    """EVS snapshots that retention's deletion of children with deletionPolicy Retain left on
    the disk, newest last (the latest 7): they take room on it until deleted in EVS."""


class RunNow(StatusModel):
    """The latest extra run asked for with the run-now annotation."""

    value: Annotated[str, Fitted(253)]
    """The annotation's value it answered; the same value again asks for nothing."""
    slot: UTCDateTime | None = None
    """The run's slot (the minute it was asked in); empty when the request was not run (the
    schedule was suspended or its spec invalid)."""


class CloudSnapshotScheduleStatus(StatusModel):
    """Observed state of a schedule."""

    last_schedule_time: UTCDateTime | None = Field(None, alias="lastScheduleTime")
    """The slot of the latest run."""
    next_schedule_time: UTCDateTime | None = Field(None, alias="nextScheduleTime")
    """The next slot; empty while suspended."""
    last_successful_time: UTCDateTime | None = Field(None, alias="lastSuccessfulTime")
    """The slot of the latest run whose children are all Ready."""
    last_missed_time: UTCDateTime | None = Field(None, alias="lastMissedTime")
    """The latest slot skipped because startingDeadlineSeconds had passed."""
    source_count: int = Field(0, alias="sourceCount", ge=0)
    """Sources at the latest look (volume IDs plus selected claims)."""
    sources: list[SourceStatus] = Field(
        default_factory=list, max_length=MAX_SOURCES, json_schema_extra=map_list("source")
    )
    """Per source, the children by state and the newest Ready one."""
    run_now: RunNow | None = Field(None, alias="runNow")
    """The latest extra run asked for with the evs.cloudsnap.io/run-now annotation."""
    observed_generation: int | None = Field(None, alias="observedGeneration", ge=0)
    """metadata.generation of the spec last acted on."""
    conditions: list[Condition] = Field(
        default_factory=list, max_length=MAX_CONDITIONS, json_schema_extra=map_list("type")
    )
    """Ready (every source has a Ready child and none is blocked) and Synced (the spec is
    valid and the last step succeeded)."""


class CloudSnapshotSchedule(_Model):
    """Scheduled CloudSnapshots with retention: at each slot of a cron schedule, one child
    CloudSnapshot per source, and the oldest children deleted by count and age."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    """Versioned schema of this representation of the object."""
    kind: str = SCHEDULE_KIND
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: CloudSnapshotScheduleSpec
    """When to snapshot what, and what to keep."""
    status: CloudSnapshotScheduleStatus = Field(default_factory=CloudSnapshotScheduleStatus)
    """Observed state of the schedule and its children."""
