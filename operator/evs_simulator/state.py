"""Disks and snapshots with EVS's rules and real, time-driven state transitions.

Transitions are settled lazily against a monotonic clock whenever a record is read: a snapshot
created with a 2-second creation time reads ``creating`` for 2 seconds and ``available`` after,
exactly as if a worker had flipped it, but with no task per snapshot, so thousands stay cheap.
Every operation runs without awaiting, so each is atomic on the event loop.

EVS's list is served from an index that trails the records: a new snapshot is listed only
``list_lag_seconds`` after its creation, while show reads the record and sees it at once.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evs_simulator.config import SimulatorConfig
from evs_simulator.errors import SimError, bad_request, invalid_volume, not_found

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
MAX_TEXT_BYTES = 255
# Huawei's current API pages: a name of at most 64 characters, a description of at most 85.
MAX_TEXT_CHARS = {"name": 64, "description": 85}
MAX_SNAPSHOTS_PER_VOLUME = 7
MAX_LIST_LIMIT = 1000
RESERVED_METADATA_PREFIX = "__system__"
BACKUP_NAME_PREFIX = "autobk_snapshot_"
STATUSES = frozenset(
    {"creating", "available", "error", "deleting", "error_deleting", "rollbacking", "backing-up"}
)
LIST_VOLUME_FIELDS = {"service_type", "dedicated_storage_id", "dedicated_storage_name"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    """EVS ids are canonical hyphenated UUIDs; anything else is refused before lookup."""
    return bool(_UUID.match(value))


def evs_time(moment: datetime) -> str:
    """EVS's timestamp form: UTC, microseconds, no zone suffix."""
    return moment.strftime(TIME_FORMAT)


class Volume(BaseModel):
    """A disk: snapshots take their size, zone, enterprise project and storage pool from it.

    The admin API validates disks it is given against this same model.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str
    size: int = Field(default=10, ge=1)
    status: str = "available"
    name: str = ""
    availability_zone: str = "cn-north-4a"
    enterprise_project_id: str = "0"
    service_type: str = "EVS"
    dedicated_storage_id: str | None = None
    dedicated_storage_name: str | None = None


@dataclass
class Snapshot:
    """One snapshot record; ``due``/``next_status`` hold the transition in flight, if any.

    ``born`` is the monotonic instant of creation, from which the list index's lag runs.
    """

    id: str
    seq: int
    volume: Volume
    name: str
    description: str | None
    metadata: dict[str, str]
    size: int
    status: str
    created_at: datetime
    born: float
    updated_at: datetime | None = None
    deleted: bool = False
    started: float = 0.0
    due: float | None = None
    next_status: str | None = None


@dataclass(frozen=True)
class NewSnapshot:
    """A create request that passed every check, ready to be applied."""

    volume: Volume
    name: str
    description: str | None
    metadata: dict[str, str]


@dataclass
class Store:
    """All disks and snapshots of one simulated project, and the operations EVS offers on them.

    ``list_lag_seconds`` starts from the config and may change while running; it applies to every
    snapshot by its age, so setting it to 0 makes all of them listable at once.
    """

    config: SimulatorConfig
    clock: Callable[[], float] = time.monotonic
    volumes: dict[str, Volume] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    list_lag_seconds: float = field(init=False, default=0.0)
    _seq: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the configured seed disks, no snapshots and the configured list lag.

        Ids replay from the seed.
        """
        self.list_lag_seconds = self.config.list_lag_seconds
        self.volumes = {
            seed.id: Volume(id=seed.id, size=seed.size, status=seed.status)
            for seed in self.config.volumes
        }
        self.snapshots = {}
        self._seq = 0
        self._rng = random.Random(self.config.seed)  # noqa: S311 - seeded on purpose: ids replay

    def new_id(self) -> str:
        """A UUID4 drawn from the seeded generator, so a replayed run sees the same ids."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # -- time ---------------------------------------------------------------------------------

    def _wall(self, moment: float) -> datetime:
        """The wall-clock time of a past or present monotonic instant."""
        return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=self.clock() - moment)

    def _begin(self, snap: Snapshot, status: str, seconds: float, then: str) -> None:
        now = self.clock()
        snap.status = status
        snap.started = now
        snap.due = now + seconds
        snap.next_status = then

    def _settle(self, snap: Snapshot) -> None:
        """Apply a transition whose time has come."""
        if snap.due is None or self.clock() < snap.due:
            return
        finished, then = snap.due, snap.next_status
        snap.due = snap.next_status = None
        if then == "gone":
            snap.deleted = True
        elif snap.status == "creating":
            # A disk that broke while its snapshot was being taken leaves the snapshot in error.
            snap.status = "error" if snap.volume.status == "error" else "available"
        elif snap.status == "rollbacking":
            snap.status = "available"
            if snap.volume.status == "rollbacking":
                snap.volume.status = "available"
        snap.updated_at = self._wall(finished)

    def _live(self) -> list[Snapshot]:
        for snap in self.snapshots.values():
            self._settle(snap)
        return [snap for snap in self.snapshots.values() if not snap.deleted]

    def _get(self, snapshot_id: str) -> Snapshot:
        if not is_uuid(snapshot_id):
            raise bad_request("EVS.2045", f"Invalid snapshot id: {snapshot_id}")
        snap = self.snapshots.get(snapshot_id)
        if snap is not None:
            self._settle(snap)
        if snap is None or snap.deleted:
            raise not_found("Snapshot", snapshot_id)
        return snap

    # -- views --------------------------------------------------------------------------------

    def _progress(self, snap: Snapshot) -> str:
        if snap.status == "creating" and snap.due is not None:
            span = snap.due - snap.started
            done = (self.clock() - snap.started) / span if span > 0 else 1.0
            return f"{min(99, int(done * 100))}%"
        return "0%" if snap.status in ("creating", "error") else "100%"

    def view(self, snap: Snapshot) -> dict[str, Any]:
        """The snapshot object as show/create/update answer it."""
        return {
            "id": snap.id,
            "status": snap.status,
            "name": snap.name,
            "description": snap.description,
            "created_at": evs_time(snap.created_at),
            "updated_at": evs_time(snap.updated_at) if snap.updated_at else None,
            "metadata": dict(snap.metadata),
            "volume_id": snap.volume.id,
            "size": snap.size,
            "os-extended-snapshot-attributes:project_id": self.config.project_id,
            "os-extended-snapshot-attributes:progress": self._progress(snap),
        }

    def list_view(self, snap: Snapshot) -> dict[str, Any]:
        """List items additionally carry the disk's service type and dedicated storage."""
        return {
            **self.view(snap),
            **snap.volume.model_dump(include=LIST_VOLUME_FIELDS),
        }

    # -- EVS operations -----------------------------------------------------------------------

    def check_create(self, body: Any) -> NewSnapshot:
        """Every check of POST /cloudsnapshots (body, disk status, quota), applying nothing."""
        spec = _section(body, "snapshot")
        volume_id = _volume_id(spec, "snapshot")
        force = spec.get("force", False)
        if not isinstance(force, bool):
            raise bad_request("EVS.1052", "Invalid request body: snapshot.force must be a boolean.")
        name = _text(spec, "name") or ""
        description = _text(spec, "description")
        metadata = _metadata(spec.get("metadata"))
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise not_found("Volume", volume_id)
        if volume.status == "in-use" and not force:
            raise invalid_volume(volume.id, volume.status, "available")
        if volume.status not in ("available", "in-use"):
            raise invalid_volume(volume.id, volume.status, "available or in-use")
        taken = sum(1 for snap in self._live() if snap.volume is volume)
        if taken >= MAX_SNAPSHOTS_PER_VOLUME:
            raise SimError(
                413,
                "EVS.5413",
                f"Quota exceeded: volume {volume.id} already has {taken} snapshots "
                f"(limit {MAX_SNAPSHOTS_PER_VOLUME}).",
            )
        return NewSnapshot(volume, name, description, metadata)

    def create(self, body: Any) -> dict[str, Any]:
        """POST /cloudsnapshots: check, then start ``creating``."""
        new = self.check_create(body)
        self._seq += 1
        now = self.clock()
        snap = Snapshot(
            id=self.new_id(),
            seq=self._seq,
            volume=new.volume,
            name=new.name,
            description=new.description,
            metadata=new.metadata,
            size=new.volume.size,
            status="creating",
            created_at=self._wall(now),
            born=now,
        )
        self.snapshots[snap.id] = snap
        self._begin(snap, "creating", self.config.create_seconds, "available")
        return {"snapshot": self.view(snap)}

    def show(self, snapshot_id: str) -> dict[str, Any]:
        """GET /cloudsnapshots/{id}."""
        return {"snapshot": self.view(self._get(snapshot_id))}

    def list_snapshots(
        self, query: Mapping[str, list[str]], link: Callable[[int, int], str]
    ) -> dict[str, Any]:
        """GET /cloudsnapshots/detail: every filter, newest first, offset/limit paging.

        Snapshots younger than the list lag are left out, ``count`` included.
        ``link(limit, offset)`` renders the ``next`` link, present only when a limit was given.
        """
        limit = _int_param(query, "limit", MAX_LIST_LIMIT)
        if limit > MAX_LIST_LIMIT:
            raise bad_request("EVS.1023", f"Invalid limit {limit}: at most {MAX_LIST_LIMIT}.")
        offset = _int_param(query, "offset", 0)
        for status in query.get("status", []):
            if status not in STATUSES:
                raise bad_request("EVS.5400", f"Invalid snapshot status: {status}")
        indexed_before = self.clock() - self.list_lag_seconds
        matched = [
            snap for snap in self._live() if snap.born <= indexed_before and _matches(snap, query)
        ]
        matched.sort(key=lambda snap: snap.seq, reverse=True)
        answer: dict[str, Any] = {
            "count": len(matched),
            "snapshots": [self.list_view(snap) for snap in matched[offset : offset + limit]],
        }
        if "limit" in query:
            more = offset + limit < len(matched)
            answer["snapshots_links"] = (
                [{"href": link(limit, offset + limit), "rel": "next"}] if more else []
            )
        return answer

    def update(self, snapshot_id: str, body: Any) -> dict[str, Any]:
        """PUT /cloudsnapshots/{id}: name and description only, not while being deleted."""
        snap = self._get(snapshot_id)
        spec = _section(body, "snapshot")
        if not {"name", "description"} & spec.keys():
            raise bad_request("EVS.1052", "Invalid request body: name or description is required.")
        name = _text(spec, "name")
        description = _text(spec, "description")
        if snap.status in ("deleting", "error_deleting"):
            raise bad_request("EVS.5400", f"Invalid snapshot: snapshot {snap.id} is {snap.status}.")
        if "name" in spec:
            snap.name = name or ""
        if "description" in spec:
            snap.description = description
        snap.updated_at = self._wall(self.clock())
        return {"snapshot": self.view(snap)}

    def delete(self, snapshot_id: str) -> None:
        """DELETE /cloudsnapshots/{id}: only from available or error; gone after the delay."""
        snap = self._get(snapshot_id)
        if snap.status == "error_deleting":
            raise SimError(500, "EVS.2019", f"Snapshot {snap.id} is in status error_deleting.")
        if snap.status not in ("available", "error"):
            raise bad_request(
                "EVS.1047",
                f"Invalid snapshot: snapshot {snap.id} status must be available or error, "
                f"but current status is: {snap.status}.",
            )
        self._begin(snap, "deleting", self.config.delete_seconds, "gone")

    def rollback(self, snapshot_id: str, body: Any) -> dict[str, Any]:
        """POST /cloudsnapshots/{id}/rollback onto the snapshot's own, detached disk."""
        snap = self._get(snapshot_id)
        spec = _section(body, "rollback")
        volume_id = _volume_id(spec, "rollback")
        name = _text(spec, "name")
        if snap.status != "available":
            raise bad_request(
                "EVS.2043",
                f"Snapshot {snap.id} status must be available, but current status is: "
                f"{snap.status}.",
            )
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise not_found("Volume", volume_id)
        if volume is not snap.volume:
            raise bad_request(
                "EVS.5400", f"Snapshot {snap.id} was not taken of volume {volume_id}."
            )
        if volume.status != "available":
            raise invalid_volume(volume.id, volume.status, "available")
        if name:
            volume.name = name
        volume.status = "rollbacking"
        self._begin(snap, "rollbacking", self.config.rollback_seconds, "available")
        return {"rollback": {"volume_id": volume.id}}

    # -- admin --------------------------------------------------------------------------------

    def admin_view(self, snap: Snapshot) -> dict[str, Any]:
        return {**self.list_view(snap), "deleted": snap.deleted}

    def all_snapshots(self) -> list[dict[str, Any]]:
        """Every snapshot ever made, deleted ones included, oldest first."""
        for snap in self.snapshots.values():
            self._settle(snap)
        return [self.admin_view(snap) for snap in self.snapshots.values()]

    def admin_snapshot(self, snapshot_id: str) -> Snapshot:
        snap = self.snapshots.get(snapshot_id)
        if snap is None:
            raise not_found("Snapshot", snapshot_id)
        self._settle(snap)
        return snap

    def remove(self, snapshot_id: str) -> None:
        """Delete a snapshot instantly, as someone outside the operator would."""
        snap = self.admin_snapshot(snapshot_id)
        snap.due = snap.next_status = None
        snap.deleted = True

    def force_status(self, snapshot_id: str, status: str) -> dict[str, Any]:
        """Pin a status; any transition in flight is dropped so the status stays put."""
        snap = self.admin_snapshot(snapshot_id)
        snap.due = snap.next_status = None
        snap.status = status
        snap.updated_at = self._wall(self.clock())
        return self.admin_view(snap)


def _section(body: Any, key: str) -> dict[str, Any]:
    section = body.get(key) if isinstance(body, dict) else None
    if not isinstance(section, dict):
        raise bad_request("EVS.1052", f"Invalid request body: a {key!r} object is required.")
    return section


def _volume_id(spec: Mapping[str, Any], section: str) -> str:
    """A required volume id: missing is a body error (EVS.1052), malformed is EVS.1002."""
    volume_id = spec.get("volume_id")
    if not isinstance(volume_id, str):
        raise bad_request("EVS.1052", f"Invalid request body: {section}.volume_id is required.")
    if not is_uuid(volume_id):
        raise bad_request("EVS.1002", f"Invalid volume id: {volume_id}")
    return volume_id


def _text(spec: Mapping[str, Any], key: str) -> str | None:
    """An optional name/description: a string of at most 255 UTF-8 bytes, and of at most 64
    (name) or 85 (description) characters."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("EVS.1052", f"Invalid request body: {key} must be a string.")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise bad_request("EVS.5400", f"Invalid {key}: longer than {MAX_TEXT_BYTES} bytes.")
    if len(value) > MAX_TEXT_CHARS[key]:
        raise bad_request(
            "EVS.5400", f"Invalid {key}: longer than {MAX_TEXT_CHARS[key]} characters."
        )
    if key == "name" and value.startswith(BACKUP_NAME_PREFIX):
        raise bad_request("EVS.5400", f"Invalid name: {BACKUP_NAME_PREFIX} is kept for backups.")
    return value


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request("EVS.1052", "Invalid request body: metadata must map strings to strings.")
    for key, item in value.items():
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise bad_request("EVS.5400", f"Invalid metadata: key {key} is reserved.")
        if not key or len(key) > MAX_TEXT_BYTES or len(item) > MAX_TEXT_BYTES:
            raise bad_request("EVS.5400", f"Invalid metadata: {key!r} too long or empty.")
    return dict(value)


def _int_param(query: Mapping[str, list[str]], key: str, default: int) -> int:
    values = query.get(key)
    if not values:
        return default
    try:
        number = int(values[-1])
    except ValueError:
        number = -1
    if number < 0:
        raise bad_request("EVS.5400", f"Invalid {key}: {values[-1]}")
    return number


def _matches(snap: Snapshot, query: Mapping[str, list[str]]) -> bool:
    """Every given filter must hold; a repeated ``id`` matches any of its values."""
    volume = snap.volume
    fields: dict[str, str | None] = {
        "name": snap.name,
        "status": snap.status,
        "volume_id": volume.id,
        "availability_zone": volume.availability_zone,
        "id": snap.id,
        "service_type": volume.service_type,
        "enterprise_project_id": volume.enterprise_project_id,
        "dedicated_storage_id": volume.dedicated_storage_id,
        "dedicated_storage_name": volume.dedicated_storage_name,
    }
    for key, actual in fields.items():
        wanted = query.get(key)
        if not wanted:
            continue
        if key == "enterprise_project_id" and "all_granted_eps" in wanted:
            continue
        if actual not in wanted:
            return False
    return True
