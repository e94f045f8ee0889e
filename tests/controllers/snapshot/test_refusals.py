"""EVS refusing a delete or a rename: what blocks is said, and the change is tried again.

A refusal is EVS answering 4xx to a change of a snapshot it understood: the snapshot is in use
(a disk being created from it, a backup), its status is changing, its disk is replicated. The
simulator's ``refusal`` fault makes EVS say so with the code chosen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cloudsnap.api.models import STATUS_CODE_MAX_LENGTH, STATUS_MESSAGE_MAX_LENGTH
from cloudsnap.api.text import fit_text
from cloudsnap.controllers.snapshot.controller import FINALIZER
from cloudsnap.controllers.snapshot.reconciler import Reconciler
from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.connector import EVSConnector
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import FAST
from tests.fixtures.world import FakeCluster, World
from tests.waiting import eventually

IN_USE = "snapshot is in use by a disk being created from it"
RETAIN_HINT = "set spec.deletionPolicy: Retain"


def refusal(operation: str, code: str, message: str = IN_USE, **fields: Any) -> dict[str, Any]:
    """A simulator fault: EVS refuses ``operation`` with a 400 and ``code``."""
    return {"operation": operation, "kind": "refusal", "code": code, "message": message, **fields}


async def live_snapshots(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [s for s in await sim.admin.snapshots() if not s.get("deleted")]


async def ready(world: World, resource: str, volume: str, **spec: Any) -> str:
    """Apply `resource` and wait until it is Ready; its snapshot ID."""
    world.apply(resource, volumeID=volume, **spec)
    await eventually(lambda: world.is_ready(resource), timeout=10)
    return str(world.objects[resource]["status"]["snapshotID"])


def failed_events(world: World, name: str) -> list[str]:
    return [e.message for who, e in world.events if who == name and e.reason == "Failed"]


async def refused_delete(world: World, name: str) -> dict[str, Any]:
    """Delete `name` and wait until the deletion is seen blocked; its Ready condition."""
    world.delete(name)

    def blocked() -> dict[str, Any] | None:
        synced = world.condition(name, "Synced") or {}
        return world.condition(name, "Ready") if synced.get("status") == "False" else None

    refused: dict[str, Any] = await eventually(blocked, timeout=10)
    return refused


@pytest.mark.parametrize(
    ("code", "message", "says"),
    [
        pytest.param("EVS.1047", "snapshot status must be available or error", "busy", id="1047"),
        pytest.param("EVS.5400", f"Invalid snapshot: {IN_USE}", "busy", id="cinder-wording"),
        pytest.param("EVS.2089", "volume belongs to SDRS", "SDRS", id="sdrs"),
        pytest.param("EVS.0409", "conflict", "does not know", id="unknown-code"),
    ],
)
async def test_a_refused_delete_says_what_blocks_it_and_is_retried_on_the_blocked_schedule(
    world: World, evs_sim: RunningSimulator, volume: str, code: str, message: str, says: str
) -> None:
    sid = await ready(world, "db", volume)
    await evs_sim.admin.set_faults([refusal("delete", code, message)])

    deleting = await refused_delete(world, "db")

    assert (deleting["status"], deleting["reason"]) == ("False", "Deleting")
    assert deleting["message"].startswith(f"{code}: ")
    for part in (says, f"EVS says: {message}", f"retried every {FAST.blocked:g}s", RETAIN_HINT):
        assert part in deleting["message"], part
    error = world.objects["db"]["status"]["error"]
    assert (error["code"], error["retryable"]) == (code, False)
    assert error["requestID"]
    assert world.condition("db", "Synced")["message"] == deleting["message"]
    [event] = failed_events(world, "db")
    assert event.startswith(deleting["message"])
    last = world.results[-1][1]
    assert (last.outcome, last.requeue_after, last.finalizer) == ("blocked", FAST.blocked, None)
    assert [s["id"] for s in await live_snapshots(evs_sim)] == [sid]

    # The scheduled retry, refused again: nothing new to write or announce.
    writes = len(world.writes)
    again = await world.step("db")
    assert (again.outcome, again.requeue_after, again.status, again.events) == (
        "blocked",
        FAST.blocked,
        None,
        (),
    )
    assert len(world.writes) == writes
    assert (await evs_sim.admin.calls())["delete"] == 2

    # EVS lets go: the next retry that comes due sends the DELETE that EVS now accepts.
    await evs_sim.admin.clear_faults()
    world.controller.queue.enqueue(world.uid("db"))
    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert (await evs_sim.admin.calls())["delete"] == 3
    assert await live_snapshots(evs_sim) == []
    assert world.reasons("db") == ["Created", "Failed", "Deleted"]


async def test_a_refused_delete_is_tried_again_by_itself_until_evs_lets_go(
    evs_sim: RunningSimulator, accounts: Accounts, fake: FakeCluster, volume: str
) -> None:
    """Nobody steps or edits the resource: the blocked-retry timer sends the DELETE again."""
    blocked = 0.3
    reconciler = Reconciler(
        EVSConnector(accounts),
        finalizer=FINALIZER,
        volumes=fake,
        namespaces=fake,
        timing=dataclasses.replace(FAST, blocked=blocked),
    )
    async with World(reconciler) as world:
        await ready(world, "db", volume)
        cinder = f"Invalid snapshot: {IN_USE}"
        await evs_sim.admin.set_faults([refusal("delete", "EVS.5400", cinder, count=3)])
        world.delete("db")
        generation = world.objects["db"]["metadata"]["generation"]
        await eventually(lambda: "db" not in world.objects, timeout=10)
    assert (await evs_sim.admin.calls())["delete"] == 4  # three refused, then accepted
    steps = [r for who, r in world.results if who == "db" and r.outcome == "blocked"]
    assert len(steps) == 3
    assert all(r.requeue_after == blocked for r in steps)
    assert generation == 1  # no edit brought it back
    assert world.reasons("db") == ["Created", "Failed", "Deleted"]
    assert await live_snapshots(evs_sim) == []


async def test_an_edit_to_retain_releases_a_refused_deletion_at_once(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    sid = await ready(world, "db", volume)
    await evs_sim.admin.set_faults([refusal("delete", "EVS.1047")])
    await refused_delete(world, "db")

    world.change_spec("db", deletionPolicy="Retain")  # no retry is due for an hour

    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert world.reasons("db")[-1] == "Retained"
    assert [s["id"] for s in await live_snapshots(evs_sim)] == [sid]
    assert (await evs_sim.admin.calls())["delete"] == 1


async def test_an_edit_retries_a_refused_deletion_at_once(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    await ready(world, "db", volume)
    await evs_sim.admin.set_faults([refusal("delete", "EVS.1047")])
    await refused_delete(world, "db")
    await evs_sim.admin.clear_faults()

    world.change_spec("db", description="any edit")  # no retry is due for an hour

    await eventually(lambda: "db" not in world.objects, timeout=10)
    assert world.reasons("db")[-1] == "Deleted"
    assert await live_snapshots(evs_sim) == []


async def test_a_delete_refused_for_a_malformed_snapshot_id_is_terminal_and_says_the_way_out(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """EVS.2045: the recorded ID itself is refused, so sending it again cannot help."""
    await ready(world, "db", volume)
    await evs_sim.admin.set_faults([refusal("delete", "EVS.2045", "invalid snapshot_id!")])

    deleting = await refused_delete(world, "db")

    assert deleting["reason"] == "Deleting"
    assert deleting["message"].startswith("EVS.2045: ")
    assert RETAIN_HINT in deleting["message"]
    assert "retried" not in deleting["message"]
    last = world.results[-1][1]
    assert (last.outcome, last.requeue_after) == ("invalid", None)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        pytest.param(
            "EVS.2043", "The status of snapshot is not available or backing-up.", id="2043"
        ),
        pytest.param("EVS.5400", "Invalid snapshot: snapshot is backing-up.", id="cinder-wording"),
    ],
)
async def test_a_refused_rename_says_what_blocks_it_and_is_retried_on_the_blocked_schedule(
    world: World, evs_sim: RunningSimulator, volume: str, code: str, message: str
) -> None:
    await ready(world, "db", volume, name="first")
    await evs_sim.admin.set_faults([refusal("update", code, message)])

    world.change_spec("db", name="second")

    await eventually(lambda: world.condition("db", "Synced")["status"] == "False", timeout=10)
    synced = world.condition("db", "Synced")
    assert synced["message"].startswith(f"{code}: ")
    for part in ("rename", f"EVS says: {message}", f"retried every {FAST.blocked:g}s"):
        assert part in synced["message"], part
    assert RETAIN_HINT not in synced["message"]
    assert world.is_ready("db")  # the snapshot itself is as good as before
    error = world.objects["db"]["status"]["error"]
    assert (error["code"], error["retryable"]) == (code, False)
    [event] = failed_events(world, "db")
    assert event.startswith(synced["message"])
    last = world.results[-1][1]
    assert (last.outcome, last.requeue_after) == ("blocked", FAST.blocked)

    # EVS lets go: the next retry renames, in that step.
    await evs_sim.admin.clear_faults()
    renamed = await world.step("db")
    assert renamed.outcome == "success"
    assert world.condition("db", "Synced")["status"] == "True"
    assert [s["name"] for s in await live_snapshots(evs_sim)] == ["second"]
    assert "error" not in world.objects["db"]["status"]
    assert world.reasons("db") == ["Created", "Failed", "Updated"]


async def test_a_rename_refused_for_its_name_waits_for_an_edit_that_fixes_it(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """EVS.5400 for the name itself (a real EVS refuses names over 64 characters): sending it
    again cannot help, a new name can."""
    await ready(world, "db", volume, name="first")
    fault = refusal("update", "EVS.5400", "Invalid input received: name is too long", count=1)
    await evs_sim.admin.set_faults([fault])
    world.change_spec("db", name="n" * 100)
    await eventually(lambda: world.condition("db", "Synced")["status"] == "False", timeout=10)
    last = world.results[-1][1]
    assert (last.outcome, last.requeue_after) == ("invalid", None)
    assert "retried" not in world.condition("db", "Synced")["message"]

    world.change_spec("db", name="short")

    await eventually(lambda: world.condition("db", "Synced")["status"] == "True", timeout=10)
    assert [s["name"] for s in await live_snapshots(evs_sim)] == ["short"]


async def test_a_refusal_longer_than_the_status_fields_allow_is_cut_to_fit(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """EVS's code and message go into status fields with CRD limits; an answer beyond them is
    cut, never a status write the API server would refuse, and a repeat is still no news."""
    long_code = "EVS." + "9" * 100
    await ready(world, "db", volume)
    await evs_sim.admin.set_faults([refusal("delete", long_code, "x" * 40_000)])

    deleting = await refused_delete(world, "db")

    error = world.objects["db"]["status"]["error"]
    assert error["code"] == fit_text(long_code, STATUS_CODE_MAX_LENGTH)
    assert len(error["message"]) <= STATUS_MESSAGE_MAX_LENGTH
    assert len(deleting["message"]) <= STATUS_MESSAGE_MAX_LENGTH
    assert f"retried every {FAST.blocked:g}s" in deleting["message"]
    again = await world.step("db")
    assert (again.outcome, again.status, again.events) == ("blocked", None, ())
