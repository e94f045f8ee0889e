"""Stateful property test of the ownership guarantees (docs/ownership.md).

Hypothesis interleaves, at random, what users and their tools do to CloudSnapshots and classes
(apply, rename, `kubectl replace` without our finalizer, delete, delete and re-create under the
same name, adopting another resource's snapshot, class edits, a new default class, a broken and a
fixed Secret), what EVS does (lost answers, 5xx and 429 bursts, creates applied after the client
gave up on them, a list that trails the records, creates and deletes that take time), the
operator's process (restarts that lose memory, the Lease lost and regained, also while a step
awaits EVS), time passing, and reconcile steps, some of them with a user operation landing while
the step awaits an EVS answer the test holds back. It runs the real Controller and Reconciler
against two in-process simulators (two accounts: one creates and deletes over a tenth of a second,
the other at once), and checks after every rule:

- at most one EVS snapshot carries any owner UID, but while the owner's create-doubt window is
  open (its status records an unanswered create), when a twin EVS applied late may still exist;
- no snapshot was deleted unless its owner was deleted with policy Delete (or an adopter deleted
  with an explicit Delete), or it was a twin of the snapshot its owner keeps;
- no status names a snapshot of another disk, another owner or another account than the one it
  records;
- nothing is written, posted or changed in EVS while the Lease is lost;
and at the end, once every create in doubt has settled (its window closed), that each live
snapshot tagged with a resource's UID is the one its status names (a late twin deleted, not left
beside it); then, once everything is deleted and settled, that only retained snapshots remain.

The profile is chosen by HYPOTHESIS_PROFILE: "ci" (the default, part of `make test`) or "long".
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from cloudsnap.api.constants import OWNER_UID_METADATA_KEY
from cloudsnap.controllers.snapshot.controller import FINALIZER
from cloudsnap.controllers.snapshot.external import (
    Changes,
    Connection,
    Connector,
    CreateRequest,
    ExternalClient,
    ExternalSnapshot,
)
from cloudsnap.controllers.snapshot.reconciler import Reconciler
from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.connector import EVSConnector
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.fixtures.machines import BURSTS, TIMING, LoopMachine, machine_settings
from tests.fixtures.world import SECRET_NAME, FakeCluster, World

T = TypeVar("T")

NAMES = ("a", "b", "c")
DISKS = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
)
MAIN, NEWER = "main", "newer"
MISSING_ID = "00000000-0000-4000-8000-000000000000"
# The first account's snapshots take this long to create and to delete (the `creating` and
# `deleting` branches); the second's are instant.
SLOW_SECONDS = 0.1
# A create EVS applies after the client gave up on it lands this long after it arrived; list lags
# as long. Both stay inside TIMING's create_doubt and absence_grace: later, EVS would break the
# guarantees in ways docs/ownership.md lists as out of reach (a twin listed only after the window).
LATE_SECONDS = 0.1
LIST_LAGS = (0.0, 0.05, 0.1)
FAULTS = {
    "lost create answer": [{"operation": "create", "kind": "lost_response", "count": 1}],
    **BURSTS,
    "create applied late": [
        {
            "operation": "create",
            "kind": "late_apply",
            "then": "disconnect",
            "apply_after_seconds": LATE_SECONDS,
            "count": 1,
        }
    ],
}
# Steps run by hand: the scheduler stays off so Hypothesis alone decides the interleaving. At the
# end, steps run until no create is in doubt, then until every object is gone; the grace periods
# above take real time.
SETTLE_SECONDS = 30.0


class Holds:
    """EVS answers held back at the operator's side: once armed, the next EVS call is made and
    answered, and its answer waits until released, so that the step awaiting it stays suspended
    there while the test acts."""

    def __init__(self) -> None:
        self.armed = False
        self.held = asyncio.Event()
        self.released = asyncio.Event()

    def arm(self) -> None:
        self.armed, self.held, self.released = True, asyncio.Event(), asyncio.Event()

    def disarm(self) -> None:
        self.armed = False
        self.released.set()

    async def gate(self) -> None:
        if not self.armed:
            return
        self.armed = False
        self.held.set()
        await self.released.wait()

    async def after(self, call: Awaitable[T]) -> T:
        """``call``'s answer (or its error) once the gate lets it through."""
        try:
            return await call
        finally:
            await self.gate()


class HeldClient:
    """An ExternalClient whose answers pass through ``Holds``."""

    def __init__(self, inner: ExternalClient, holds: Holds) -> None:
        self._inner = inner
        self._holds = holds

    async def observe(self, snapshot_id: str, *, recent: bool = False) -> ExternalSnapshot | None:
        return await self._holds.after(self._inner.observe(snapshot_id, recent=recent))

    async def confirm(self, snapshot_id: str) -> ExternalSnapshot | None:
        return await self._holds.after(self._inner.confirm(snapshot_id))

    def survey(self, wanted: int) -> AsyncIterator[ExternalSnapshot]:
        return self._inner.survey(wanted)

    async def find_owned(self, volume_id: str, owner_uid: str) -> list[ExternalSnapshot]:
        return await self._holds.after(self._inner.find_owned(volume_id, owner_uid))

    async def create(self, request: CreateRequest) -> ExternalSnapshot:
        return await self._holds.after(self._inner.create(request))

    async def update(self, snapshot_id: str, changes: Changes) -> ExternalSnapshot:
        return await self._holds.after(self._inner.update(snapshot_id, changes))

    async def delete(self, snapshot: ExternalSnapshot) -> ExternalSnapshot | None:
        return await self._holds.after(self._inner.delete(snapshot))


class HeldConnector:
    """The operator's connector, its clients wrapped in ``HeldClient``; one wrapped Connection per
    connection the inner connector hands out, since the reconciler compares them by identity."""

    def __init__(self, inner: Connector, holds: Holds) -> None:
        self._inner = inner
        self._holds = holds
        self._wrapped: dict[int, tuple[Connection, Connection]] = {}

    async def connect(self, class_name: str | None) -> Connection:
        conn = await self._inner.connect(class_name)
        known = self._wrapped.get(id(conn))
        if known is None or known[0] is not conn:
            wrapped = dataclasses.replace(conn, client=HeldClient(conn.client, self._holds))
            known = self._wrapped[id(conn)] = (conn, wrapped)
        return known[1]


class OwnershipMachine(LoopMachine):
    def __init__(self) -> None:
        super().__init__()
        seeds = tuple(f"{disk}:10" for disk in DISKS)
        # Two accounts; seeded apart so that they never hand out the same snapshot ID.
        self.sims: list[RunningSimulator] = [
            self.run(
                self.exits.enter_async_context(
                    running_simulator(
                        volumes=seeds, seed=seed, create_seconds=slow, delete_seconds=slow
                    )
                )
            )
            for seed, slow in ((1, SLOW_SECONDS), (2, 0.0))
        ]
        self.cluster = FakeCluster()
        self.cluster.add_class(MAIN, endpoint=self.sims[0].endpoint, project_id=self.project)
        self.cluster.secrets[SECRET_NAME] = self.good_secret()
        self.holds = Holds()
        self.leading = True  # whether this process holds the Lease (the world and EVS fences)
        self.sent_when_lost = (0, 0, 0)  # writes, Events, EVS changes when the Lease was lost
        self.world = World(self.new_reconciler())
        self.deleted_with_delete: set[str] = set()  # UIDs deleted under policy Delete
        self.present: set[str] = set()  # names the users made and have not deleted
        self.adopters_with_delete: set[str] = set()  # snapshot IDs adopted by such a resource

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def project(self) -> str:
        return self.sims[0].project_id

    def good_secret(self) -> dict[str, str]:
        return {"accessKey": self.sims[0].access_key, "secretKey": self.sims[0].secret_key}

    def new_reconciler(self) -> Reconciler:
        accounts = Accounts(
            self.cluster,
            self.cluster,
            timeout=2.0,
            poll_window=0.0,
            guard=lambda: self.leading,
        )
        self.accounts.append(accounts)
        return Reconciler(
            HeldConnector(EVSConnector(accounts), self.holds),
            finalizer=FINALIZER,
            volumes=self.cluster,
            namespaces=self.cluster,
            timing=TIMING,
            rng=random.Random(0),
        )

    def deliver(self) -> None:
        """Let the watch events the world queued reach the controller."""
        self.run(asyncio.sleep(0))

    def act(self, operation: Callable[[], object]) -> None:
        """A user operation, on the loop (the world delivers its watch events there)."""

        async def go() -> None:
            operation()
            await asyncio.sleep(0)

        self.run(go())

    def snapshots(self) -> list[dict[str, Any]]:
        return [snap for sim in self.sims for snap in self.run(sim.admin.snapshots())]

    def live(self, name: str) -> dict[str, Any] | None:
        return self.world.objects.get(name)

    def undeleted_names(self) -> list[str]:
        return [
            name
            for name, body in sorted(self.world.objects.items())
            if not body["metadata"].get("deletionTimestamp")
        ]

    def live_snapshot_ids(self) -> list[str]:
        return sorted(s["id"] for s in self.snapshots() if not s["deleted"])

    def set_leading(self, leading: bool) -> None:
        """The Lease lost or gained, as the elector reports it to the controller."""
        self.leading = self.world.leading = leading
        if leading:
            self.world.controller.start_leading()
        else:
            self.world.controller.stop_leading()

    def step(self, name: str) -> None:
        body = self.live(name)
        if body is None:
            return
        uid = body["metadata"]["uid"]
        self.run(self.world.controller.step(uid))
        self.deliver()

    def record_delete(self, body: dict[str, Any]) -> None:
        """Remember what the operator may delete because of this deletion.

        Deleting an object that has no finalizer at that moment (say, right after a `kubectl
        replace` stripped it) removes it before the operator can act: its snapshot stays.
        """
        if FINALIZER not in (body["metadata"].get("finalizers") or ()):
            return
        spec = body.get("spec", {})
        status = body.get("status", {})
        policy = spec.get("deletionPolicy") or status.get("deletionPolicy")
        adopted = bool(spec.get("snapshotID")) or bool(status.get("adopted"))
        if policy == "Delete" or (policy is None and not adopted):
            self.deleted_with_delete.add(body["metadata"]["uid"])
        if spec.get("deletionPolicy") == "Delete" and status.get("snapshotID"):
            self.adopters_with_delete.add(status["snapshotID"])

    # -- what users do ------------------------------------------------------------------------
    #
    # What a rule may do and which names it draws from follow the users' own record (`present`,
    # `known`), which only the rules change: Hypothesis replays a run by its draws, and the
    # world's state also depends on real time (EVS timings, grace periods). Where the world no
    # longer fits the user's view (an object still being deleted, or already released), the
    # operation gets the answer the API server would give.

    def absent_names(self) -> list[str]:
        return [name for name in NAMES if name not in self.present]

    @precondition(lambda self: self.absent_names())
    @rule(data=st.data(), disk=st.sampled_from(DISKS), retain=st.booleans())
    def apply(self, data: st.DataObject, disk: str, retain: bool) -> None:
        name = data.draw(st.sampled_from(self.absent_names()), label="name")
        spec: dict[str, Any] = {"volumeID": disk}
        if retain:
            spec["deletionPolicy"] = "Retain"
        self.create(name, spec)

    def create(self, name: str, spec: dict[str, Any]) -> None:
        self.present.add(name)
        self.known.add(name)
        if name in self.world.objects:
            event("create refused: AlreadyExists (the previous one is still being deleted)")
            return
        self.act(lambda: self.world.apply(name, **spec))

    @precondition(lambda self: self.present)
    @rule(data=st.data(), label=st.sampled_from(("x", "y")))
    def rename(self, data: st.DataObject, label: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.present)), label="name")
        if name in self.world.objects:
            self.act(lambda: self.world.change_spec(name, name=f"{name}-{label}"))

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def replace_without_finalizer(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.present)), label="name")
        if name in self.undeleted_names():
            self.act(lambda: self.world.replace(name))

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.present)), label="name")
        self.present.discard(name)
        if name in self.undeleted_names():
            self.delete_named(name)

    def delete_named(self, name: str) -> None:
        body = self.world.objects[name]
        self.record_delete(body)
        self.act(lambda: self.world.delete(name))

    @precondition(lambda self: self.absent_names())
    @rule(data=st.data(), which=st.integers(0, 7), explicit_delete=st.booleans())
    def adopt_another_snapshot(
        self, data: st.DataObject, which: int, explicit_delete: bool
    ) -> None:
        """Adopt a live snapshot, most likely another resource's (or a missing one if none)."""
        thief = data.draw(st.sampled_from(self.absent_names()), label="thief")
        ids = self.live_snapshot_ids()
        spec: dict[str, Any] = {"snapshotID": ids[which % len(ids)] if ids else MISSING_ID}
        if explicit_delete:
            spec["deletionPolicy"] = "Delete"
        self.create(thief, spec)

    @precondition(lambda self: self.known)
    @rule(
        data=st.data(),
        op=st.sampled_from(("rename", "replace", "recreate", "delete", "lose the Lease")),
    )
    def step_while_user_acts(self, data: st.DataObject, op: str) -> None:
        """A reconcile step with a user operation (or the loss of the Lease) landing while the
        step awaits an EVS answer: the first EVS call of the step is answered by EVS, and its
        answer held back until the operation is done."""
        name = data.draw(st.sampled_from(sorted(self.known)), label="name")
        if op in ("delete", "recreate"):
            self.present.discard(name)
        if op == "recreate":
            self.present.add(name)

        def user_acts() -> None:
            if op == "lose the Lease":
                if self.leading:
                    self.set_leading(False)
                return
            if name not in self.world.objects:
                return
            deleting = self.world.objects[name]["metadata"].get("deletionTimestamp")
            if op == "rename":
                self.world.change_spec(name, name=f"{name}-during")
            elif op == "replace":
                # Replacing an object being deleted with a manifest without the finalizer
                # deletes it at once, and its snapshot stays: a known limit (docs/ownership.md).
                if not deleting:
                    self.world.replace(name)
            elif op == "delete":
                if not deleting:
                    self.record_delete(self.world.objects[name])
                    self.world.delete(name)
            elif not self.world.objects[name]["metadata"].get("finalizers"):
                self.record_delete(self.world.objects[name])
                self.world.delete(name)
                self.world.apply(name, volumeID=DISKS[1])

        body = self.live(name)
        if body is None:
            event("step_while_user_acts: the resource is gone already")
            leading = self.leading
            self.act(user_acts)
            if leading and not self.leading:
                self.sent_when_lost = self.run(self.sent_so_far())
            return
        uid = body["metadata"]["uid"]

        async def go() -> None:
            self.holds.arm()
            step = asyncio.create_task(self.world.controller.step(uid))
            held = asyncio.create_task(self.holds.held.wait())
            try:
                await asyncio.wait({step, held}, return_when=asyncio.FIRST_COMPLETED)
                # Either the step is suspended awaiting the held answer, or it ended without
                # calling EVS (fenced, blocked, or nothing to ask).
                event(f"step_while_user_acts: EVS answer held: {held.done()}")
                leading = self.leading
                user_acts()
                if leading and not self.leading:
                    self.sent_when_lost = await self.sent_so_far()
                await asyncio.sleep(0)
            finally:
                self.holds.disarm()
                held.cancel()
                await step
                await asyncio.sleep(0)

        self.run(go())

    @rule(seconds=st.sampled_from((0.05, 0.15, 0.35)))
    def time_passes(self, seconds: float) -> None:
        """Real time passes (EVS creates, deletes and late creates land; grace periods run)."""
        self.run(asyncio.sleep(seconds))

    # -- what operators of the cluster do -----------------------------------------------------

    @rule(elsewhere=st.booleans())
    def edit_class_endpoint(self, elsewhere: bool) -> None:
        sim = self.sims[1 if elsewhere else 0]
        self.cluster.classes[MAIN]["spec"]["endpoint"] = sim.endpoint

    @rule(present=st.booleans())
    def newer_default_class(self, present: bool) -> None:
        if present:
            self.cluster.add_class(
                NEWER,
                endpoint=self.sims[1].endpoint,
                project_id=self.project,
                created="2026-06-01T00:00:00Z",
            )
        else:
            self.cluster.classes.pop(NEWER, None)

    @rule(broken=st.booleans())
    def rotate_secret(self, broken: bool) -> None:
        secret = self.good_secret()
        if broken:
            secret["secretKey"] = "not-the-key"
        self.cluster.secrets[SECRET_NAME] = secret

    # -- what EVS and the operator's process do -----------------------------------------------

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def evs_faults(self, fault: str) -> None:
        for sim in self.sims:
            self.run(sim.admin.set_faults(FAULTS[fault], seed=len(self.world.results)))

    @rule(lag=st.sampled_from(LIST_LAGS))
    def list_lag(self, lag: float) -> None:
        for sim in self.sims:
            self.run(sim.admin.set_list_lag(lag))

    @precondition(lambda self: self.leading)
    @rule()
    def drift_sweep(self) -> None:
        """The periodic drift sweep; the steps it asks for at once run now, the others later."""
        due = self.run(self.world.recorder.inner.sweep())
        for uid, delay in due:
            if delay == 0.0:
                self.run(self.world.controller.step(uid))
                self.deliver()

    @rule()
    def restart_operator(self) -> None:
        self.act(lambda: self.world.restart(self.new_reconciler()))

    @precondition(lambda self: self.leading)
    @rule()
    def lose_the_lease(self) -> None:
        self.act(lambda: self.set_leading(False))
        self.sent_when_lost = self.run(self.sent_so_far())

    @precondition(lambda self: not self.leading)
    @rule()
    def gain_the_lease(self) -> None:
        self.act(lambda: self.set_leading(True))

    # -- the guarantees -----------------------------------------------------------------------

    async def sent_so_far(self) -> tuple[int, int, int]:
        """Writes, Events, and EVS creates, updates and deletes the simulators received."""
        calls = [await sim.admin.calls() for sim in self.sims]
        changes = sum(c.get(op, 0) for c in calls for op in ("create", "update", "delete"))
        return len(self.world.writes), len(self.world.events), changes

    @invariant()
    def nothing_sent_without_the_lease(self) -> None:
        """Without the Lease the operator writes nothing, posts no Event and sends EVS no change,
        even from a step that was awaiting EVS when the Lease was lost."""
        if self.leading:
            return
        sent = self.run(self.sent_so_far())
        assert sent == self.sent_when_lost, f"without the Lease: {self.sent_when_lost} -> {sent}"

    @invariant()
    def at_most_one_snapshot_per_owner(self) -> None:
        owners = [
            s["metadata"].get(OWNER_UID_METADATA_KEY)
            for s in self.snapshots()
            if not s["deleted"] and s["metadata"].get(OWNER_UID_METADATA_KEY)
        ]
        duplicated = {uid for uid in owners if owners.count(uid) > 1}
        # A create EVS applies after the operator gave up on it may make a twin; the operator
        # looks for and deletes twins until the window that unansweredCreateTime opens closes
        # (docs/ownership.md, "Late creates and duplicates"). Outside it, never two.
        in_doubt = {body["metadata"]["uid"] for body in self.in_doubt()}
        assert not duplicated - in_doubt, f"several snapshots for owner(s) {duplicated}"

    def in_doubt(self) -> list[dict[str, Any]]:
        """The resources whose status records an unanswered create (its window still open)."""
        return [
            body
            for body in self.world.objects.values()
            if (body.get("status") or {}).get("unansweredCreateTime")
        ]

    def every_tagged_snapshot_is_the_named_one(self) -> None:
        """Once no create is in doubt, a live EVS snapshot tagged with a resource's UID is the
        one its status names: a twin EVS applied late has been deleted (or is being deleted),
        not left beside it."""
        named = {
            body["metadata"]["uid"]: (body.get("status") or {}).get("snapshotID")
            for body in self.world.objects.values()
        }
        for snap in self.snapshots():
            owner = snap["metadata"].get(OWNER_UID_METADATA_KEY)
            if snap["deleted"] or snap["status"] == "deleting" or owner not in named:
                continue
            assert snap["id"] == named[owner], (
                f"{snap['id']} tagged with {owner} is not the snapshot its status names"
                f" ({named[owner]})"
            )

    @invariant()
    def nothing_deleted_without_a_delete_policy(self) -> None:
        snapshots = self.snapshots()
        kept = {
            s["metadata"].get(OWNER_UID_METADATA_KEY)
            for s in snapshots
            if not s["deleted"] and s["status"] != "deleting"
        }
        for snap in snapshots:
            if not (snap["deleted"] or snap["status"] == "deleting"):
                continue
            owner = snap["metadata"].get(OWNER_UID_METADATA_KEY)
            # A twin of a snapshot its owner keeps is deleted whatever the policy (a create EVS
            # applied late; docs/ownership.md).
            allowed = (
                owner in self.deleted_with_delete
                or snap["id"] in self.adopters_with_delete
                or (owner is not None and owner in kept)
            )
            assert allowed, f"snapshot {snap['id']} of {owner} deleted without a Delete policy"

    @invariant()
    def status_names_only_own_snapshots(self) -> None:
        live = {
            index: {s["id"]: s for s in self.run(sim.admin.snapshots()) if not s["deleted"]}
            for index, sim in enumerate(self.sims)
        }
        for body in self.world.objects.values():
            status = body.get("status") or {}
            uid = body["metadata"]["uid"]
            snapshot_id = status.get("snapshotID")
            where = [index for index, found in live.items() if snapshot_id in found]
            if not where:
                continue  # none yet, or gone: it names nobody else's snapshot
            # Snapshot IDs are unique across the two accounts (seeded apart).
            (index,) = where
            account = status.get("account")
            if account is not None:
                home = self.account_index(account)
                assert index == home, (
                    f"{uid} names {snapshot_id}, live in account {index}, but records account"
                    f" {home}"
                )
            snap = live[index][snapshot_id]
            owner = snap["metadata"].get(OWNER_UID_METADATA_KEY)
            if status.get("adopted"):
                others = {
                    o["metadata"]["uid"] for o in self.world.objects.values() if o is not body
                }
                assert owner not in others, f"{uid} adopted a snapshot {owner} owns"
            else:
                assert owner == uid, f"{uid} names snapshot {snap['id']} of owner {owner}"
                assert snap["volume_id"] == body["spec"].get("volumeID")

    def account_index(self, account: dict[str, Any]) -> int:
        """Which simulator the account recorded in a status is."""
        return next(i for i, s in enumerate(self.sims) if s.endpoint.endswith(account["endpoint"]))

    def teardown(self) -> None:
        self.close_after(self.settle_everything_deleted)

    def settle_everything_deleted(self) -> None:
        for sim in self.sims:
            self.run(sim.admin.clear_faults())
            self.run(sim.admin.set_list_lag(0.0))
        if not self.leading:
            self.act(lambda: self.set_leading(True))
        self.cluster.classes[MAIN]["spec"]["endpoint"] = self.sims[0].endpoint
        if NEWER not in self.cluster.classes:
            # Resources pinned to it need it back to be deleted (a deleted class blocks them).
            self.newer_default_class(present=True)
        self.cluster.secrets[SECRET_NAME] = self.good_secret()
        # First every create in doubt settles, its late twin (if EVS made one) landed and dealt
        # with: deleting the resources would delete their twins too, and hide one left behind.
        self.step_all_until(lambda: not self.in_doubt(), self.in_doubt)
        assert not self.in_doubt(), f"still in doubt: {self.in_doubt()}"
        self.every_tagged_snapshot_is_the_named_one()
        for name in self.undeleted_names():
            self.delete_named(name)
        self.step_all_until(
            lambda: not self.world.objects, lambda: list(self.world.objects.values())
        )
        stuck = {
            name: (body.get("status", {}).get("conditions"), body.get("status", {}).get("error"))
            for name, body in self.world.objects.items()
        }
        assert not stuck, f"never released: {stuck}"
        # Creates EVS applied late have landed by now: the last was sent before the deletions,
        # which each waited out the create-doubt window, longer than LATE_SECONDS.
        self.at_most_one_snapshot_per_owner()
        self.nothing_deleted_without_a_delete_policy()
        for snap in self.snapshots():
            if snap["deleted"] or snap["status"] == "deleting":
                continue
            owner = snap["metadata"].get(OWNER_UID_METADATA_KEY)
            assert owner not in self.deleted_with_delete, f"{snap['id']} of {owner} leaked"

    def step_all_until(
        self, done: Callable[[], bool], waiting: Callable[[], list[dict[str, Any]]]
    ) -> None:
        """Step every resource, time passing, until ``done`` (or SETTLE_SECONDS have passed).

        When all the ``waiting`` resources wait for their account (made while the class pointed
        at the other one), an administrator points the class back for them (the operator never
        guesses).
        """
        deadline = time.monotonic() + SETTLE_SECONDS
        while not done() and time.monotonic() < deadline:
            for name in list(self.world.objects):
                self.step(name)
            if all_wait_for_their_account(waiting()):
                endpoint = self.cluster.classes[MAIN]["spec"]["endpoint"]
                other = next(sim for sim in self.sims if sim.endpoint != endpoint)
                self.cluster.classes[MAIN]["spec"]["endpoint"] = other.endpoint
            self.run(asyncio.sleep(0.01))  # grace periods are measured in real time


def all_wait_for_their_account(bodies: list[dict[str, Any]]) -> bool:
    """Whether there are resources and each is refused for its class's changed account."""

    def reason(body: dict[str, Any]) -> str:
        conditions = body.get("status", {}).get("conditions", [])
        return next((c["reason"] for c in conditions if c["type"] == "Synced"), "")

    return bool(bodies) and all(reason(body) == "AccountChanged" for body in bodies)


OwnershipMachine.TestCase.settings = machine_settings(
    int(os.environ.get("OWNERSHIP_EXAMPLES", "60"))
)
test_ownership_guarantees = OwnershipMachine.TestCase
