"""Pydantic models of EVS snapshot requests and answers.

Answers are read tolerantly (unknown fields ignored, nulls where EVS may send them) because the
service adds fields over time and the operator must not break on them; timestamps come without a
zone and are UTC, so they are made timezone-aware here once for every caller.
"""

from __future__ import annotations

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
