"""Stateful property test of the restore guarantees (docs/restore.md).

Hypothesis interleaves what users do (create restores to a new disk with or without a claim, or
rollbacks with or without a safety snapshot, from CloudSnapshots or raw EVS snapshot IDs, with
either deletion policy; delete them, re-create them under the same name; delete the source
CloudSnapshots and the EVS snapshots; attach and detach disks; delete the PersistentVolumes and
claims restores made; make a claim of the name a restore wants), what EVS does (lost answers,
creates applied after the client gave up on them, 5xx and 429 bursts, refusals; disks and
snapshots that take time), what the rest of the cluster does (the PersistentVolume binder, the
snapshot controller making safety snapshots Ready), the operator's process (killed and started
again with no memory over the same stores, the Lease lost and regained) and reconcile steps. It
runs the real RestoreController and Reconciler with the EVS disk client against an in-process
simulator whose store it reads, and checks after every rule:

- at most one disk was ever made per restore UID, counting the disks already deleted (the
  simulator's create jobs);
- a disk was deleted only if a restore with deletionPolicy Delete made it and was deleted, and a
  PersistentVolume or claim only if such a restore made it;
- a disk was rolled back only by a rollback restore, onto the source disk of the snapshot it
  names, while detached, and with a safety snapshot only once that CloudSnapshot was Ready and
  its EVS snapshot of that disk available;
- nothing is written and no EVS change is sent while the Lease is lost;
and at the end, once every restore is deleted and released, that the disks of the Delete
restores are gone and those of the Retain ones are kept.

The profile is chosen by HYPOTHESIS_PROFILE: "ci" (the default, part of `make test`) or "long".
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
)

from cloudsnap.api.constants import API_VERSION, OWNER_UID_METADATA_KEY, READY, SNAPSHOT_KIND
from cloudsnap.controllers.restore.controller import RESTORE_FINALIZER, RestoreController
from cloudsnap.controllers.restore.decisions import (
    RESTORE_UID_LABEL,
    made_by,
    safety_snapshot_name,
)
from cloudsnap.controllers.restore.reconciler import Reconciler
from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.disks import EVSDiskConnector
from evs_simulator.admin_client import AdminClient
from evs_simulator.app import Simulator
from evs_simulator.config import SimulatorConfig, VolumeSeed
from evs_simulator.errors import SimError
from evs_simulator.server import serving
from tests.fixtures.machines import BURSTS, TIMING, LoopMachine, machine_settings
from tests.fixtures.objects import MemoryObjects
from tests.fixtures.world import SECRET_NAME, FakeCluster
from tests.waiting import eventually

NAMESPACE = "team"
CLASS = "main"
NAMES = ("r1", "r2", "r3")
DISK_A = "11111111-1111-4111-8111-111111111111"
DISK_B = "22222222-2222-4222-8222-222222222222"
# The CloudSnapshots of the two source disks, and the raw EVS snapshot IDs restored without one.
SOURCES = {"snap-a": DISK_A, "snap-b": DISK_B}
RESTORE_SOURCES = ("snap-a", "snap-b", "raw-a", "raw-b")
TARGETS = ("disk", "claim", "rollback", "rollback without safety snapshot")
# Disks, snapshots and rollbacks take this long in EVS; a create EVS applies after the client gave
# up on it lands after LATE_SECONDS.
EVS_SECONDS = 0.05
LATE_SECONDS = 0.1
FAULTS: dict[str, list[dict[str, Any]]] = {
    "lost create answer": [{"operation": "create_volume", "kind": "lost_response", "count": 1}],
    "create applied late": [
        {
            "operation": "create_volume",
            "kind": "late_apply",
            "then": "disconnect",
            "apply_after_seconds": LATE_SECONDS,
            "count": 1,
        }
    ],
    "lost rollback answer": [{"operation": "rollback", "kind": "lost_response", "count": 1}],
    "lost delete answer": [{"operation": "delete_volume", "kind": "lost_response", "count": 1}],
    **BURSTS,
    "quota refusal": [
        {
            "operation": "create_volume",
            "kind": "refusal",
            "status": 400,
            "code": "EVS.1034",
            "count": 1,
        }
    ],
}
# At the end, steps run until every restore is released; EVS timings take real time.
SETTLE_SECONDS = 5.0


@dataclass
class Rollback:
    """A rollback EVS was asked for, as the simulator received it, and what held then."""

    restore: str  # the "namespace/name" being stepped when it was sent
    uid: str
    snapshot_id: str
    volume_id: str
    disk_status: str
    snapshot_disk: str | None
    safety_ready: bool
    applied: bool = False
    """Whether the simulator took it (it refuses one in a state it cannot roll back)."""


@dataclass
class Spy:
    """What the simulator received that changes a disk: deletes and rollbacks, each recorded
    before the simulator applies (or refuses) it."""

    deletes: list[tuple[str, str | None]] = field(default_factory=list)
    """(disk ID, the owner UID it was tagged with)."""
    rollbacks: list[Rollback] = field(default_factory=list)


class Kube(MemoryObjects):
    """An in-memory API server for restores (the objects ``MemoryObjects`` writes),
    CloudSnapshots, PersistentVolumes and claims (the RestoreStore): writes bump resourceVersion
    and reach the controller as watch events."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.operator_deleted: list[dict[str, Any]] = []
        """PersistentVolumes and claims the operator deleted, as they were."""
        self.controller: RestoreController | None = None

    @property
    def restores(self) -> dict[str, dict[str, Any]]:
        """The restores, by name."""
        return self.objects

    def _deliver(
        self,
        observe: Callable[[str | None, Mapping[str, Any]], None],
        kind: str,
        body: Mapping[str, Any],
    ) -> None:
        asyncio.get_running_loop().call_soon(observe, kind, copy.deepcopy(dict(body)))

    def watch(self, kind: str, body: dict[str, Any]) -> None:
        if self.controller is not None:
            self._deliver(self.controller.observe, kind, body)

    def _snapshot_changed(self, body: Mapping[str, Any], kind: str) -> None:
        if self.controller is not None:
            self._deliver(self.controller.observe_source, kind, body)

    @staticmethod
    def _stored(body: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["uid"] = str(uuid.uuid4())
        return stored

    # -- what users and the rest of the cluster do -------------------------------------------

    def apply_restore(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.add(
            {
                "apiVersion": API_VERSION,
                "kind": "CloudSnapshotRestore",
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
                    "uid": str(uuid.uuid4()),
                    "generation": 1,
                },
                "spec": copy.deepcopy(dict(spec)),
            }
        )

    def put_snapshot(self, body: Mapping[str, Any]) -> None:
        self.snapshots[body["metadata"]["name"]] = copy.deepcopy(dict(body))
        self._snapshot_changed(body, "MODIFIED")

    def delete_snapshot(self, name: str) -> None:
        body = self.snapshots.pop(name)
        self._snapshot_changed(body, "DELETED")

    # -- the RestoreStore ----------------------------------------------------------------------

    async def read_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.snapshots.get(name))

    async def create_snapshot(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.writes.append((name, "create csnap"))
        if name not in self.snapshots:
            self.snapshots[name] = self._stored(body)
            self._snapshot_changed(self.snapshots[name], "ADDED")
        return copy.deepcopy(self.snapshots[name])

    async def read_volume(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.volumes.get(name))

    async def read_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.claims.get(name))

    async def create_volume(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append((body["metadata"]["name"], "create pv"))
        return copy.deepcopy(self.volumes.setdefault(body["metadata"]["name"], self._stored(body)))

    async def create_claim(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append((body["metadata"]["name"], "create pvc"))
        return copy.deepcopy(self.claims.setdefault(body["metadata"]["name"], self._stored(body)))

    async def delete_volume(self, name: str, uid: str) -> None:
        self.writes.append((name, "delete pv"))
        if self.volumes.get(name, {}).get("metadata", {}).get("uid") == uid:
            self.operator_deleted.append(self.volumes.pop(name))

    async def delete_claim(self, namespace: str, name: str, uid: str) -> None:
        self.writes.append((name, "delete pvc"))
        if self.claims.get(name, {}).get("metadata", {}).get("uid") == uid:
            self.operator_deleted.append(self.claims.pop(name))


def is_ready(body: Mapping[str, Any] | None) -> bool:
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == READY and c.get("status") == "True" for c in conditions)


def cloudsnapshot(name: str, snapshot_id: str) -> dict[str, Any]:
    """A Ready CloudSnapshot of the EVS snapshot, made with the class."""
    return {
        "apiVersion": API_VERSION,
        "kind": SNAPSHOT_KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
        "spec": {"volumeID": SOURCES.get(name, ""), "className": CLASS},
        "status": {
            "snapshotID": snapshot_id,
            "account": {"className": CLASS},
            "conditions": [{"type": READY, "status": "True"}],
        },
    }


class RestoreMachine(LoopMachine):
    def __init__(self) -> None:
        super().__init__()
        config = SimulatorConfig(
            volumes=(VolumeSeed.parse(f"{DISK_A}:10"), VolumeSeed.parse(f"{DISK_B}:10")),
            create_seconds=EVS_SECONDS,
            rollback_seconds=EVS_SECONDS,
            volume_create_seconds=EVS_SECONDS,
            volume_delete_seconds=EVS_SECONDS,
            seed=1,
        )
        self.sim = Simulator(config)
        self.spy = Spy()
        self.tap_simulator()
        endpoint = self.run(self.exits.enter_async_context(serving(self.sim)))
        self.admin = AdminClient(endpoint)
        self.exits.push_async_callback(self.admin.aclose)
        self.cluster = FakeCluster()
        self.cluster.add_class(CLASS, endpoint=endpoint, project_id=config.project_id)
        self.cluster.secrets[SECRET_NAME] = {
            "accessKey": config.access_key,
            "secretKey": config.secret_key,
        }
        self.kube = Kube()
        # The EVS snapshots of the source disks, one per disk, and their CloudSnapshots.
        self.evs_snapshots = {
            name: self.sim.store.create({"snapshot": {"volume_id": disk, "name": name}})[
                "snapshot"
            ]["id"]
            for name, disk in SOURCES.items()
        }
        self.run(
            eventually(
                lambda: all(
                    (self.evs_snapshot(snapshot_id) or {}).get("status") == "available"
                    for snapshot_id in self.evs_snapshots.values()
                ),
                timeout=10,
                what="the source snapshots available",
            )
        )
        for name, snapshot_id in self.evs_snapshots.items():
            self.kube.snapshots[name] = cloudsnapshot(name, snapshot_id)
        self.leading = True
        self.sent_when_lost = (0, 0)
        self.stepping = ""
        self.controller = self.new_controller()
        self.present: set[str] = set()  # names the users made and have not deleted
        self.specs: dict[str, dict[str, Any]] = {}  # every restore's spec by UID
        self.deleted_with_delete: set[str] = set()  # UIDs whose deletion deletes what they made
        self.foreign_claims: set[str] = set()  # UIDs of claims users made

    # -- plumbing -----------------------------------------------------------------------------

    def tap_simulator(self) -> None:
        """Record every disk delete and rollback the simulator receives, before it acts."""
        store = self.sim.store
        delete_volume, rollback = store.delete_volume, store.rollback

        def deleting(volume_id: str) -> dict[str, Any]:
            volume = self.evs_disk(volume_id) or {}
            owner = (volume.get("metadata") or {}).get(OWNER_UID_METADATA_KEY)
            self.spy.deletes.append((volume_id, owner))
            return delete_volume(volume_id)

        def rolling_back(snapshot_id: str, body: Any) -> dict[str, Any]:
            volume_id = str(((body or {}).get("rollback") or {}).get("volume_id"))
            volume = self.evs_disk(volume_id) or {"status": "gone"}
            snapshot = self.evs_snapshot(snapshot_id) or {}
            restore = self.kube.restores.get(self.stepping.partition("/")[2]) or {}
            sent = Rollback(
                restore=self.stepping,
                uid=str(restore.get("metadata", {}).get("uid")),
                snapshot_id=snapshot_id,
                volume_id=volume_id,
                disk_status=volume["status"],
                snapshot_disk=snapshot.get("volume_id"),
                safety_ready=self.safety_ready(restore, volume_id),
            )
            self.spy.rollbacks.append(sent)
            event(f"rollback sent, disk {volume['status']}")
            answer = rollback(snapshot_id, body)
            sent.applied = True
            return answer

        store.delete_volume = deleting  # type: ignore[method-assign]
        store.rollback = rolling_back  # type: ignore[method-assign]

    def safety_ready(self, restore: Mapping[str, Any], volume_id: str) -> bool:
        """Whether the restore's safety CloudSnapshot is Ready, made by it, and its EVS snapshot
        of ``volume_id`` available."""
        meta = restore.get("metadata") or {}
        found = self.kube.snapshots.get(safety_snapshot_name(str(meta.get("name"))))
        if found is None or not is_ready(found) or not made_by(found, str(meta.get("uid"))):
            return False
        snapshot = self.evs_snapshot(found["status"].get("snapshotID", "")) or {}
        return snapshot.get("status") == "available" and snapshot.get("volume_id") == volume_id

    def evs_disk(self, volume_id: str) -> dict[str, Any] | None:
        """The disk as EVS shows it now, or None if it is gone."""
        try:
            return dict(self.sim.store.show_volume(volume_id)["volume"])
        except SimError:
            return None

    def evs_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        """The snapshot as EVS shows it now, or None if it is gone."""
        try:
            return dict(self.sim.store.show(snapshot_id)["snapshot"])
        except SimError:
            return None

    def new_controller(self) -> RestoreController:
        """A fresh operator process: new accounts, reconciler and controller, no memory; the
        watch's initial listing of every restore."""
        accounts = Accounts(
            self.cluster, self.cluster, timeout=2.0, poll_window=0.0, guard=lambda: self.leading
        )
        self.accounts.append(accounts)
        reconciler = Reconciler(
            EVSDiskConnector(accounts),
            self.kube,
            finalizer=RESTORE_FINALIZER,
            namespaces=self.cluster,
            volumes=self.cluster,
            timing=TIMING,
            rng=random.Random(0),
        )
        controller = RestoreController(
            reconciler, self.kube, max_workers=8, may_act=lambda: self.leading
        )
        self.kube.controller = controller

        def listing() -> None:
            for body in self.kube.restores.values():
                controller.observe(None, copy.deepcopy(body))

        self.run(self.act(listing))
        return controller

    def deliver(self) -> None:
        """Let the watch events queued reach the controller."""
        self.run(asyncio.sleep(0))

    def step(self, name: str) -> None:
        if name not in self.kube.restores:
            return
        was_ready = is_ready(self.kube.restores[name])
        self.stepping = f"{NAMESPACE}/{name}"
        try:
            self.run(self.controller.step(self.stepping))
        finally:
            self.stepping = ""
        self.deliver()
        body = self.kube.restores.get(name)
        if not was_ready and is_ready(body):
            assert body is not None
            event(f"a restore became Ready: {sorted(body['spec'])}")

    def record_delete(self, body: Mapping[str, Any]) -> None:
        """What the operator may delete because of this deletion: what a newVolume restore with
        deletionPolicy Delete made, if it still holds its finalizer (else it is gone at once)."""
        spec = body.get("spec") or {}
        if RESTORE_FINALIZER not in (body["metadata"].get("finalizers") or ()):
            return
        if spec.get("newVolume") is not None and spec.get("deletionPolicy") == "Delete":
            self.deleted_with_delete.add(body["metadata"]["uid"])

    def disks_made(self) -> Counter[str]:
        """Disks EVS ever made per owner UID, the deleted ones included (one create job each)."""
        return Counter(
            job.volume.metadata.get(OWNER_UID_METADATA_KEY, "")
            for job in self.sim.store.jobs.values()
            if job.job_type == "createVolume"
        )

    def live_disks(self) -> list[dict[str, Any]]:
        """The disks EVS holds now, as the simulator's admin API shows them."""
        return list(self.run(self.admin.volumes()))

    def sent_so_far(self) -> tuple[int, int]:
        """Kubernetes writes and Events, and EVS creates, deletes and rollbacks received."""
        calls = self.run(self.admin.calls())
        changes = sum(calls.get(op, 0) for op in ("create_volume", "delete_volume", "rollback"))
        return len(self.kube.writes) + len(self.kube.events), changes

    # -- what users do --------------------------------------------------------------------------

    def absent_names(self) -> list[str]:
        return [name for name in NAMES if name not in self.present]

    @initialize(
        source=st.sampled_from(RESTORE_SOURCES),
        kind=st.sampled_from(TARGETS),
        delete=st.booleans(),
    )
    def start_with_a_restore(self, source: str, kind: str, delete: bool) -> None:
        self.make_restore(NAMES[0], source, kind, delete)

    @precondition(lambda self: self.absent_names())
    @rule(
        data=st.data(),
        source=st.sampled_from(RESTORE_SOURCES),
        kind=st.sampled_from(TARGETS),
        delete=st.booleans(),
    )
    def create_restore(self, data: st.DataObject, source: str, kind: str, delete: bool) -> None:
        name = data.draw(st.sampled_from(self.absent_names()), label="name")
        self.make_restore(name, source, kind, delete)

    def make_restore(self, name: str, source: str, kind: str, delete: bool) -> None:
        """Apply a restore of `source` (a CloudSnapshot, or "raw-" and the disk's letter for its
        EVS snapshot's ID) to the `kind` of TARGETS."""
        spec: dict[str, Any] = {"deletionPolicy": "Delete" if delete else "Retain"}
        if source.startswith("raw"):
            spec["snapshotID"] = self.evs_snapshots[source.replace("raw", "snap")]
            spec["className"] = CLASS
        else:
            spec["snapshotName"] = source
        if kind == "disk":
            spec["newVolume"] = {}
        elif kind == "claim":
            spec["newVolume"] = {"claim": {"name": f"{name}-data"}}
        else:
            spec["rollback"] = {"safetySnapshot": kind == "rollback"}
        self.present.add(name)
        self.known.add(name)
        if name in self.kube.restores:
            event("create refused: AlreadyExists (the previous one is still being deleted)")
            return
        body = self.run(self.act(lambda: self.kube.apply_restore(name, spec)))
        self.specs[body["metadata"]["uid"]] = spec

    async def act(self, operation: Callable[[], Any]) -> Any:
        """A user operation on the loop (watch events are delivered there)."""
        answer = operation()
        await asyncio.sleep(0)
        return answer

    @precondition(lambda self: self.present)
    @rule(data=st.data(), recreate=st.booleans())
    def delete_restore(self, data: st.DataObject, recreate: bool) -> None:
        """Delete a restore, or delete it and apply its manifest again (a new UID, when the old
        one is gone at once)."""
        name = data.draw(st.sampled_from(sorted(self.present)), label="name")
        body = self.kube.restores.get(name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.present.discard(name)
            return
        self.record_delete(body)
        self.run(self.act(lambda: self.kube.delete(name)))
        if not recreate:
            self.present.discard(name)
        elif name in self.kube.restores:
            event("re-create refused: AlreadyExists (still being deleted)")
        else:
            again = self.run(self.act(lambda: self.kube.apply_restore(name, body["spec"])))
            self.specs[again["metadata"]["uid"]] = body["spec"]

    @precondition(lambda self: self.known)
    @rule(rounds=st.integers(1, 3))
    def the_cluster_goes_on(self, rounds: int) -> None:
        """Rounds of a little time passing, the binder and the snapshot controller acting, and
        a step of every restore: what takes many rules otherwise."""
        for _ in range(rounds):
            self.run(asyncio.sleep(EVS_SECONDS))
            self.binder()
            self.snapshot_controller()
            for name in sorted(self.known):
                self.step(name)

    @rule(name=st.sampled_from(sorted(SOURCES)), in_evs=st.booleans())
    def delete_a_source(self, name: str, in_evs: bool) -> None:
        """A user deletes a source CloudSnapshot (its EVS snapshot stays, Retain), or someone
        deletes the EVS snapshot in EVS's console."""
        if not in_evs:
            if name in self.kube.snapshots:
                self.run(self.act(lambda: self.kube.delete_snapshot(name)))
            return
        try:
            self.sim.store.delete(self.evs_snapshots[name])
        except SimError as exc:
            event(f"EVS refused the snapshot delete: {exc.code}")

    @rule(which=st.integers(0, 7), attach=st.booleans())
    def attach_or_detach(self, which: int, attach: bool) -> None:
        """A workload attaches a detached disk, or lets an attached one go (sources and restored
        disks alike)."""
        wanted, then = ("available", "in-use") if attach else ("in-use", "available")
        disks = sorted(v["id"] for v in self.live_disks() if v["status"] == wanted)
        if not disks:
            event(f"attach_or_detach: no disk is {wanted}")
            return
        self.run(self.admin.set_volume(disks[which % len(disks)], status=then))

    @rule(which=st.integers(0, 7), claim=st.booleans())
    def user_deletes_volume_or_claim(self, which: int, claim: bool) -> None:
        objects = self.kube.claims if claim else self.kube.volumes
        if not objects:
            event("user_deletes_volume_or_claim: none")
            return
        del objects[sorted(objects)[which % len(objects)]]

    @precondition(lambda self: self.absent_names())
    @rule(data=st.data())
    def user_makes_a_claim_first(self, data: st.DataObject) -> None:
        """A claim of the name a future restore will ask for, made by someone else."""
        name = f"{data.draw(st.sampled_from(self.absent_names()), label='name')}-data"
        if name not in self.kube.claims:
            body = Kube._stored({"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {}})
            self.kube.claims[name] = body
            self.foreign_claims.add(body["metadata"]["uid"])

    # -- what the rest of the cluster does ------------------------------------------------------

    @rule()
    def binder(self) -> None:
        """The PersistentVolume binder: a claim naming a volume reserved for it becomes Bound."""
        for name, claim in self.kube.claims.items():
            volume = self.kube.volumes.get((claim.get("spec") or {}).get("volumeName", ""))
            if volume is not None and volume["spec"]["claimRef"]["name"] == name:
                claim["status"] = {"phase": "Bound"}

    @rule()
    def snapshot_controller(self) -> None:
        """The CloudSnapshot controller for the safety snapshots restores made: an EVS snapshot
        of the disk, Ready once EVS has made it."""
        for body in list(self.kube.snapshots.values()):
            if is_ready(body) or body.get("status", {}).get("error"):
                continue
            snapshot_id = body.get("status", {}).get("snapshotID")
            if snapshot_id is None:
                request = {"snapshot": {"volume_id": body["spec"]["volumeID"], "force": True}}
                try:
                    made = self.sim.store.create(request)["snapshot"]
                except SimError as exc:
                    body["status"] = {"error": {"code": exc.code, "message": exc.message}}
                else:
                    body["status"] = {"snapshotID": made["id"]}
            elif (self.evs_snapshot(snapshot_id) or {}).get("status") == "available":
                body["status"]["conditions"] = [{"type": READY, "status": "True"}]
            self.run(self.act(lambda body=body: self.kube.put_snapshot(body)))

    # -- what EVS and the operator's process do -------------------------------------------------

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def evs_faults(self, fault: str) -> None:
        self.run(self.admin.set_faults(FAULTS[fault], seed=len(self.kube.writes)))

    @rule(seconds=st.sampled_from((0.03, 0.06, 0.15)))
    def time_passes(self, seconds: float) -> None:
        """Real time passes: disks are made and deleted, late creates land."""
        self.run(asyncio.sleep(seconds))

    @rule()
    def kill_the_operator(self) -> None:
        """SIGKILL and a new process: nothing remembered, every restore listed again."""
        self.controller = self.new_controller()
        if not self.leading:
            self.controller.stop_leading()

    @precondition(lambda self: self.leading)
    @rule()
    def lose_the_lease(self) -> None:
        self.leading = False
        self.controller.stop_leading()
        self.sent_when_lost = self.sent_so_far()

    @precondition(lambda self: not self.leading)
    @rule()
    def gain_the_lease(self) -> None:
        self.leading = True
        self.run(self.act(self.controller.start_leading))

    # -- the guarantees -------------------------------------------------------------------------

    @invariant()
    def at_most_one_disk_per_restore(self) -> None:
        made = self.disks_made()
        assert "" not in made, "a disk made without an owner tag"
        several = {uid: n for uid, n in made.items() if n > 1}
        assert not several, f"several disks made for restore(s): {several}"

    @invariant()
    def only_disks_of_deleted_delete_restores_are_deleted(self) -> None:
        for volume_id, owner in self.spy.deletes:
            assert owner is not None, f"disk {volume_id}, made by no restore, was deleted"
            assert owner in self.deleted_with_delete, (
                f"disk {volume_id} of restore {owner} ({self.specs.get(owner)}) deleted, but that"
                " restore was not deleted with deletionPolicy Delete"
            )

    @invariant()
    def only_objects_of_deleted_delete_restores_are_deleted(self) -> None:
        for body in self.kube.operator_deleted:
            meta = body["metadata"]
            owner = (meta.get("labels") or {}).get(RESTORE_UID_LABEL)
            assert meta["uid"] not in self.foreign_claims, f"a user's claim {meta['name']} deleted"
            assert owner in self.deleted_with_delete, f"{meta['name']} of {owner} deleted"

    @invariant()
    def rollbacks_only_as_asked(self) -> None:
        for sent in self.spy.rollbacks:
            spec = self.specs.get(sent.uid)
            assert spec is not None, f"rollback of {sent.volume_id} sent by no restore"
            assert spec.get("rollback") is not None, f"{sent} sent by a restore of {spec}"
            named = spec.get("snapshotID") or self.evs_snapshots[spec["snapshotName"]]
            assert sent.snapshot_id == named, f"{sent} rolled back another snapshot"
            assert sent.volume_id == sent.snapshot_disk, f"{sent} is not the snapshot's own disk"
            assert sent.disk_status != "in-use", f"{sent}: rolled back while attached"
            if spec["rollback"]["safetySnapshot"]:
                assert sent.safety_ready, f"{sent}: rolled back before its safety snapshot"
        applied = Counter(sent.uid for sent in self.spy.rollbacks if sent.applied)
        twice = {uid: count for uid, count in applied.items() if count > 1}
        assert not twice, f"rolled back more than once (a write between would be lost): {twice}"

    @invariant()
    def nothing_sent_without_the_lease(self) -> None:
        if not self.leading:
            sent = self.sent_so_far()
            assert sent == self.sent_when_lost, (
                f"without the Lease: {self.sent_when_lost} -> {sent}"
            )

    # -- the end --------------------------------------------------------------------------------

    def teardown(self) -> None:
        self.close_after(self.settle_everything_deleted)

    def settle_everything_deleted(self) -> None:
        self.run(self.admin.clear_faults())
        for volume in self.live_disks():
            if volume["status"] == "in-use":
                self.run(self.admin.set_volume(volume["id"], status="available"))
        if not self.leading:
            self.gain_the_lease()
        for name, body in list(self.kube.restores.items()):
            if not body["metadata"].get("deletionTimestamp"):
                self.record_delete(body)
                self.run(self.act(lambda name=name: self.kube.delete(name)))
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.kube.restores and time.monotonic() < deadline:
            self.snapshot_controller()
            self.binder()
            for name in list(self.kube.restores):
                self.step(name)
            self.run(asyncio.sleep(0.01))
        stuck = {
            name: (body.get("status") or {}).get("error")
            for name, body in self.kube.restores.items()
        }
        assert not stuck, f"never released: {stuck}"
        self.run(asyncio.sleep(LATE_SECONDS + EVS_SECONDS))  # late creates and deletes land
        self.at_most_one_disk_per_restore()
        self.only_disks_of_deleted_delete_restores_are_deleted()
        self.rollbacks_only_as_asked()
        live = {v["metadata"].get(OWNER_UID_METADATA_KEY) for v in self.live_disks()}
        leaked = live & self.deleted_with_delete
        assert not leaked, f"disks of Delete restores left behind: {leaked}"
        kept = {uid for uid in self.disks_made() if uid not in self.deleted_with_delete}
        assert kept <= live, f"disks of Retain restores deleted: {kept - live}"


RestoreMachine.TestCase.settings = machine_settings(
    int(os.environ.get("RESTORE_EXAMPLES", "30")), ci_steps=40
)
test_restore_guarantees = RestoreMachine.TestCase
