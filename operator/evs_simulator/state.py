"""Disks and snapshots with EVS's rules and real, time-driven state transitions.

Transitions are settled lazily against a monotonic clock whenever a record is read: a snapshot
created with a 2-second creation time reads ``creating`` for 2 seconds and ``available`` after,
exactly as if a worker had flipped it, but with no task per snapshot, so thousands stay cheap.
Disks made or deleted through the API move the same way, and EVS's job API reports on them.
Every operation runs without awaiting, so each is atomic on the event loop.

Every disk carries a content version standing for the data on it: a snapshot captures its disk's
version, a disk made from a snapshot starts with the snapshot's, and a rollback gives the disk the
snapshot's version, so a test can tell which data a restore brought back.

EVS's list is served from an index that trails the records: a new snapshot is listed only
``list_lag_seconds`` after its creation, while show reads the record and sees it at once.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

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
VOLUME_TYPES = frozenset({"SATA", "SAS", "GPSSD", "SSD", "ESSD", "GPSSD2", "ESSD2"})
MAX_VOLUME_GB = 32768
# Disk statuses a delete accepts (EVS.1046 names them).
DELETABLE = ("available", "error", "error_extending", "error_restoring", "error_rollbacking")
ROLLBACK_TARGETS = ("available", "error_rollbacking")
CLIENT_TOKEN_SECONDS = 8 * 3600
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    """EVS ids are canonical hyphenated UUIDs; anything else is refused before lookup."""
    return bool(_UUID.match(value))


def evs_time(moment: datetime) -> str:
    """EVS's timestamp form: UTC, microseconds, no zone suffix."""
    return moment.strftime(TIME_FORMAT)


def job_time(moment: datetime) -> str:
    """The job API's timestamp form: UTC, milliseconds, ``Z``."""
    return moment.strftime(TIME_FORMAT)[:-3] + "Z"


def _now() -> datetime:
    """The wall-clock time now, in EVS's zone-less UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class Volume(BaseModel):
    """A disk: snapshots take their size, zone, enterprise project and storage pool from it.

    The admin API validates disks it is given against this same model; ``content_version``
    stands for the data on the disk. The private fields hold the transition in flight, if any,
    and the version a rollback in flight will leave.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str
    size: int = Field(default=10, ge=1)
    status: str = "available"
    name: str = ""
    description: str | None = None
    availability_zone: str = "cn-north-4a"
    volume_type: str = "SAS"
    metadata: dict[str, str] = Field(default_factory=dict)
    snapshot_id: str | None = None
    content_version: int = Field(default=0, ge=0)
    enterprise_project_id: str = "0"
    service_type: str = "EVS"
    dedicated_storage_id: str | None = None
    dedicated_storage_name: str | None = None
    _created_at: datetime = PrivateAttr(default_factory=_now)
    _updated_at: datetime | None = PrivateAttr(default=None)
    _due: float | None = PrivateAttr(default=None)
    _next_status: str | None = PrivateAttr(default=None)
    _version_after: int | None = PrivateAttr(default=None)

    def pin(self) -> None:
        """Drop the transition in flight, so a status the admin API set stays put."""
        self._due = self._next_status = self._version_after = None


@dataclass
class Snapshot:
    """One snapshot record; ``due``/``next_status`` hold the transition in flight, if any.

    ``born`` is the monotonic instant of creation, from which the list index's lag runs;
    ``content_version`` is the disk's when the snapshot was taken.
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
    content_version: int = 0


@dataclass(frozen=True)
class NewSnapshot:
    """A create request that passed every check, ready to be applied."""

    volume: Volume
    name: str
    description: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class NewVolume:
    """A disk create request that passed every check; ``source`` is the snapshot, if any."""

    size: int
    availability_zone: str
    volume_type: str
    name: str
    description: str | None
    metadata: dict[str, str]
    source: Snapshot | None


@dataclass
class Job:
    """One asynchronous disk operation of EVS's job API (``createVolume``, ``deleteVolume``).

    Its status follows the disk's: running while the disk is in ``during``, done after.
    """

    id: str
    job_type: str
    volume: Volume
    during: str
    begin: datetime


@dataclass(frozen=True)
class Issued:
    """The answer given to the first request with one ``X-Client-Token``, and when."""

    fingerprint: str
    answer: dict[str, Any]
    at: float


@dataclass
class Store:
    """All disks and snapshots of one simulated project, and the operations EVS offers on them.

    ``list_lag_seconds`` starts from the config and may change while running; it applies to every
    snapshot by its age, so setting it to 0 makes all of them listable at once. ``volume_quota``
    likewise starts from the config.
    """

    config: SimulatorConfig
    clock: Callable[[], float] = time.monotonic
    volumes: dict[str, Volume] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    list_lag_seconds: float = field(init=False, default=0.0)
    volume_quota: int | None = field(init=False, default=None)
    _tokens: dict[str, Issued] = field(default_factory=dict)
    _seq: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the configured seed disks, no snapshots, jobs or client tokens, and the
        configured list lag and quota.

        Ids replay from the seed.
        """
        self.list_lag_seconds = self.config.list_lag_seconds
        self.volume_quota = self.config.volume_quota
        self.volumes = {
            seed.id: Volume(id=seed.id, size=seed.size, status=seed.status)
            for seed in self.config.volumes
        }
        self.snapshots = {}
        self.jobs = {}
        self._tokens = {}
        self._seq = 0
        self._rng = random.Random(self.config.seed)  # noqa: S311 - seeded on purpose: ids replay

    def new_id(self) -> str:
        """A UUID4 drawn from the seeded generator, so a replayed run sees the same ids."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_job(self, job_type: str, volume: Volume, during: str) -> Job:
        """A job on ``volume``; job ids are 32 hex digits, as EVS's are."""
        job = Job(
            f"{self._rng.getrandbits(128):032x}", job_type, volume, during, self._wall(self.clock())
        )
        self.jobs[job.id] = job
        return job

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
        snap.updated_at = self._wall(finished)

    def _begin_volume(
        self, volume: Volume, status: str, seconds: float, then: str, version: int | None = None
    ) -> None:
        """Put the disk in ``status`` for ``seconds``, then in ``then`` (``gone``: deleted), with
        ``version`` as its content version after, if given."""
        volume.status = status
        volume._due = self.clock() + seconds
        volume._next_status = then
        volume._version_after = version

    def _settle_volume(self, volume: Volume) -> None:
        """Apply a disk transition whose time has come; a deleted disk leaves the store."""
        due = volume._due
        if due is None or self.clock() < due:
            return
        then, version = volume._next_status, volume._version_after
        volume.pin()
        volume._updated_at = self._wall(due)
        if then == "gone":
            self.volumes.pop(volume.id, None)
            return
        if then is not None:
            volume.status = then
        if version is not None:
            volume.content_version = version

    def _volume(self, volume_id: str) -> Volume | None:
        """A disk not yet gone, its transitions settled."""
        volume = self.volumes.get(volume_id)
        if volume is not None:
            self._settle_volume(volume)
        return self.volumes.get(volume_id)

    def _live_volumes(self) -> list[Volume]:
        """Every disk not yet gone, oldest first, transitions settled."""
        for volume in list(self.volumes.values()):
            self._settle_volume(volume)
        return list(self.volumes.values())

    def _get_volume(self, volume_id: str) -> Volume:
        """The disk a path names: EVS.1002 if the ID is malformed, EVS.5404 if there is none."""
        if not is_uuid(volume_id):
            raise bad_request("EVS.1002", f"Invalid volume id: {volume_id}")
        volume = self._volume(volume_id)
        if volume is None:
            raise not_found("Volume", volume_id)
        return volume

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
        volume = self._volume(volume_id)
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
            content_version=new.volume.content_version,
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
        limit, offset = _window(query)
        for status in query.get("status", []):
            if status not in STATUSES:
                raise bad_request("EVS.5400", f"Invalid snapshot status: {status}")
        indexed_before = self.clock() - self.list_lag_seconds
        matched = [
            snap for snap in self._live() if snap.born <= indexed_before and _matches(snap, query)
        ]
        matched.sort(key=lambda snap: snap.seq, reverse=True)
        views = [self.list_view(snap) for snap in matched[offset : offset + limit]]
        return _page("snapshots", len(matched), views, query, link)

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
        """DELETE /cloudsnapshots/{id}: only from available or error, and not while a disk is
        being made from it; gone after the delay."""
        snap = self._get(snapshot_id)
        if snap.status == "error_deleting":
            raise SimError(500, "EVS.2019", f"Snapshot {snap.id} is in status error_deleting.")
        if snap.status not in ("available", "error"):
            raise bad_request(
                "EVS.1047",
                f"Invalid snapshot: snapshot {snap.id} status must be available or error, "
                f"but current status is: {snap.status}.",
            )
        made = [v.id for v in self.volumes.values() if v.snapshot_id == snap.id]
        making = [
            volume_id
            for volume_id in made
            if (volume := self._volume(volume_id)) is not None and volume.status == "creating"
        ]
        if making:
            raise SimError(
                400,
                "EVS.5400",
                f"Invalid snapshot: snapshot {snap.id} is in use: disk {making[0]} is being "
                "created from it.",
                "badRequest",
            )
        self._begin(snap, "deleting", self.config.delete_seconds, "gone")

    def rollback(self, snapshot_id: str, body: Any) -> dict[str, Any]:
        """POST /cloudsnapshots/{id}/rollback onto the snapshot's own, detached disk."""
        snap = self._get(snapshot_id)
        spec = _section(body, "rollback")
        volume_id = _volume_id(spec, "rollback")
        name = _text(spec, "name")
        _need_available(snap)
        volume = self._volume(volume_id)
        if volume is None:
            raise not_found("Volume", volume_id)
        if volume is not snap.volume:
            raise bad_request(
                "EVS.5400", f"Snapshot {snap.id} was not taken of volume {volume_id}."
            )
        if volume.status not in ROLLBACK_TARGETS:
            raise invalid_volume(volume.id, volume.status, " or ".join(ROLLBACK_TARGETS))
        if name:
            volume.name = name
        seconds = self.config.rollback_seconds
        self._begin_volume(volume, "rollbacking", seconds, "available", snap.content_version)
        self._begin(snap, "rollbacking", seconds, "available")
        return {"rollback": {"volume_id": volume.id}}

    # -- disks and jobs -----------------------------------------------------------------------

    def volume_view(self, volume: Volume) -> dict[str, Any]:
        """The disk object as show and list answer it (``content_version`` is not EVS's)."""
        return {
            "id": volume.id,
            "name": volume.name,
            "status": volume.status,
            "size": volume.size,
            "availability_zone": volume.availability_zone,
            "volume_type": volume.volume_type,
            "description": volume.description,
            "metadata": dict(volume.metadata),
            "snapshot_id": volume.snapshot_id,
            "attachments": [],
            "bootable": "false",
            "encrypted": False,
            "multiattach": False,
            "shareable": "false",
            "created_at": evs_time(volume._created_at),
            "updated_at": evs_time(volume._updated_at) if volume._updated_at else None,
            "os-vol-tenant-attr:tenant_id": self.config.project_id,
            **volume.model_dump(
                include={"enterprise_project_id", *LIST_VOLUME_FIELDS},
            ),
        }

    def check_create_volume(self, body: Any, token: str | None) -> NewVolume | dict[str, Any]:
        """Every check of POST /v2.1/cloudvolumes, applying nothing.

        A request repeating an earlier one's ``X-Client-Token`` (same body, within 8 hours)
        gets that request's answer back instead.
        """
        replay = self._replay(body, token)
        if replay is not None:
            return replay
        spec = _section(body, "volume", "EVS.1009")
        zone = spec.get("availability_zone")
        if not isinstance(zone, str) or zone not in self.config.availability_zones:
            raise bad_request("EVS.1036", f"invalid availability zone! {zone!r} is not one.")
        volume_type = spec.get("volume_type")
        if volume_type not in VOLUME_TYPES:
            raise bad_request("EVS.1020", f"invalid volume type! {volume_type!r} is not one.")
        size = spec.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_VOLUME_GB:
            raise bad_request("EVS.1010", f"invalid volume size! {size!r} GB.")
        if spec.get("count", 1) != 1:
            raise bad_request("EVS.5400", "Invalid count: one disk per request is modelled.")
        name = _string(spec, "name", "EVS.1003") or ""
        description = _string(spec, "description", "EVS.1004")
        metadata = _metadata(spec.get("metadata"))
        source = self._source(spec.get("snapshot_id"), size, zone, str(volume_type))
        live = len(self._live_volumes())
        if self.volume_quota is not None and live >= self.volume_quota:
            raise bad_request(
                "EVS.1034",
                f"volume count exceeded volume count quota! {live} of {self.volume_quota}.",
            )
        return NewVolume(size, zone, str(volume_type), name, description, metadata, source)

    def _source(self, snapshot_id: Any, size: int, zone: str, volume_type: str) -> Snapshot | None:
        """The snapshot a disk is made from, checked against the disk asked for."""
        if snapshot_id is None:
            return None
        if not isinstance(snapshot_id, str):
            raise bad_request("EVS.2045", f"Invalid snapshot id: {snapshot_id!r}")
        snap = self._get(snapshot_id)
        _need_available(snap)
        if size < snap.size:
            raise bad_request(
                "EVS.1010",
                f"invalid volume size! {size} GB is less than snapshot {snap.id}'s {snap.size} GB.",
            )
        if zone != snap.volume.availability_zone:
            raise bad_request(
                "EVS.2054", "Cannot create volume from snapshot as the az is invalid!"
            )
        if volume_type != snap.volume.volume_type:
            raise bad_request(
                "EVS.2096",
                f"Target volumeType[{volume_type}] is not matched with snapshot[{snap.id}] !",
            )
        return snap

    def _replay(self, body: Any, token: str | None) -> dict[str, Any] | None:
        """The answer already given for ``token``, or None for a request not seen before."""
        if token is None:
            return None
        if not is_uuid(token):
            raise bad_request("EVS.2218", "invalid X-Client-Token in header")
        issued = self._tokens.get(token)
        if issued is None:
            return None
        if self.clock() - issued.at > CLIENT_TOKEN_SECONDS:
            raise bad_request("EVS.2220", "idempotent request over 8 hours from the first request.")
        if issued.fingerprint != _fingerprint(body):
            raise bad_request("EVS.2219", "url/project id/body conflict with X-Client-Token")
        return issued.answer

    def create_volume(self, body: Any, token: str | None) -> dict[str, Any]:
        """POST /v2.1/cloudvolumes: check, then start ``creating`` under a ``createVolume`` job."""
        new = self.check_create_volume(body, token)
        if isinstance(new, dict):
            return new
        source = new.source
        volume = Volume(
            id=self.new_id(),
            size=new.size,
            status="creating",
            name=new.name,
            description=new.description,
            availability_zone=new.availability_zone,
            volume_type=new.volume_type,
            metadata=new.metadata,
            snapshot_id=source.id if source else None,
            content_version=source.content_version if source else 0,
            enterprise_project_id=source.volume.enterprise_project_id if source else "0",
        )
        volume._created_at = self._wall(self.clock())
        self._begin_volume(volume, "creating", self.config.volume_create_seconds, "available")
        self.volumes[volume.id] = volume
        job = self._new_job("createVolume", volume, "creating")
        answer: dict[str, Any] = {"job_id": job.id}
        if new.metadata.get("create_for_volume_id") == "true":
            answer["volume_ids"] = [volume.id]
        if token is not None:
            self._tokens[token] = Issued(_fingerprint(body), answer, self.clock())
        return answer

    def show_volume(self, volume_id: str) -> dict[str, Any]:
        """GET /v2/cloudvolumes/{id}."""
        return {"volume": self.volume_view(self._get_volume(volume_id))}

    def list_volumes(
        self, query: Mapping[str, list[str]], link: Callable[[int, int], str]
    ) -> dict[str, Any]:
        """GET /v2/cloudvolumes/detail: name, status, zone, id and metadata filters, newest
        first, offset/limit paging; ``metadata`` is a JSON object every match carries."""
        limit, offset = _window(query)
        wanted = _metadata_filter(query.get("metadata"))
        matched = [
            volume
            for volume in reversed(self._live_volumes())
            if wanted.items() <= volume.metadata.items() and _volume_matches(volume, query)
        ]
        views = [self.volume_view(volume) for volume in matched[offset : offset + limit]]
        return _page("volumes", len(matched), views, query, link)

    def delete_volume(self, volume_id: str) -> dict[str, Any]:
        """DELETE /v2/cloudvolumes/{id}: a detached disk without snapshots, under a job."""
        volume = self._get_volume(volume_id)
        if volume.status == "error_deleting":
            raise SimError(500, "EVS.2020", f"volume is error_deleting! {volume.id}")
        if volume.status not in DELETABLE:
            raise bad_request(
                "EVS.1046",
                f"volume status must be {', '.join(DELETABLE)} when delete volume! "
                f"Volume {volume.id} is {volume.status}.",
            )
        if any(snap.volume is volume for snap in self._live()):
            raise SimError(
                400,
                "EVS.5400",
                f"Invalid volume: Volume {volume.id} must not be migrating, attached, belong to "
                "a group, have snapshots or be disassociated from snapshots after volume "
                "transfer.",
                "badRequest",
            )
        self._begin_volume(volume, "deleting", self.config.volume_delete_seconds, "gone")
        return {"job_id": self._new_job("deleteVolume", volume, "deleting").id}

    def show_job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}: RUNNING while the disk is in the job's status, then SUCCESS, or
        FAIL when the disk ended in error."""
        job = self.jobs.get(job_id)
        if job is None:
            raise bad_request("Common.0011", f"query job fail. No job {job_id}.")
        volume = job.volume
        gone = self._volume(volume.id) is not volume
        if not gone and volume.status == job.during:
            status = "RUNNING"
        elif gone or volume.status not in ("error", "error_deleting"):
            status = "SUCCESS"
        else:
            status = "FAIL"
        finished = volume._updated_at if status == "SUCCESS" else None
        failed = status == "FAIL"
        return {
            "status": status,
            "job_id": job.id,
            "job_type": job.job_type,
            "begin_time": job_time(job.begin),
            "end_time": job_time(finished or job.begin) if status != "RUNNING" else "",
            "error_code": f"EVS.{2024 if volume.status == 'error' else 2020}" if failed else None,
            "fail_reason": f"volume is {volume.status}!" if failed else None,
            "entities": {
                "volume_id": volume.id,
                "size": volume.size,
                "name": volume.name,
                "volume_type": volume.volume_type,
            },
        }

    # -- admin --------------------------------------------------------------------------------

    def admin_view(self, snap: Snapshot) -> dict[str, Any]:
        return {
            **self.list_view(snap),
            "deleted": snap.deleted,
            "content_version": snap.content_version,
        }

    def admin_volumes(self) -> list[dict[str, Any]]:
        """Every disk not yet gone, transitions settled, content versions included."""
        return [volume.model_dump() for volume in self._live_volumes()]

    def write(self, volume_id: str) -> dict[str, Any]:
        """Write to a disk: its content version goes up by one."""
        volume = self._volume(volume_id)
        if volume is None:
            raise not_found("Volume", volume_id)
        volume.content_version += 1
        return volume.model_dump()

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

    def remove_volume(self, volume_id: str) -> None:
        """Delete a disk instantly, as someone outside the operator would."""
        if self._volume(volume_id) is None:
            raise not_found("Volume", volume_id)
        del self.volumes[volume_id]

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


def _section(body: Any, key: str, code: str = "EVS.1052") -> dict[str, Any]:
    section = body.get(key) if isinstance(body, dict) else None
    if not isinstance(section, dict):
        raise bad_request(code, f"Invalid request body: a {key!r} object is required.")
    return section


def _fingerprint(body: Any) -> str:
    """What makes two requests under one client token the same request."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _need_available(snap: Snapshot) -> None:
    """Rollback and disk creation need an available snapshot (EVS.2043)."""
    if snap.status != "available":
        raise bad_request(
            "EVS.2043",
            f"Snapshot {snap.id} status must be available, but current status is: {snap.status}.",
        )


def _volume_id(spec: Mapping[str, Any], section: str) -> str:
    """A required volume id: missing is a body error (EVS.1052), malformed is EVS.1002."""
    volume_id = spec.get("volume_id")
    if not isinstance(volume_id, str):
        raise bad_request("EVS.1052", f"Invalid request body: {section}.volume_id is required.")
    if not is_uuid(volume_id):
        raise bad_request("EVS.1002", f"Invalid volume id: {volume_id}")
    return volume_id


def _string(spec: Mapping[str, Any], key: str, code: str = "EVS.5400") -> str | None:
    """An optional string of at most 255 UTF-8 bytes; ``code`` answers a longer one."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("EVS.1052", f"Invalid request body: {key} must be a string.")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise bad_request(code, f"Invalid {key}: longer than {MAX_TEXT_BYTES} bytes.")
    return value


def _text(spec: Mapping[str, Any], key: str) -> str | None:
    """A snapshot's optional name/description: a string of at most 255 UTF-8 bytes, and of at
    most 64 (name) or 85 (description) characters."""
    value = _string(spec, key)
    if value is None:
        return None
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


def _window(query: Mapping[str, list[str]]) -> tuple[int, int]:
    """A list's ``limit`` (at most 1000, EVS.1023 above) and ``offset``."""
    limit = _int_param(query, "limit", MAX_LIST_LIMIT)
    if limit > MAX_LIST_LIMIT:
        raise bad_request("EVS.1023", f"Invalid limit {limit}: at most {MAX_LIST_LIMIT}.")
    return limit, _int_param(query, "offset", 0)


def _page(
    key: str,
    count: int,
    views: list[dict[str, Any]],
    query: Mapping[str, list[str]],
    link: Callable[[int, int], str],
) -> dict[str, Any]:
    """A list answer: the total, one page, and a ``{key}_links`` next link when a limit was
    given (``link(limit, offset)`` renders it)."""
    answer: dict[str, Any] = {"count": count, key: views}
    if "limit" in query:
        limit, offset = _window(query)
        more = offset + limit < count
        answer[f"{key}_links"] = (
            [{"href": link(limit, offset + limit), "rel": "next"}] if more else []
        )
    return answer


def _metadata_filter(values: list[str] | None) -> dict[str, str]:
    """The disk list's ``metadata`` filter: a JSON object of strings (EVS.1058 otherwise)."""
    if not values:
        return {}
    try:
        wanted = json.loads(values[-1])
    except ValueError:
        wanted = None
    if not isinstance(wanted, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in wanted.items()
    ):
        raise bad_request("EVS.1058", "invalid metadata filter!")
    return wanted


def _volume_matches(volume: Volume, query: Mapping[str, list[str]]) -> bool:
    """The disk list's name, status, zone and (repeatable) id filters."""
    fields = {
        "name": volume.name,
        "status": volume.status,
        "availability_zone": volume.availability_zone,
        "id": volume.id,
    }
    return all(actual in query[key] for key, actual in fields.items() if query.get(key))


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
