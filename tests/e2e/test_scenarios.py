"""The issue's scenario table, one test per row: the operator as a process, the simulator as EVS.

Everything is observed from outside: the CloudSnapshot through kubectl (and, where a claim is
"never" or "once", every version a watch saw), the cloud through the simulator's admin API (its
snapshot set and per-operation call counters), the operator's work through its /metrics. A window
in which something must not happen is shown to hold the retries or resyncs that could make it.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hack.sandbox import class_manifests
from prometheus_client.parser import text_string_to_metric_families

from cloudsnap.controllers.snapshot.controller import FINALIZER
from tests.e2e.support import make_snapshot_outside, parse_time
from tests.fixtures.operator import Stack, StartStack, condition
from tests.fixtures.watching import ObjectWatch, WatchObject
from tests.waiting import eventually

OWNER_KEY = "cloudsnap.io/owner-uid"
# The blocked scenarios run with a short blocked-retry interval, so that the window they watch
# holds several retries (the default is two minutes). It stays above the transient backoff cap of
# the fixture's timings (2 s, plus 25 % jitter): a blocked failure mistaken for a transient one
# would retry faster than any gap allowed below.
BLOCKED_RETRY_SECONDS = 4.0
RETRY_JITTER = 0.1  # the operator spreads each blocked retry by +-10 %
# How far apart the test may see two calls that were exactly one interval apart: its probe period
# (0.25 s) and round trips, twice, plus the step's own calls on a busy machine.
SEEN_SLACK = 0.8
# The gaps allowed between two attempts that were one blocked retry apart, as the test sees them.
BLOCKED_GAP_LOW = BLOCKED_RETRY_SECONDS * (1 - RETRY_JITTER) - SEEN_SLACK
BLOCKED_GAP_HIGH = BLOCKED_RETRY_SECONDS * (1 + RETRY_JITTER) + SEEN_SLACK
RETRIES_WATCHED = 3
# The absence grace of the drift scenario: longer than a resync (2 s), so the second look that
# confirms the absence is a separate, later observation.
ABSENCE_GRACE_SECONDS = 3


def evs_codes(stack: Stack, operation: str | None = None) -> Counter[str]:
    """EVS answers the operator counted (its cloudsnap_evs_requests_total), by code."""
    url = f"http://127.0.0.1:{stack.operator.metrics_port}/metrics"
    codes: Counter[str] = Counter()
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "cloudsnap_evs_requests_total" and operation in (
                None,
                sample.labels["operation"],
            ):
                codes[sample.labels["code"]] += int(sample.value)
    return +codes


async def counted_alike(stack: Stack) -> tuple[dict[str, int], Counter[str]] | None:
    """The simulator's call counts and the operator's answer counts, when they agree.

    The simulator counts a call when it arrives, the operator when the answer does, and resyncs
    keep calling: agreement is only judged while no answer came in between the two reads of the
    operator's counts, so a call in flight can neither hide nor fake a missing count.
    """
    before = evs_codes(stack)
    calls = await stack.calls()
    after = evs_codes(stack)
    return (calls, after) if before == after and after.total() == sum(calls.values()) else None


async def calls_seen(stack: Stack, operation: str, count: int, *, timeout: float) -> list[float]:
    """Wait for the simulator's `count`-th `operation` call; when (monotonic) each was seen."""
    seen: list[float] = []

    async def probe() -> bool:
        total = (await stack.calls()).get(operation, 0)
        now = time.monotonic()
        seen.extend([now] * (total - len(seen)))  # calls that came together share a time
        return total >= count

    await eventually(probe, timeout=timeout, what=f"{count} {operation} call(s)")
    return seen


def assert_blocked_retry_gaps(seen: list[float], operation: str) -> list[float]:
    """The calls came one blocked-retry interval apart: not faster (a transient backoff), not
    slower, and not only when something else woke the resource. Returns the gaps."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert all(BLOCKED_GAP_LOW <= gap <= BLOCKED_GAP_HIGH for gap in gaps), (
        f"{operation} attempts {gaps} s apart; blocked retries come every"
        f" {BLOCKED_RETRY_SECONDS} s +-{RETRY_JITTER:.0%}"
    )
    return gaps


async def assert_blocked_create_retried_slowly(
    stack: Stack, name: str, watched: ObjectWatch
) -> list[float]:
    """A blocked create comes back at the blocked interval, with no write or Event per retry.

    Watches RETRIES_WATCHED retries after the first attempt (so the window is shown to hold them,
    not assumed) and returns the gaps between the create calls. Only `name` exists in the stack,
    so every create call is one of its attempts.
    """
    attempts = 1 + RETRIES_WATCHED
    seen = await calls_seen(stack, "create", attempts, timeout=attempts * BLOCKED_GAP_HIGH + 30)
    gaps = assert_blocked_retry_gaps(seen, "create")
    assert len(seen) == attempts, f"{len(seen)} creates where {attempts} were due"
    # The finalizer was added once, before the first attempt, and stays: no churn per retry.
    finalizers = [v["metadata"].get("finalizers") for v in watched.versions()]
    assert watched.finalizer_writes() == 1, f"finalizers version by version: {finalizers}"
    assert FINALIZER in stack.must_get(name)["metadata"]["finalizers"]
    # The failure was written once; a retry that fails the same way changes nothing to write.
    writes = watched.status_writes()
    assert len(writes) == 1, f"status writes: {[sorted(w) for w in writes]}; last: {writes[-1]}"
    # One Failed Event for the failure, none per retry (the last retry's would have been posted
    # long before the next create call was seen).
    events: Counter[str] = Counter()
    for event in stack.events(name):
        events[event["reason"]] += event.get("count", 1)
    assert events == Counter({"Failed": 1}), events
    return gaps


async def test_a_63_character_name_makes_an_evs_name_of_at_most_64(stack: Stack) -> None:
    """The default "<namespace>-<name>" of a name at the DNS label's limit is over 64
    characters, which an EVS keeping to its current pages (the simulator) refuses."""
    volume = await stack.add_volume()
    name = "d" * 63
    stack.apply(name, volumeID=volume)

    obj = await stack.wait_condition(name, "Ready", "True")

    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]
    assert len(f"{stack.namespace}-{name}") > 64
    assert len(snap["name"]) == 64
    assert snap["name"].startswith(f"{stack.namespace}-")
    assert snap["name"].endswith("d" * 22)


async def test_create_becomes_ready(stack: Stack) -> None:
    volume = await stack.add_volume(size=12)
    stack.apply("create", volumeID=volume, description="e2e create", metadata={"team": "db"})

    waited = stack.kubectl(
        "wait", "--for=condition=Ready", "csnap/create", "--timeout=60s", check=False
    )
    assert waited.returncode == 0, waited.stderr

    obj = stack.must_get("create")
    status = obj["status"]
    [snap] = await stack.snapshots_of(volume)
    assert status["snapshotID"] == snap["id"]
    assert status["phase"] == "available" == snap["status"]
    assert status["size"] == 12 == snap["size"]
    assert parse_time(status["createdAt"]) == parse_time(snap["created_at"])
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Synced")["status"] == "True"
    assert condition(obj, "Ready")["reason"] == "Available"
    assert "error" not in status or not status["error"]
    assert snap["metadata"][OWNER_KEY] == obj["metadata"]["uid"]
    assert snap["metadata"]["team"] == "db"
    assert snap["description"] == "e2e create"
    await eventually(lambda: "Created" in stack.event_reasons("create"), what="Created Event")
    assert stack.event_reasons("create") == ["Created"]
    assert {e["source"]["component"] for e in stack.events("create")} == {"cloudsnap-operator"}
    assert (await stack.calls())["create"] == 1


@pytest.mark.parametrize(
    ("disk", "code", "says"),
    [
        pytest.param("in-use", "DiskInUse", "set spec.force: true", id="in-use-disk-without-force"),
        pytest.param(None, "EVS.5404", "EVS.5404", id="disk-not-found"),
    ],
)
async def test_blocked_create_is_retried_slowly(
    start_stack: StartStack, watch: WatchObject, disk: str | None, code: str, says: str
) -> None:
    """EVS refuses the create for its disk (in use with force false, or no such disk). Blocked,
    not terminal: the disk may yet be freed or created, so the create is retried, but only
    slowly; a disk in use is reported as such, with the field that lets the snapshot through."""
    stack = await start_stack(
        settings={"CLOUDSNAP_BLOCKED_RETRY_SECONDS": f"{BLOCKED_RETRY_SECONDS}"}
    )
    watched = watch(stack, "blocked")
    volume = await stack.add_volume(status=disk) if disk else str(uuid.uuid4())
    stack.apply("blocked", volumeID=volume)

    reason = code if code == "DiskInUse" else "ReconcileError"
    obj = await stack.wait_condition("blocked", "Synced", "False", reason=reason)
    error = obj["status"]["error"]
    assert error["code"] == code
    assert error["retryable"] is False
    message = condition(obj, "Synced")["message"]
    assert code in message
    assert says in message
    assert condition(obj, "Ready")["status"] == "False"

    await assert_blocked_create_retried_slowly(stack, "blocked", watched)
    assert stack.must_get("blocked")["status"]["error"]["code"] == code
    assert [s for s in await stack.admin.snapshots() if not s.get("deleted")] == []


async def test_a_refused_delete_is_retried_on_the_blocked_schedule_until_evs_lets_go(
    start_stack: StartStack, watch: WatchObject
) -> None:
    """EVS refuses the DELETE while a disk is being created from the snapshot (Cinder's wording,
    with no EVS code documented for it), twice. Nobody edits the resource: its status and an
    Event say what blocks, the operator sends the DELETE again at the blocked interval, and the
    resource goes once EVS accepts."""
    refusals = 2
    stack = await start_stack(
        settings={"CLOUDSNAP_BLOCKED_RETRY_SECONDS": f"{BLOCKED_RETRY_SECONDS}"}
    )
    volume = await stack.add_volume()
    stack.apply("in-use", volumeID=volume)
    snapshot_id = (await stack.wait_condition("in-use", "Ready", "True"))["status"]["snapshotID"]
    watched = watch(stack, "in-use")
    says = f"Invalid snapshot: snapshot {snapshot_id} is in use by a volume being created from it"
    refusal = {"kind": "refusal", "status": 400, "code": "EVS.5400", "message": says}
    await stack.admin.set_faults([{"operation": "delete", "count": refusals, **refusal}])

    stack.kubectl("delete", "csnap", "in-use", "--wait=false")

    obj = await stack.wait_condition("in-use", "Synced", "False", reason="ReconcileError")
    deleting = condition(obj, "Ready")
    assert deleting["reason"] == "Deleting"
    assert deleting["message"].startswith("EVS.5400: EVS will not delete the snapshot")
    for part in ("busy", says, f"retried every {BLOCKED_RETRY_SECONDS:g}s", "Retain"):
        assert part in deleting["message"], part
    assert obj["status"]["error"]["code"] == "EVS.5400"
    failed = await eventually(
        lambda: [e for e in stack.events("in-use") if e["reason"] == "Failed"], what="Failed"
    )
    assert failed[0]["type"] == "Warning"
    assert failed[0]["message"].startswith(deleting["message"])

    seen = await calls_seen(
        stack, "delete", refusals + 1, timeout=(refusals + 1) * BLOCKED_GAP_HIGH + 30
    )
    assert_blocked_retry_gaps(seen, "delete")
    await eventually(lambda: stack.get("in-use") is None, what="csnap/in-use gone")
    assert (await stack.calls())["delete"] == refusals + 1
    assert await stack.snapshots_of(volume) == []
    # Nothing but the operator touched it: one spec, one generation from the deletion on.
    versions = watched.versions()
    assert len({repr(v["spec"]) for v in versions}) == 1
    deleting = [v for v in versions if v["metadata"].get("deletionTimestamp")]
    assert len({v["metadata"]["generation"] for v in deleting}) == 1
    await eventually(lambda: "Deleted" in stack.event_reasons("in-use"), what="Deleted Event")
    assert sorted(stack.event_reasons("in-use")) == ["Created", "Deleted", "Failed"]


async def test_in_use_disk_with_force_becomes_ready(stack: Stack) -> None:
    volume = await stack.add_volume(status="in-use")
    stack.apply("forced", volumeID=volume, force=True)

    obj = await stack.wait_condition("forced", "Ready", "True")
    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]


async def test_name_and_description_change_is_one_put(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("rename", volumeID=volume, name="before", description="old")
    await stack.wait_condition("rename", "Ready", "True")
    assert (await stack.calls()).get("update", 0) == 0

    stack.apply("rename", volumeID=volume, name="after", description="new")

    def followed() -> dict[str, Any] | None:
        obj = stack.must_get("rename")
        synced = condition(obj, "Synced")
        current = synced.get("status") == "True" and synced.get("observedGeneration") == 2
        return obj if current and obj["status"].get("observedGeneration") == 2 else None

    await eventually(followed, what="status to follow generation 2")
    [snap] = await stack.snapshots_of(volume)
    assert (snap["name"], snap["description"]) == ("after", "new")
    assert (await stack.calls())["update"] == 1
    # Updated is posted after the status write of the step that sent the PUT.
    await eventually(lambda: "Updated" in stack.event_reasons("rename"), what="an Updated event")

    await stack.resync_window()
    assert (await stack.calls())["update"] == 1  # resyncs see no difference, so no second PUT


async def test_delete_with_policy_delete_removes_snapshot(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("gone", volumeID=volume, deletionPolicy="Delete")
    obj = await stack.wait_condition("gone", "Ready", "True")
    assert obj["metadata"].get("finalizers"), "a finalizer holds a resource with a cloud snapshot"

    deleted = stack.kubectl("delete", "csnap", "gone", "--timeout=60s", check=False)
    assert deleted.returncode == 0, deleted.stderr

    assert stack.get("gone") is None
    assert await stack.snapshots_of(volume) == []
    assert (await stack.calls())["delete"] == 1
    await eventually(lambda: "Deleted" in stack.event_reasons("gone"), what="Deleted Event")
    assert sorted(stack.event_reasons("gone")) == ["Created", "Deleted"]


async def test_delete_with_policy_retain_keeps_snapshot(stack: Stack) -> None:
    volume = await stack.add_volume()
    stack.apply("kept", volumeID=volume, deletionPolicy="Retain")
    obj = await stack.wait_condition("kept", "Ready", "True")

    deleted = stack.kubectl("delete", "csnap", "kept", "--timeout=60s", check=False)
    assert deleted.returncode == 0, deleted.stderr

    assert stack.get("kept") is None
    [snap] = await stack.snapshots_of(volume)
    assert snap["id"] == obj["status"]["snapshotID"]
    assert snap["status"] == "available"
    assert (await stack.calls()).get("delete", 0) == 0


async def test_delete_while_creating_waits_then_deletes(start_stack: StartStack) -> None:
    stack = await start_stack(create_seconds=8.0)
    volume = await stack.add_volume()
    stack.apply("early", volumeID=volume)
    await eventually(
        lambda: stack.must_get("early").get("status", {}).get("snapshotID"),
        what="the snapshot id in status",
    )
    [snap] = await stack.snapshots_of(volume)
    assert snap["status"] == "creating"

    stack.kubectl("delete", "csnap", "early", "--wait=false")

    async def deleting_while_creating() -> bool:
        obj = stack.get("early")
        return bool(obj and condition(obj, "Ready").get("reason") == "Deleting") and any(
            s["status"] == "creating" for s in await stack.snapshots_of(volume)
        )

    await eventually(deleting_while_creating, what="the resource held while EVS still creates")
    await eventually(lambda: stack.get("early") is None, timeout=90, what="csnap/early gone")
    assert await stack.snapshots_of(volume) == []
    assert (await stack.calls())["delete"] == 1  # no DELETE was sent while it was creating


async def test_adopt_existing_snapshot_id(stack: Stack) -> None:
    volume = await stack.add_volume(size=7)
    snapshot_id = await asyncio.to_thread(make_snapshot_outside, stack, volume)
    creates = (await stack.calls())["create"]

    stack.apply("adopted", snapshotID=snapshot_id)

    obj = await stack.wait_condition("adopted", "Ready", "True")
    assert obj["status"]["snapshotID"] == snapshot_id
    assert obj["status"]["size"] == 7
    assert (await stack.calls())["create"] == creates
    assert [s["id"] for s in await stack.snapshots_of(volume)] == [snapshot_id]
    # Adopted is posted after the status write that makes the adopted snapshot Ready.
    await eventually(lambda: "Adopted" in stack.event_reasons("adopted"), what="an Adopted event")


async def test_snapshot_removed_behind_our_back_is_not_recreated(
    start_stack: StartStack, watch: WatchObject
) -> None:
    grace = ABSENCE_GRACE_SECONDS
    stack = await start_stack(settings={"CLOUDSNAP_ABSENCE_GRACE_SECONDS": str(grace)})
    watched = watch(stack, "drift")
    volume = await stack.add_volume()
    stack.apply("drift", volumeID=volume)
    obj = await stack.wait_condition("drift", "Ready", "True")
    creates = (await stack.calls())["create"]

    await stack.admin.remove_snapshot(obj["status"]["snapshotID"])

    obj = await stack.wait_condition("drift", "Ready", "False", reason="NotFound", timeout=30)
    # Absence is confirmed, not believed at first sight: the first look that missed the snapshot
    # recorded when (Ready still True), and NotFound came from a look at least the grace later.
    missing_since = parse_time(obj["status"]["missingSince"])
    declared = parse_time(condition(obj, "Ready")["lastTransitionTime"])
    assert declared - missing_since >= timedelta(seconds=grace), (
        f"missing since {missing_since:%T}, NotFound at {declared:%T}: not {grace} s apart"
    )
    first_miss = next(v for v in watched.versions() if v.get("status", {}).get("missingSince"))
    assert condition(first_miss, "Ready")["status"] == "True", first_miss["status"]
    assert obj["status"]["snapshotID"], "the resource still names the snapshot it lost"
    # Nothing left to protect: the finalizer goes, so the resource can be deleted. It goes in a
    # write after the status, so the version that first says NotFound may still hold it.
    await eventually(
        lambda: FINALIZER not in (stack.must_get("drift")["metadata"].get("finalizers") or []),
        what="a confirmed-gone snapshot releases the finalizer",
    )
    await eventually(lambda: "NotFound" in stack.event_reasons("drift"), what="a NotFound event")

    # Each later resync looks again and must not re-create it: watch two of them happen (the
    # operator counts its steps; csnap/drift is the only resource it has).
    steps = stack.metric("cloudsnap_reconciles_total")
    await eventually(
        lambda: stack.metric("cloudsnap_reconciles_total") >= steps + 2,
        timeout=30,
        what="two more steps of csnap/drift",
    )
    assert (await stack.calls())["create"] == creates, "a snapshot was created after NotFound"
    assert await stack.snapshots_of(volume) == []
    final = stack.must_get("drift")
    assert condition(final, "Ready")["reason"] == "NotFound"
    assert final["status"]["snapshotID"] == obj["status"]["snapshotID"]
    assert stack.event_reasons("drift").count("NotFound") == 1


async def test_5xx_and_429_bursts_end_ready_with_one_snapshot(stack: Stack) -> None:
    rules: list[dict[str, Any]] = [
        {"operation": "create", "kind": "error", "rate": 1.0, "status": 503, "count": 2},
        {
            "operation": "*",
            "kind": "error",
            "rate": 1.0,
            "status": 429,
            "code": "APIG.0308",
            "count": 3,
        },
        {"operation": "*", "kind": "error", "rate": 0.3, "status": 500, "count": 6},
    ]
    await stack.admin.set_faults(rules, seed=7)
    volume = await stack.add_volume()
    stack.apply("bursty", volumeID=volume)

    obj = await stack.wait_condition("bursty", "Ready", "True", timeout=120)
    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]
    assert not obj["status"].get("error")
    # Every injected 503 and 429 reached the operator (it counts EVS answers by code) and was
    # retried: two creates answered 503, three calls 429, the 500s drawn at 30 % up to six, then
    # exactly one create accepted. And every call the simulator served, the operator counted.
    calls, codes = await eventually(
        lambda: counted_alike(stack), timeout=30, what="the operator's count of every EVS call"
    )
    creates = evs_codes(stack, "create")
    assert creates["503"] == 2, creates
    assert creates["202"] == 1, creates
    assert codes["429"] == 3, codes
    assert codes["500"] <= 6, codes
    assert set(codes) <= {"200", "202", "429", "500", "503"}, codes
    assert creates.total() == calls["create"], (creates, calls)
    failed = [e for e in stack.events("bursty") if e["reason"] == "Failed"]
    assert sum(e.get("count", 1) for e in failed) <= 5, "transient errors must not storm events"


async def test_operator_killed_after_create_call_makes_one_snapshot(stack: Stack) -> None:
    # The create is applied but its answer lost, and every list (the identity lookup) is slow:
    # when the create call is counted the operator cannot have learnt the snapshot's id yet.
    await stack.admin.set_faults(
        [
            {"operation": "create", "kind": "lost_response", "rate": 1.0, "count": 1},
            {"operation": "list", "kind": "latency", "rate": 1.0, "latency_seconds": 5.0},
        ]
    )
    volume = await stack.add_volume()
    stack.apply("crash", volumeID=volume)

    async def create_sent() -> bool:
        return (await stack.calls()).get("create", 0) >= 1

    await eventually(create_sent, what="the create call to reach the simulator")
    stack.operator.process.kill()
    assert len(await stack.snapshots_of(volume)) == 1
    assert not stack.must_get("crash").get("status", {}).get("snapshotID")

    await stack.admin.clear_faults()
    stack.operator.restart()
    obj = await stack.wait_condition("crash", "Ready", "True")
    [snap] = await stack.snapshots_of(volume)
    assert obj["status"]["snapshotID"] == snap["id"]
    assert snap["metadata"][OWNER_KEY] == obj["metadata"]["uid"]
    assert (await stack.calls())["create"] == 1


async def test_wrong_secret_key_names_class_and_never_leaks(start_stack: StartStack) -> None:
    wrong = "wrong-" + secrets.token_hex(20)
    stack = await start_stack(secret_key=wrong)
    volume = await stack.add_volume()
    stack.apply("badkey", volumeID=volume)

    obj = await stack.wait_condition("badkey", "Synced", "False")
    assert stack.class_name in condition(obj, "Synced")["message"]
    # The key is there but wrong: EVS's gateway refuses the signature (InvalidCredentials is
    # the operator's own code for a Secret without a key, which this is not).
    assert obj["status"]["error"]["code"] == "APIG.0301"
    assert condition(obj, "Ready")["status"] == "False"
    assert await stack.snapshots_of(volume) == []
    stack.assert_secret_absent(wrong)

    # Fixing the Secret retries at once, not after the blocked interval (minutes).
    fixed = class_manifests(
        stack.sim, class_name=stack.class_name, operator_namespace=stack.namespace
    )
    stack.cluster.kubectl("apply", "-f", "-", input=fixed)
    await stack.wait_condition("badkey", "Ready", "True", timeout=30)
    stack.assert_secret_absent(stack.sim.secret_key)
