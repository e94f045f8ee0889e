"""In-memory stand-ins for the restore reconciler's cloud and Kubernetes: an EVS-like disk
client that honours create tokens and can lose answers or lag its list, and a store."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cloudsnap.api.models import AccountRef, CloudSnapshotClassSpec
from cloudsnap.controllers.restore.external import (
    Disk,
    DiskConnection,
    DiskRequest,
    DiskState,
    Job,
    SourceSnapshot,
)
from cloudsnap.runtime.failures import ExternalError, Failure, Kind
from tests.fixtures.objects import MemoryObjects

SOURCE_DISK = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
SNAPSHOT = "7b1e3c2a-5d4f-4e6a-9b8c-0d1e2f3a4b5c"
ACCOUNT = AccountRef(class_name="default", region="r1", project_id="p1", endpoint="127.0.0.1")


def class_spec(**rules: Any) -> CloudSnapshotClassSpec:
    """The fake account's class, with these tenancy rules (by their field names)."""
    return CloudSnapshotClassSpec.model_validate(
        {"region": "r1", "projectID": "p1", "credentialsSecretRef": {"name": "evs"}, **rules}
    )


@dataclass
class FakeDisks:
    """An account's disks and jobs. ``lose_next_answer`` applies the next create or rollback
    and raises a transient failure instead of answering; ``drop_next_rollback`` raises it without
    applying the rollback; ``list_lag`` hides disks from ``find_owned``."""

    snapshots: dict[str, SourceSnapshot] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    tokens: dict[str, tuple[DiskRequest, str]] = field(default_factory=dict)
    requests: list[DiskRequest] = field(default_factory=list)
    creates: int = 0
    rollbacks: list[tuple[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    """Every call made, by the name of its method."""
    lose_next_answer: bool = False
    drop_next_rollback: bool = False
    list_lag: bool = False
    refuse: Failure | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.snapshots[SNAPSHOT] = SourceSnapshot(SNAPSHOT, True, "available", 10, SOURCE_DISK)
        self.disks[SOURCE_DISK] = Disk(
            SOURCE_DISK, DiskState.READY, "in-use", 10, "az-1", "SSD", None
        )

    async def snapshot(self, snapshot_id: str) -> SourceSnapshot | None:
        self.calls.append("snapshot")
        return self.snapshots.get(snapshot_id)

    async def disk(self, volume_id: str) -> Disk | None:
        self.calls.append("disk")
        return self.disks.get(volume_id)

    async def find_owned(self, owner_uid: str) -> list[Disk]:
        self.calls.append("find_owned")
        if self.list_lag:
            return []
        return [disk for disk in self.disks.values() if disk.owner_uid == owner_uid]

    async def create(self, request: DiskRequest, token: str) -> str:
        self.calls.append("create")
        self.creates += 1
        if self.refuse is not None:
            raise ExternalError(self.refuse)
        if token in self.tokens:
            first, job_id = self.tokens[token]
            assert first == request, "a repeated token must carry the same request"
        else:
            self.requests.append(request)
            volume_id = f"00000000-0000-4000-8000-{next(self._ids):012d}"
            self.disks[volume_id] = Disk(
                volume_id,
                DiskState.CREATING,
                "creating",
                request.size,
                request.availability_zone,
                request.volume_type,
                request.owner.uid,
            )
            job_id = f"job-{volume_id}"
            self.jobs[job_id] = Job(job_id, False, None, None)
            self.tokens[token] = (request, job_id)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise ExternalError(Failure("Timeout", "no answer", Kind.TRANSIENT))
        return job_id

    async def job(self, job_id: str) -> Job:
        self.calls.append("job")
        return self.jobs[job_id]

    async def delete(self, volume_id: str) -> bool:
        self.calls.append("delete")
        disk = self.disks.get(volume_id)
        if disk is None:
            return False
        self.disks[volume_id] = replace(disk, state=DiskState.DELETING, phase="deleting")
        return True

    async def rollback(self, snapshot_id: str, volume_id: str) -> None:
        self.calls.append("rollback")
        if self.drop_next_rollback:
            self.drop_next_rollback = False
            raise ExternalError(Failure("Timeout", "no answer", Kind.TRANSIENT))
        self.rollbacks.append((snapshot_id, volume_id))
        disk = self.disks[volume_id]
        self.disks[volume_id] = replace(disk, state=DiskState.BUSY, phase="rollbacking")
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise ExternalError(Failure("Timeout", "no answer", Kind.TRANSIENT))

    def finish_rollbacks(self, at: datetime) -> None:
        """EVS ends every rollback: the disk is available again, changed at ``at``."""
        for volume_id, disk in list(self.disks.items()):
            if disk.phase == "rollbacking":
                self.disks[volume_id] = replace(
                    disk, state=DiskState.READY, phase="available", updated_at=at
                )

    def finish_creates(self) -> None:
        """EVS makes every disk being created available and ends its job."""
        for job_id, job in list(self.jobs.items()):
            volume_id = job_id.removeprefix("job-")
            self.jobs[job_id] = replace(job, done=True, volume_id=volume_id)
            disk = self.disks[volume_id]
            if disk.state is DiskState.CREATING:
                self.disks[volume_id] = replace(disk, state=DiskState.READY, phase="available")

    def finish_deletes(self) -> None:
        for volume_id, disk in list(self.disks.items()):
            if disk.state is DiskState.DELETING:
                del self.disks[volume_id]

    def made(self) -> list[Disk]:
        """The disks made by restores (tagged with an owner)."""
        return [disk for disk in self.disks.values() if disk.owner_uid is not None]


@dataclass
class FakeConnector:
    disks: FakeDisks
    rules: CloudSnapshotClassSpec = field(default_factory=class_spec)

    async def connect(self, class_name: str | None) -> DiskConnection:
        return DiskConnection("default", ACCOUNT, self.rules, self.disks)


@dataclass
class MemoryStore(MemoryObjects):
    """CloudSnapshots, PersistentVolumes and claims in dictionaries, restores as
    ``MemoryObjects`` (by name, in one namespace); writes recorded."""

    snapshots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pod_lists: list[str] = field(default_factory=list)
    """The namespaces whose pods were listed, one entry a list call."""
    unlisted: set[str] = field(default_factory=set)
    """Namespaces whose pods the operator may not list."""
    _uids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def written(self) -> list[str]:
        """What was written, in order, without the names."""
        return [what for _, what in self.writes]

    async def read_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.snapshots.get((namespace, name))

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append((body["metadata"]["name"], "create csnap"))
        key = (namespace, body["metadata"]["name"])
        return self.snapshots.setdefault(key, self._stored(body))

    async def read_volume(self, name: str) -> dict[str, Any] | None:
        return self.volumes.get(name)

    async def read_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.claims.get((namespace, name))

    async def pods_in(self, namespace: str) -> Sequence[Mapping[str, Any]] | None:
        self.pod_lists.append(namespace)
        if namespace in self.unlisted:
            return None
        return [pod for (where, _), pod in self.pods.items() if where == namespace]

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = {**body, "metadata": {**body["metadata"], "uid": f"uid-{next(self._uids)}"}}
        return dict(stored)

    async def create_volume(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.writes.append((name, "create pv"))
        return self.volumes.setdefault(name, self._stored(body))

    async def create_claim(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append((body["metadata"]["name"], "create pvc"))
        return self.claims.setdefault((namespace, body["metadata"]["name"]), self._stored(body))

    async def delete_volume(self, name: str, uid: str) -> None:
        self.writes.append((name, "delete pv"))
        if self.volumes.get(name, {}).get("metadata", {}).get("uid") == uid:
            del self.volumes[name]

    async def delete_claim(self, namespace: str, name: str, uid: str) -> None:
        self.writes.append((name, "delete pvc"))
        if self.claims.get((namespace, name), {}).get("metadata", {}).get("uid") == uid:
            del self.claims[(namespace, name)]
