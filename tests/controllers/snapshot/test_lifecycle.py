"""The scenario table of issue 4, rows that need no Kubernetes, against the real simulator."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from cloudsnap import metrics
from cloudsnap.api.constants import OWNER_UID_METADATA_KEY, SCHEDULE_LABEL, SCHEDULE_UID_LABEL
from cloudsnap.controllers.snapshot.controller import CONFLICT_RETRY_SECONDS, FINALIZER
from cloudsnap.controllers.snapshot.reconciler import Reconciler
from cloudsnap.evs.models import CreateSnapshotRequest
from cloudsnap.providers.evs import connector as evs_external
from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.connector import EVSConnector
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import CLASS, FAST, UNTHROTTLED
from tests.fixtures.simulator import operator_client
from tests.fixtures.world import FakeCluster, World
from tests.waiting import eventually


async def live_snapshots(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [s for s in await sim.admin.snapshots() if not s.get("deleted")]


async def test_create_becomes_ready_with_mirrored_status(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    world.apply("db", volumeID=volume, description="daily")
    await eventually(lambda: world.is_ready("db"), timeout=10)
    status = world.objects["db"]["status"]
    [snap] = await live_snapshots(evs_sim)
    assert status["snapshotID"] == snap["id"]
    assert status["phase"] == "available"
    assert status["size"] == 10
    assert status["createdAt"].endswith("Z")
    assert status["observedGeneration"] == 1
    assert "error" not in status
    assert snap["name"] == "default-db"
    assert snap["metadata"][OWNER_UID_METADATA_KEY] == world.objects["db"]["metadata"]["uid"]
    assert world.condition("db", "Synced")["status"] == "True"
    # One Event: the create that made a cloud resource. The finalizer announces nothing, and
    # Ready turning True is the condition's own transition.
    assert world.reasons("db") == ["Created"]
    assert FINALIZER in world.objects["db"]["metadata"]["finalizers"]


async def test_create_to_ready_costs_one_create_and_shared_polls(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """EVS calls per snapshot from create to Ready: the figure the issue asks for."""
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    calls = await evs_sim.admin.calls()
    assert calls.get("create") == 1
    assert calls.get("show", 0) == 0
    # No identity lookup: the finalizer was added by this operator one step before, and creates
    # are only sent while it is on. Then a poll round or two, shared with any other resource.
    assert 1 <= calls.get("list", 0) <= 2
    # Kubernetes writes: the finalizer, status with snapshotID at once, status Ready.
    assert world.writes == [("db", "finalizers"), ("db", "status"), ("db", "status")]
    # Our own writes came back as watch events but queued nothing, and the resource is steady:
    # the next look at it is the class's drift sweep.
    assert world.controller.queue.pending(world.uid("db")) is None


@pytest.mark.parametrize("evs_sim", [{"create_seconds": 0.4, "delete_seconds": 0.4}], indirect=True)
async def test_four_writes_to_ready_and_three_to_gone_however_long_evs_takes(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """Kubernetes writes per resource, Events included, while EVS creates and deletes for several
    polls: polls that see nothing new write nothing, and the deleting state is one message."""
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert (await evs_sim.admin.calls())["list"] >= 3  # it was seen creating more than once
    # The finalizer, status at the create (the snapshot ID, at once) and at Ready; Created.
    assert world.writes == [("db", "finalizers"), ("db", "status"), ("db", "status")]
    assert world.reasons("db") == ["Created"]

    world.writes.clear()
    world.events.clear()
    world.delete("db")
    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert (await evs_sim.admin.calls())["list"] >= 5  # and seen deleting more than once
    # Status at the DELETE (Ready=False/Deleting), the Deleted Event, the finalizer's removal.
    assert world.writes == [("db", "status"), ("db", "finalizers")]
    assert world.reasons("db") == ["Deleted"]
    assert await live_snapshots(evs_sim) == []


async def test_in_use_disk_without_force_is_blocked_and_retried_slowly(
    world: World, evs_sim: RunningSimulator
) -> None:
    disk = await evs_sim.admin.add_volume(size=5, status="in-use")
    world.apply("attached", volumeID=disk["id"])
    await eventually(lambda: world.condition("attached", "Synced") is not None, timeout=10)
    synced = world.condition("attached", "Synced")
    assert synced["status"] == "False"
    assert synced["reason"] == "DiskInUse"
    assert world.condition("attached", "Ready")["status"] == "False"
    error = world.objects["attached"]["status"]["error"]
    assert error["retryable"] is False
    assert error["code"] == "DiskInUse"
    # What to do, not only what EVS said: the field that lets it through, and its consequence.
    assert "set spec.force: true for a crash-consistent snapshot" in error["message"]
    assert f"disk {disk['id']} is attached to a server (EVS status in-use)" in error["message"]
    assert "current status is: in-use" in error["message"]  # EVS's own words, last
    [failed] = [e for _, e in world.events if e.reason == "Failed"]
    assert "set spec.force: true" in failed.message
    last = world.results[-1][1]
    assert last.outcome == "blocked"
    assert last.requeue_after == FAST.blocked
    # The finalizer stays while blocked: no add/remove churn on every slow retry.
    assert world.writes.count(("attached", "finalizers")) == 1
    assert FINALIZER in world.objects["attached"]["metadata"]["finalizers"]
    assert (await evs_sim.admin.calls()).get("create") == 1
    assert await live_snapshots(evs_sim) == []


async def test_in_use_disk_refused_becomes_ready_at_once_when_force_is_set(
    world: World, evs_sim: RunningSimulator
) -> None:
    """The way out the refusal names works: editing spec.force retries at once, well before
    the (hour-long, here) blocked retry."""
    disk = await evs_sim.admin.add_volume(size=5, status="in-use")
    world.apply("attached", volumeID=disk["id"])
    await eventually(
        lambda: (world.condition("attached", "Synced") or {}).get("reason") == "DiskInUse",
        timeout=10,
    )
    world.change_spec("attached", force=True)
    await eventually(lambda: world.is_ready("attached"), timeout=10)
    assert (await evs_sim.admin.calls()).get("create") == 2
    assert "error" not in world.objects["attached"]["status"]


async def test_a_schedule_childs_in_use_refusal_names_the_schedules_template(
    world: World, evs_sim: RunningSimulator
) -> None:
    disk = await evs_sim.admin.add_volume(size=5, status="in-use")
    world.apply("nightly-child", volumeID=disk["id"], force=False)
    world.edit(
        "nightly-child",
        lambda body: body["metadata"].update(
            labels={SCHEDULE_LABEL: "nightly", SCHEDULE_UID_LABEL: "0b6f0e0e-uid"}
        ),
    )

    async def refused_naming_the_schedule() -> bool:
        await world.step("nightly-child")  # the labels came after the resource's first steps
        error = world.objects["nightly-child"].get("status", {}).get("error", {})
        return "CloudSnapshotSchedule" in error.get("message", "")

    await eventually(refused_naming_the_schedule, timeout=10)
    message = world.objects["nightly-child"]["status"]["error"]["message"]
    assert (
        "set spec.force: true (and spec.snapshotTemplate.spec.force: true in"
        " CloudSnapshotSchedule nightly for its next children)"
    ) in message


async def test_in_use_disk_with_force_becomes_ready(
    world: World, evs_sim: RunningSimulator
) -> None:
    disk = await evs_sim.admin.add_volume(size=5, status="in-use")
    world.apply("attached", volumeID=disk["id"], force=True)
    await eventually(lambda: world.is_ready("attached"), timeout=10)
    assert len(await live_snapshots(evs_sim)) == 1


async def test_missing_disk_is_a_blocked_evs_5404_without_retry_loop(
    world: World, evs_sim: RunningSimulator
) -> None:
    world.apply("nodisk", volumeID="5aa119a8-d25b-45a7-8d1b-88e127885635")
    await eventually(lambda: world.condition("nodisk", "Synced") is not None, timeout=10)
    error = world.objects["nodisk"]["status"]["error"]
    assert error["code"] == "EVS.5404"
    assert error["retryable"] is False
    assert world.results[-1][1].requeue_after == FAST.blocked
    assert (await evs_sim.admin.calls()).get("create") == 1


async def test_name_and_description_change_is_one_put(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    world.apply("db", volumeID=volume, name="first", description="one")
    await eventually(lambda: world.is_ready("db"), timeout=10)
    world.change_spec("db", name="second", description="two")
    await eventually(lambda: world.objects["db"]["status"]["observedGeneration"] == 2, timeout=10)
    [snap] = await live_snapshots(evs_sim)
    assert (snap["name"], snap["description"]) == ("second", "two")
    assert (await evs_sim.admin.calls()).get("update") == 1
    assert world.is_ready("db")
    assert world.reasons("db").count("Updated") == 1


async def test_the_longest_namespace_and_name_make_an_evs_name_within_64_characters(
    reconciler: Reconciler, evs_sim: RunningSimulator, volume: str
) -> None:
    """A namespace and a name of 63 characters each: the default "<namespace>-<name>" would be
    127, which an EVS keeping to its current pages (the simulator) refuses."""
    namespace, name = "n" * 63, "d" * 63
    async with World(reconciler, namespace=namespace) as world:
        world.apply(name, volumeID=volume)
        await eventually(lambda: world.is_ready(name), timeout=10)
    [snap] = await live_snapshots(evs_sim)
    assert len(snap["name"]) == 64
    assert snap["name"].startswith("n" * 32)
    assert snap["name"].endswith("d" * 22)


@pytest.mark.parametrize(
    ("field", "limit"), [pytest.param("name", 64, id="name"), ("description", 85)]
)
async def test_a_text_over_evs_current_limit_is_a_terminal_error_naming_the_limit(
    world: World, evs_sim: RunningSimulator, volume: str, field: str, limit: int
) -> None:
    """The CRD takes 255 bytes, the older limit; an EVS that keeps to its current pages (the
    simulator does) refuses more than 64 characters of name or 85 of description."""
    world.apply("db", volumeID=volume, **{field: "x" * (limit + 6)})
    await eventually(
        lambda: (world.condition("db", "Synced") or {}).get("status") == "False", timeout=10
    )
    error = world.objects["db"]["status"]["error"]
    assert error["code"] == "EVS.5400"
    assert error["message"].startswith(
        f"spec.{field} has {limit + 6} characters, and Huawei's current EVS API takes at most"
        f" {limit}: shorten it"
    )
    assert error["retryable"] is False
    last = world.results[-1][1]
    assert (last.outcome, last.requeue_after) == ("invalid", None)

    world.change_spec("db", **{field: "x" * limit})

    await eventually(lambda: world.is_ready("db"), timeout=10)
    [snap] = await live_snapshots(evs_sim)
    assert snap[field] == "x" * limit


@pytest.mark.parametrize(
    ("spec", "class_policy", "kept"),
    [
        pytest.param({"deletionPolicy": "Delete"}, None, False, id="Delete"),
        pytest.param({"deletionPolicy": "Retain"}, None, True, id="Retain"),
        pytest.param({}, "Retain", True, id="none-named-class-Retain"),
    ],
)
async def test_deletion_policy_decides_whether_the_snapshot_outlives_the_resource(
    world: World,
    evs_sim: RunningSimulator,
    volume: str,
    fake: FakeCluster,
    spec: dict[str, str],
    class_policy: str | None,
    kept: bool,
) -> None:
    """The resource's deletionPolicy decides; where it names none, its class's does."""
    if class_policy is not None:
        fake.classes[CLASS]["spec"]["deletionPolicy"] = class_policy
    world.apply("db", volumeID=volume, **spec)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    world.delete("db")
    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert len(await live_snapshots(evs_sim)) == (1 if kept else 0)
    assert (await evs_sim.admin.calls()).get("delete", 0) == (0 if kept else 1)
    assert world.reasons("db") == ["Created", "Retained" if kept else "Deleted"]


async def test_delete_while_creating_waits_then_deletes(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    # Pin the snapshot in "creating" as soon as it exists, delete the resource, then let it go.
    world.apply("slow", volumeID=volume)
    await eventually(
        lambda: bool(world.objects["slow"].get("status", {}).get("snapshotID")), timeout=10
    )
    sid = world.objects["slow"]["status"]["snapshotID"]
    await evs_sim.admin.set_snapshot_status(sid, "creating")
    world.delete("slow")
    await eventually(lambda: world.condition("slow", "Ready")["reason"] == "Deleting", timeout=10)
    assert "to leave creating" in world.condition("slow", "Ready")["message"]
    assert (await evs_sim.admin.calls()).get("delete", 0) == 0
    await evs_sim.admin.set_snapshot_status(sid, "available")
    await eventually(lambda: "slow" not in world.objects, timeout=10)
    assert await live_snapshots(evs_sim) == []
    assert (await evs_sim.admin.calls()).get("delete") == 1


async def test_adopt_existing_snapshot_id_makes_no_create_call(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    async with operator_client(evs_sim) as client:
        existing = await client.create_snapshot(CreateSnapshotRequest(volume_id=volume, name="x"))
    await wait_until_available(evs_sim, existing.id)
    before = (await evs_sim.admin.calls()).get("create")
    world.apply("adopted", snapshotID=existing.id, deletionPolicy="Retain")
    await eventually(lambda: world.is_ready("adopted"), timeout=10)
    assert world.objects["adopted"]["status"]["snapshotID"] == existing.id
    assert (await evs_sim.admin.calls()).get("create") == before
    assert "Adopted" in world.reasons("adopted")
    [snap] = await live_snapshots(evs_sim)
    assert snap["name"] == "x"  # adopting never renames unasked


async def wait_until_available(sim: RunningSimulator, sid: str) -> None:
    async def available() -> bool:
        return any(
            s["id"] == sid and s["status"] == "available" for s in await sim.admin.snapshots()
        )

    await eventually(available, timeout=10, what=f"snapshot {sid} available")


async def test_snapshot_removed_behind_our_back_is_reported_not_recreated(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    await evs_sim.admin.remove_snapshot(world.objects["db"]["status"]["snapshotID"])
    await world.step("db")  # the drift resync: absent once, not yet believed
    assert world.condition("db", "Ready")["status"] == "True"
    world.controller.queue.enqueue(world.uid("db"))  # the scheduler takes it from here
    await eventually(lambda: world.condition("db", "Ready")["reason"] == "NotFound", timeout=10)
    ready = world.condition("db", "Ready")
    assert ready["status"] == "False"
    # Believed only after direct reads by ID a grace period apart, the first one recorded.
    assert (await evs_sim.admin.calls()).get("show", 0) >= 2
    status = world.objects["db"]["status"]
    missing = datetime.fromisoformat(status["missingSince"])
    declared = datetime.fromisoformat(ready["lastTransitionTime"])
    assert (declared - missing).total_seconds() >= FAST.absence_grace
    assert world.reasons("db").count("NotFound") == 1
    assert world.results[-1][1].requeue_after == FAST.resync
    assert FINALIZER not in world.objects["db"]["metadata"]["finalizers"]
    await world.step("db")  # a later resync: same state, no new event, no create
    assert world.reasons("db").count("NotFound") == 1
    assert (await evs_sim.admin.calls()).get("create") == 1
    assert await live_snapshots(evs_sim) == []


async def test_a_hundred_resources_share_poll_calls(
    world: World, evs_sim: RunningSimulator
) -> None:
    disks = [(await evs_sim.admin.add_volume(size=1))["id"] for _ in range(20)]
    names = [f"r{i}" for i in range(100)]
    for i, name in enumerate(names):
        world.apply(name, volumeID=disks[i % 20])
    await eventually(lambda: all(world.is_ready(n) for n in names), timeout=30)
    calls = await evs_sim.admin.calls()
    assert calls.get("create") == 100
    assert calls.get("show", 0) == 0
    # A few poll rounds of up to 100 ids each answer all hundred resources.
    assert calls.get("list", 0) <= 10
    assert len(await live_snapshots(evs_sim)) == 100


async def test_finalizer_write_on_a_stale_copy_is_retried_not_forced(
    reconciler: Reconciler, volume: str
) -> None:
    world = World(reconciler)  # scheduler not running: the test drives the steps
    world.apply("db", volumeID=volume)
    key = world.uid("db")
    await eventually(lambda: world.controller.queue.pending(key) is not None, timeout=10)
    # Someone else writes the object; its watch event has not reached the controller yet.
    world.objects["db"]["metadata"]["labels"] = {"team": "db"}
    world.objects["db"]["metadata"]["resourceVersion"] = "999"
    assert await world.controller.step(key) == CONFLICT_RETRY_SECONDS
    assert "finalizers" not in world.objects["db"]["metadata"]
    world.controller.observe("MODIFIED", copy.deepcopy(world.objects["db"]))  # the late event
    assert await world.controller.step(key) == 0.0
    assert world.objects["db"]["metadata"]["finalizers"] == [FINALIZER]
    assert world.objects["db"]["metadata"]["labels"] == {"team": "db"}


async def _created_while_standing_by(
    world: World, evs_sim: RunningSimulator, volume: str, finalizers: tuple[str, ...]
) -> dict[str, Any]:
    """Apply `db` while the operator does not lead, then lead: Ready, and the step results."""
    world.leading = False
    world.apply("db", finalizers=finalizers, volumeID=volume)
    await eventually(lambda: world.controller.resource(world.uid("db")), timeout=10)
    world.leading = True
    world.controller.start_leading()
    await eventually(lambda: world.is_ready("db"), timeout=10)
    calls = await evs_sim.admin.calls()
    assert calls.get("create") == 1
    assert calls.get("list", 0) >= 2  # the lookup by disk before the create, then polls
    return world.objects["db"]


async def test_resource_not_seen_born_is_looked_up_and_its_deletion_waits_for_nothing(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """Created while the operator was down or standing by: it looks before it creates, but since
    it put the finalizer on itself, no earlier create can exist, so nothing waits for one and the
    deletion is not held for the late-create window."""
    body = await _created_while_standing_by(world, evs_sim, volume, finalizers=())
    assert "unansweredCreateTime" not in body["status"]
    assert all("unansweredCreateTime" not in (r.status or {}) for _, r in world.results)
    world.delete("db")
    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert await live_snapshots(evs_sim) == []
    deleting = [r.status for _, r in world.results if r.status and "Deleting" in str(r.status)]
    assert not any("unanswered create" in str(status) for status in deleting)


async def test_resource_an_earlier_process_held_waits_for_a_late_create(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """Our finalizer was already on, with no trace in status: an earlier process may have sent a
    create and died before recording it, so the create made now opens the late-create window."""
    await _created_while_standing_by(world, evs_sim, volume, finalizers=(FINALIZER,))
    # Read from the step that created, not the Ready one: the window (1 s here) may be over.
    created = [r.status for _, r in world.results if any(e.reason == "Created" for e in r.events)]
    assert len(created) == 1
    assert created[0] is not None
    assert created[0]["unansweredCreateTime"]


async def test_spec_without_volume_or_snapshot_id_is_invalid_not_a_crash(
    world: World, evs_sim: RunningSimulator
) -> None:
    world.apply("empty")  # the CRD refuses this; the operator must still not crash on it
    await eventually(lambda: world.condition("empty", "Synced") is not None, timeout=10)
    error = world.objects["empty"]["status"]["error"]
    assert error["code"] == "InvalidSpec"
    assert world.results[-1][1].requeue_after is None  # waits for a spec change
    assert FINALIZER not in world.objects["empty"]["metadata"].get("finalizers", [])
    assert sum((await evs_sim.admin.calls()).values()) == 0


# The figure: 60 s of creation at the default 2 s poll is thirty polls. The poll here is
# long enough for two hundred steps to run between two rounds even on a busy machine.
POLL = 0.25
POLLS_TO_CREATE = 30


@pytest.mark.parametrize("evs_sim", [{"create_seconds": POLLS_TO_CREATE * POLL}], indirect=True)
async def test_list_calls_per_snapshot_to_ready_stay_under_a_fifth(
    evs_sim: RunningSimulator, fake: FakeCluster
) -> None:
    """Two hundred applied at once, each taking thirty poll intervals to create: the class polls
    in shared rounds of one call each, and stretches the interval of snapshots creating for long.
    (Unshared, that is at least thirty calls per snapshot; by id, two calls per round.)"""
    accounts = Accounts(fake, fake, poll_window=0.02, poll_spacing=POLL, adaptation=UNTHROTTLED)
    timing = dataclasses.replace(FAST, poll=POLL)
    reconciler = Reconciler(
        EVSConnector(accounts), finalizer=FINALIZER, volumes=fake, namespaces=fake, timing=timing
    )
    disks = [(await evs_sim.admin.add_volume(size=1))["id"] for _ in range(40)]
    names = [f"r{i}" for i in range(200)]
    try:
        async with World(reconciler) as world:
            for i, name in enumerate(names):
                world.apply(name, volumeID=disks[i % 40])
            await eventually(lambda: all(world.is_ready(n) for n in names), timeout=60)
    finally:
        await accounts.aclose()
    calls = await evs_sim.admin.calls()
    print(f"\nper snapshot to Ready: {calls['list'] / len(names):.3f} list calls, {calls}")
    assert calls["create"] == len(names)
    assert calls["list"] <= 0.2 * len(names), calls


async def _steady(world: World, name: str, parses: list[object]) -> None:
    """Ready, then one drift check that found nothing to do (a resource now steady)."""
    await eventually(lambda: world.is_ready(name), timeout=10)
    await world.step(name)
    assert world.results[-1][1].status is None
    parses.clear()


@pytest.fixture
def parses(world: World, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The bodies the reconciler parsed: a full step parses, a steady drift check does not."""
    seen: list[object] = []
    full = Reconciler._parse

    def counting(self: Reconciler, body: Any) -> Any:
        seen.append(body)
        return full(self, body)

    monkeypatch.setattr(Reconciler, "_parse", counting)
    return seen


async def test_a_steady_resource_is_checked_for_drift_without_a_full_step(
    world: World, evs_sim: RunningSimulator, volume: str, parses: list[object]
) -> None:
    world.apply("db", volumeID=volume)
    await _steady(world, "db", parses)
    lists = (await evs_sim.admin.calls()).get("list", 0)
    result = await world.step("db")
    assert parses == []
    assert (result.outcome, result.status, result.events) == ("success", None, ())
    assert result.requeue_after is None  # the class's drift sweep brings it back
    assert result.phase == "available"
    assert (await evs_sim.admin.calls()).get("list", 0) == lists + 1  # it did look at EVS


async def test_one_drift_sweep_checks_every_steady_resource_and_steps_only_the_drifted(
    world: World, evs_sim: RunningSimulator, parses: list[object]
) -> None:
    names = [f"r{i}" for i in range(12)]
    for name in names:
        world.apply(name, volumeID=(await evs_sim.admin.add_volume(size=1))["id"], name=name)
    for name in names:
        await _steady(world, name, parses)
    lists = (await evs_sim.admin.calls()).get("list", 0)
    steps = len(world.results)
    sweeps = metrics.REGISTRY.get_sample_value("cloudsnap_drift_sweeps_total")
    await world.controller.sweep()
    assert metrics.REGISTRY.get_sample_value("cloudsnap_drift_sweeps_total") == sweeps + 1
    # Twelve resources, one class: one list call, and no step for any of them.
    assert (await evs_sim.admin.calls()).get("list", 0) == lists + 1
    assert all(world.controller.queue.pending(world.uid(n)) is None for n in names)
    assert len(world.results) == steps
    assert parses == []
    renamed, removed = (world.objects[n]["status"]["snapshotID"] for n in ("r3", "r7"))
    async with operator_client(evs_sim) as client:
        await client.update_snapshot(renamed, name="renamed-in-the-console")
    await evs_sim.admin.remove_snapshot(removed)
    await world.controller.sweep()
    await eventually(lambda: "Updated" in world.reasons("r3"), timeout=10)
    await eventually(lambda: world.condition("r7", "Ready")["reason"] == "NotFound", timeout=10)
    stepped = {name for name, _ in world.results[steps:]}
    assert stepped == {"r3", "r7"}
    assert {s["name"] for s in await live_snapshots(evs_sim)} == set(names) - {"r7"}


async def test_a_failed_drift_sweep_leaves_each_resource_to_look_for_itself_over_the_period(
    world: World, evs_sim: RunningSimulator, parses: list[object]
) -> None:
    names = [f"r{i}" for i in range(40)]
    for name in names:
        world.apply(name, volumeID=(await evs_sim.admin.add_volume(size=1))["id"])
    for name in names:
        await _steady(world, name, parses)
    await evs_sim.admin.set_faults(
        [{"operation": "list", "kind": "error", "rate": 1.0, "status": 503, "count": 50}]
    )
    period = FAST.resync
    uids = {world.uid(name) for name in names}

    def spread_over_the_period(delays: list[float]) -> None:
        """Each in (0, period], no two alike, and every quarter of the period gets some: forty
        uniform draws leave a quarter with fewer than two about once in 1,600 seeds."""
        assert all(0.0 < d <= period for d in delays), sorted(delays)[:3]
        assert len(set(delays)) == len(delays), "spread over the period, not all at once"
        quarters = Counter(min(int(4 * d / period), 3) for d in delays)
        assert all(quarters[q] >= 2 for q in range(4)), quarters

    due = await world.recorder.sweep()
    assert {uid for uid, _ in due} == uids
    spread_over_the_period([delay for _, delay in due])

    # The controller queues each resource at the delay the sweep chose.
    now = asyncio.get_running_loop().time()
    await world.controller.sweep()
    pending = [world.controller.queue.pending(uid) for uid in uids]
    spread_over_the_period([when - now for when in pending if when is not None])
    assert None not in pending
    assert all(world.is_ready(name) for name in names)  # nothing in status: no step yet


async def test_the_sweep_pages_through_the_account_unless_asking_by_id_is_cheaper(
    world: World,
    evs_sim: RunningSimulator,
    parses: list[object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scaled down: pages of two snapshots, two IDs per call by ID."""
    monkeypatch.setattr(evs_external, "SURVEY_PAGE", 2)
    monkeypatch.setattr(evs_external, "DEFAULT_IDS_PER_CALL", 2)
    names = ["a", "b", "c"]
    for name in names:
        world.apply(name, volumeID=(await evs_sim.admin.add_volume(size=1))["id"])
    for name in names:
        await _steady(world, name, parses)
    lists = (await evs_sim.admin.calls()).get("list", 0)
    await world.controller.sweep()
    # Three snapshots in two pages, for three wanted (two calls by ID): two calls, nothing due.
    assert (await evs_sim.admin.calls()).get("list", 0) == lists + 2
    assert all(world.controller.queue.pending(world.uid(n)) is None for n in names)
    # Two more snapshots made by someone else: three pages cost more than two calls by ID.
    async with operator_client(evs_sim) as client:
        for other in ("x", "y"):
            disk = (await evs_sim.admin.add_volume(size=1))["id"]
            await client.create_snapshot(CreateSnapshotRequest(volume_id=disk, name=other))
    lists = (await evs_sim.admin.calls()).get("list", 0)
    await world.controller.sweep()
    assert (await evs_sim.admin.calls()).get("list", 0) == lists + 1  # the first page only
    assert all(world.controller.queue.pending(world.uid(n)) is not None for n in names)
    assert parses == []


async def test_a_class_now_on_another_account_steps_its_steady_resources_at_once(
    world: World, evs_sim: RunningSimulator, volume: str, parses: list[object], fake: FakeCluster
) -> None:
    world.apply("db", volumeID=volume)
    await _steady(world, "db", parses)
    fake.classes[CLASS]["spec"]["region"] = "elsewhere"
    await world.controller.sweep()
    await eventually(
        lambda: (world.condition("db", "Synced") or {}).get("reason") == "AccountChanged",
        timeout=10,
    )


async def test_the_controller_sweeps_for_drift_every_resync_period(
    evs_sim: RunningSimulator, accounts: Accounts, fake: FakeCluster, volume: str
) -> None:
    """Nobody steps the resource by hand: the periodic sweep finds the rename and undoes it."""
    reconciler = Reconciler(
        EVSConnector(accounts),
        finalizer=FINALIZER,
        volumes=fake,
        namespaces=fake,
        timing=dataclasses.replace(FAST, resync=0.3),
    )
    async with World(reconciler) as world:
        world.apply("db", volumeID=volume, name="daily")
        await eventually(lambda: world.is_ready("db"), timeout=10)
        sid = world.objects["db"]["status"]["snapshotID"]
        async with operator_client(evs_sim) as client:
            await client.update_snapshot(sid, name="renamed-in-the-console")
        await eventually(lambda: "Updated" in world.reasons("db"), timeout=10)
    assert [s["name"] for s in await live_snapshots(evs_sim)] == ["daily"]


async def test_a_steady_resource_sees_its_snapshot_renamed_or_removed_in_evs(
    world: World, evs_sim: RunningSimulator, volume: str, parses: list[object]
) -> None:
    world.apply("db", volumeID=volume, name="daily")
    await _steady(world, "db", parses)
    sid = world.objects["db"]["status"]["snapshotID"]
    async with operator_client(evs_sim) as client:
        await client.update_snapshot(sid, name="renamed-in-the-console")
    await world.step("db")
    assert parses, "a different snapshot takes a full step"
    assert "Updated" in world.reasons("db")
    assert [s["name"] for s in await live_snapshots(evs_sim)] == ["daily"]
    await world.step("db")  # steady again
    parses.clear()
    await evs_sim.admin.remove_snapshot(sid)
    result = await world.step("db")
    assert parses
    assert result.requeue_after is not None
    assert result.requeue_after < FAST.resync  # looks again soon, to confirm the absence
    world.controller.queue.enqueue(world.uid("db"))
    await eventually(lambda: world.condition("db", "Ready")["reason"] == "NotFound", timeout=10)


async def test_a_steady_resource_takes_a_full_step_on_a_changed_status_or_class(
    world: World, evs_sim: RunningSimulator, volume: str, parses: list[object], fake: FakeCluster
) -> None:
    world.apply("db", volumeID=volume)
    await _steady(world, "db", parses)
    # Labels are not read by a step: still steady.
    world.edit("db", lambda body: body["metadata"].update(labels={"team": "db"}))
    await world.step("db")
    assert parses == []
    # A status edited by someone else (`kubectl edit --subresource=status`, a restore).
    world.edit("db", lambda body: body["status"].update(phase="tampered"))
    await world.step("db")
    assert len(parses) == 1
    assert world.objects["db"]["status"]["phase"] == "available"
    await world.step("db")
    assert len(parses) == 1  # steady again on the status it wrote back
    fake.classes[CLASS]["spec"]["region"] = "elsewhere"
    await world.step("db")
    assert len(parses) == 2
    assert world.condition("db", "Synced")["reason"] == "AccountChanged"


async def test_a_resource_is_steady_from_the_step_that_made_it_ready(
    world: World, evs_sim: RunningSimulator, volume: str, parses: list[object]
) -> None:
    """The step that turns Ready writes status; the drift check after it needs no full step."""
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    parses.clear()
    result = await world.step("db")
    assert parses == []
    assert result.status is None
