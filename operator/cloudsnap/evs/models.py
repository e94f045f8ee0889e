"""Pydantic models of EVS snapshot, disk and job requests and answers.

Answers are read tolerantly (unknown fields ignored, nulls where EVS may send them) because the
service adds fields over time and the operator must not break on them; timestamps come without a
zone and are UTC, so they are made timezone-aware here once for every caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from cloudsnap.utc import UTCDateTime


def _none_as(empty: Callable[[], Any]) -> BeforeValidator:
    """EVS sends null for some fields that are simply empty; read them as the empty value."""
    return BeforeValidator(lambda value: empty() if value is None else value)


class Snapshot(BaseModel):
    """An EVS snapshot as ``show``/``list``/``create``/``update`` return it."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    id: str
    status: str
    name: Annotated[str, _none_as(str)] = ""
    description: str | None = None
    created_at: UTCDateTime
    updated_at: UTCDateTime | None = None
    metadata: Annotated[dict[str, str], _none_as(dict)] = Field(default_factory=dict)
    volume_id: str
    size: int
    progress: str | None = Field(default=None, alias="os-extended-snapshot-attributes:progress")
    project_id: str | None = Field(default=None, alias="os-extended-snapshot-attributes:project_id")


class CreateSnapshotRequest(BaseModel):
    """What to snapshot and how to label it; ``force`` allows a disk that is attached (in-use)."""

    volume_id: str
    name: str | None = None
    description: str | None = None
    force: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON request body; unset optional fields are left out for EVS's defaults."""
        return {"snapshot": self.model_dump(exclude_none=True)}


class ListSnapshotsQuery(BaseModel):
    """Every filter of ``GET .../cloudsnapshots/detail``; ``None`` means "not filtered"."""

    offset: int | None = None
    limit: int | None = None
    name: str | None = None
    status: str | None = None
    volume_id: str | None = None
    availability_zone: str | None = None
    ids: list[str] = Field(default_factory=list)
    service_type: str | None = None
    enterprise_project_id: str | None = None
    dedicated_storage_id: str | None = None
    dedicated_storage_name: str | None = None

    def params(self) -> tuple[tuple[str, str], ...]:
        """Query pairs; ``ids`` becomes the repeatable ``id`` parameter EVS expects."""
        fields = self.model_dump(exclude={"ids"}, exclude_none=True)
        return (
            *((key, str(value)) for key, value in fields.items()),
            *(("id", i) for i in self.ids),
        )


class SnapshotPage(BaseModel):
    """One page of a list: ``count`` is the total matching, whatever the page size."""

    count: int
    snapshots: list[Snapshot]
    next_offset: int | None


class CreateVolumeRequest(BaseModel):
    """A disk to make, from ``snapshot_id`` when given: EVS needs the zone, the disk type and a
    size of at least the snapshot's, and refuses a zone or type other than its source disk's."""

    availability_zone: str
    volume_type: str
    size: int
    snapshot_id: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON request body; unset optional fields are left out for EVS's defaults."""
        return {"volume": self.model_dump(exclude_none=True)}


class CreatedVolume(BaseModel):
    """The answer to a disk create: the job that makes it, and the disk's ID when EVS gives it
    (metadata ``create_for_volume_id: "true"`` asks for it)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    volume_ids: Annotated[list[str], _none_as(list)] = Field(default_factory=list)


class JobEntities(BaseModel):
    """What a disk job is about."""

    model_config = ConfigDict(extra="ignore")

    volume_id: str | None = None
    size: int | None = None
    name: str | None = None
    volume_type: str | None = None


class Job(BaseModel):
    """An EVS job (``createVolume``, ``deleteVolume``, ...): ``status`` is ``INIT``,
    ``RUNNING``, ``SUCCESS`` or ``FAIL`` (with ``error_code`` and ``fail_reason``)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    status: str
    job_type: str | None = None
    begin_time: str | None = None
    end_time: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    entities: Annotated[JobEntities, _none_as(JobEntities)] = Field(default_factory=JobEntities)


class Volume(BaseModel):
    """An EVS disk as ``show`` and ``list`` return it; ``snapshot_id`` names the snapshot it was
    made from, if any."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str
    size: int
    name: Annotated[str, _none_as(str)] = ""
    description: str | None = None
    availability_zone: str | None = None
    volume_type: str | None = None
    snapshot_id: str | None = None
    metadata: Annotated[dict[str, str], _none_as(dict)] = Field(default_factory=dict)
    created_at: UTCDateTime | None = None
    updated_at: UTCDateTime | None = None


class ListVolumesQuery(BaseModel):
    """Filters of ``GET .../cloudvolumes/detail``; ``metadata`` matches disks carrying every
    pair given."""

    offset: int | None = None
    limit: int | None = None
    name: str | None = None
    status: str | None = None
    availability_zone: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    def params(self) -> tuple[tuple[str, str], ...]:
        """Query pairs; ``metadata`` goes as the JSON object EVS decodes."""
        fields = self.model_dump(exclude={"metadata"}, exclude_none=True)
        pairs = tuple((key, str(value)) for key, value in fields.items())
        if not self.metadata:
            return pairs
        metadata = json.dumps(self.metadata, ensure_ascii=False, separators=(",", ":"))
        return (*pairs, ("metadata", metadata))


class VolumePage(BaseModel):
    """One page of a disk list: ``count`` is the total matching, whatever the page size."""

    count: int
    volumes: list[Volume]
    next_offset: int | None
