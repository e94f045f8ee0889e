"""Ownership guarantees end to end: who a snapshot belongs to, and that nothing else touches it.

Each test drives the operator (a process) through kubectl against the real control plane, with the
EVS simulator (a process) as the cloud, and asserts one guarantee of docs/ownership.md from the
outside: the snapshots the simulator holds (including deleted ones), its per-operation call
counters, the CloudSnapshot as the API server has it and, where the claim is "never", every
version the API server handed out (a list+watch records them all, so a transient state cannot
slip between two polls). Waiting is always on a condition; a "never" is checked over a window that
is shown to contain the retries or resyncs that could have broken it.

Operator settings a test needs (short absence grace, blocked-retry interval, ...) are passed as
CLOUDSNAP_* variables through `start_stack(settings=...)`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hack.cluster import Cluster
from hack.cluster.controlplane import free_port
from hack.sandbox import BIN, ManagedProcess, OperatorProcess, class_manifests

from cloudsnap.kube.writer import KubeWriter
from cloudsnap.runtime.writes import Conflict
from evs_simulator.admin_client import AdminClient
from tests.deploy.support import CHART, IMAGE
from tests.e2e.support import make_snapshot_outside, parse_time
from tests.fixtures.cluster import service_account_kubeconfig
from tests.fixtures.operator import Stack, StartStack, condition
from tests.fixtures.watching import WatchObject, api_client
from tests.waiting import eventually

OWNER_KEY = "cloudsnap.io/owner-uid"
FINALIZER = "evs.cloudsnap.io/snapshot-protection"
REMOVE_FINALIZERS = '[{"op":"remove","path":"/metadata/finalizers"}]'  # a JSON patch


# -- helpers ---------------------------------------------------------------------------------


def uid_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"])


def status_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


def has_finalizer(obj: dict[str, Any] | None) -> bool:
    return FINALIZER in ((obj or {}).get("metadata", {}).get("finalizers") or [])


async def tagged(admin: AdminClient, uid: str, *, deleted: bool = False) -> list[dict[str, Any]]:
    """Snapshots whose owner tag is `uid`: live ones, or all ever made when `deleted`."""
    return [
        snap
        for snap in await admin.snapshots()
        if snap["metadata"].get(OWNER_KEY) == uid and (deleted or not snap.get("deleted"))
    ]


async def snapshot(admin: AdminClient, snapshot_id: str) -> dict[str, Any]:
    """One snapshot as the simulator has it (deleted ones too)."""
    [found] = [snap for snap in await admin.snapshots() if snap["id"] == snapshot_id]
    return found


async def wait_calls(
    admin: AdminClient, operation: str, at_least: int, *, timeout: float = 30.0
) -> dict[str, int]:
    """Until the simulator has received `at_least` calls of `operation`; the counters then."""

    async def reached() -> dict[str, int] | None:
        calls = await admin.calls()
        return calls if calls.get(operation, 0) >= at_least else None

    calls: dict[str, int] = await eventually(
        reached, timeout=timeout, what=f"{at_least} {operation} call(s)"
    )
    return calls


def churn(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each version changed in metadata.finalizers and status, for failure messages."""
    changes = []
    for old, new in itertools.pairwise(versions):
        changed: dict[str, Any] = {"resourceVersion": new["metadata"]["resourceVersion"]}
        if old["metadata"].get("finalizers") != new["metadata"].get("finalizers"):
            changed["finalizers"] = new["metadata"].get("finalizers")
        old_status, new_status = status_of(old), status_of(new)
        for key in sorted(set(old_status) | set(new_status)):
            if old_status.get(key) != new_status.get(key):
                changed[key] = (old_status.get(key), new_status.get(key))
        changes.append(changed)
    return changes


def manifest(namespace: str, name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshot",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


# -- 1. rename during a retried create ------------------------------------------------------


@pytest.mark.parametrize("fault", ["lost_response", "late_apply"])
async def test_1_rename_during_retried_create_ends_with_one_renamed_snapshot(
    start_stack: StartStack, fault: str
) -> None:
    """The first create is slow (3 s on the wire) and its answer is lost; spec.name changes
    while it is on the wire. lost_response: EVS applied it before the answer was lost, so the
    retry must find it by its owner tag (no second create). late_apply: EVS applies it only
    after the retry has made another one, so the late extra must be deleted."""
    stack = await start_stack()
    volume = await stack.add_volume()
    rules: list[dict[str, Any]] = [
        {"operation": "create", "kind": "latency", "latency_seconds": 3.0, "count": 1}
    ]
    if fault == "lost_response":
        rules.append({"operation": "create", "kind": "lost_response", "count": 1})
    else:
        rules.append(
            {
                "operation": "create",
                "kind": "late_apply",
                "then": "disconnect",
                "apply_after_seconds": 8.0,
                "count": 1,
            }
        )
    await stack.admin.set_faults(rules)

    stack.apply("renamed", volumeID=volume, name="before")
    await wait_calls(stack.admin, "create", 1)
    stack.apply("renamed", volumeID=volume, name="after")  # the create is still on the wire
    uid = uid_of(stack.must_get("renamed"))

    async def settled() -> dict[str, Any] | None:
        obj = stack.must_get("renamed")
        live = await tagged(stack.admin, uid)
        every = await tagged(stack.admin, uid, deleted=True)
        synced = condition(obj, "Synced")
        done = (
            len(live) == 1
            and status_of(obj).get("snapshotID") == live[0]["id"]
            and live[0]["name"] == "after"
            and live[0]["status"] == "available"
            and condition(obj, "Ready").get("status") == "True"
            and synced.get("status") == "True"
            and synced.get("observedGeneration") == 2
            and len(every) == (1 if fault == "lost_response" else 2)
        )
        return obj if done else None

    obj = await eventually(settled, timeout=60, what="one renamed snapshot for the UID")
    calls = await stack.calls()
    every = await tagged(stack.admin, uid, deleted=True)
    if fault == "lost_response":
        assert calls["create"] == 1, calls  # the retry found it; it did not create again
        assert calls["update"] == 1, calls  # and renamed what it found, with one PUT
        await eventually(lambda: "Found" in stack.event_reasons("renamed"), what="Found event")
    else:
        assert calls["create"] == 2, calls  # the retry was sent with the new name
        [extra] = [snap for snap in every if snap["id"] != obj["status"]["snapshotID"]]
        assert extra["deleted"] is True
        assert extra["name"] == "before"  # the late create, with the name it was sent with
        await eventually(
            lambda: "DuplicateDeleted" in stack.event_reasons("renamed"), what="DuplicateDeleted"
        )
        assert stack.metric("cloudsnap_duplicate_snapshots_deleted_total") == 1


# -- 2. finalizer stripped while a create's outcome is unknown ---------------------------------


async def test_2_finalizer_stripped_during_create_backoff_still_one_snapshot(
    start_stack: StartStack,
) -> None:
    """The create's answer is lost (EVS applied it); during the retry backoff the user strips
    the finalizer. The operator must put it back before acting and find, not re-create."""
    # The retry comes 6 to 10 s (8 s +-25 %) after the failure: the strip, a kubectl poll and a
    # kubectl patch later (about a second here), lands before it even on a much busier machine.
    stack = await start_stack(
        settings={"CLOUDSNAP_BACKOFF_BASE_SECONDS": "8", "CLOUDSNAP_BACKOFF_MAX_SECONDS": "16"}
    )
    volume = await stack.add_volume()
    await stack.admin.set_faults([{"operation": "create", "kind": "lost_response", "count": 1}])
    stack.apply("stripped", volumeID=volume)

    def in_doubt() -> dict[str, Any] | None:
        obj = stack.must_get("stripped")
        status = status_of(obj)
        return obj if status.get("unansweredCreateTime") and not status.get("snapshotID") else None

    obj = await eventually(in_doubt, what="the unanswered create recorded in status")
    uid = uid_of(obj)
    assert has_finalizer(obj)
    unanswered_at = parse_time(status_of(obj)["unansweredCreateTime"])
    stripped = stack.kubectl(
        "patch",
        "csnap",
        "stripped",
        "--type=json",
        "-p",
        REMOVE_FINALIZERS,
        "-o",
        "json",
    )
    assert not has_finalizer(json.loads(stripped.stdout))
    # Stripped inside the backoff: the retry comes at least 6 s after the failure, which is no
    # earlier than the step that recorded it. (The strip itself wakes the resource at once, so a
    # lookup may follow it before this line: that step is the one that must restore the
    # finalizer before it acts.)
    since_failure = (datetime.now(UTC) - unanswered_at).total_seconds()
    assert since_failure < 6.0, f"stripped {since_failure:.1f} s after the failure: too late"
    assert len(await tagged(stack.admin, uid)) == 1  # EVS did apply the lost create

    ready = await stack.wait_condition("stripped", "Ready", "True")
    every = await tagged(stack.admin, uid, deleted=True)
    assert len(every) == 1, (every, await stack.calls(), stack.event_reasons("stripped"))
    assert ready["status"]["snapshotID"] == every[0]["id"]
    assert has_finalizer(ready), "the finalizer must hold a resource whose snapshot exists"
    assert (await stack.calls())["create"] == 1
    # Found is posted after the status write that makes the found snapshot Ready.
    await eventually(lambda: "Found" in stack.event_reasons("stripped"), what="a Found event")


# -- 3. deleted and re-created under the same name while a step is in flight ---------------------


async def delete_during_create(
    stack: Stack, name: str, volume: str, *, create_seconds: float, strip_finalizer: bool
) -> str:
    """Apply `name` and delete it while its create is on the wire (`create_seconds` long); with
    `strip_finalizer` the user also removes the finalizer, so the name is free at once. Returns
    the deleted object's UID."""
    await stack.admin.set_faults(
        [{"operation": "create", "kind": "latency", "latency_seconds": create_seconds, "count": 1}]
    )
    stack.apply(name, volumeID=volume)
    await wait_calls(stack.admin, "create", 1)
    uid = uid_of(stack.must_get(name))
    stack.kubectl("delete", "csnap", name, "--wait=false")
    if strip_finalizer:
        stack.kubectl("patch", "csnap", name, "--type=json", "-p", REMOVE_FINALIZERS)
    return uid


@pytest.mark.parametrize("how", ["released", "forced"])
async def test_3_recreated_same_name_never_reports_old_snapshot(
    start_stack: StartStack, watch: WatchObject, how: str
) -> None:
    """The first object's create is on the wire (7 s) when it is deleted. released: the user
    waits for the operator (policy Delete) and re-creates the name on another disk the moment
    it is free. forced: the user strips the finalizer, so the name is free while the old
    create is still in flight, and re-creates it on the same disk at once."""
    stack = await start_stack()
    seen = watch(stack, "same")
    old_volume = await stack.add_volume()
    new_volume = await stack.add_volume() if how == "released" else old_volume
    old_uid = await delete_during_create(
        stack, "same", old_volume, create_seconds=7.0, strip_finalizer=how == "forced"
    )
    if how == "forced":
        assert stack.get("same") is None
        assert await tagged(stack.admin, old_uid) == []  # the create is still on the wire

    new_manifest = manifest(stack.namespace, "same", volumeID=new_volume)

    def recreated() -> bool:
        made = stack.kubectl("create", "-f", "-", input=new_manifest, check=False)
        return made.returncode == 0

    await eventually(recreated, timeout=60, what="the name free to re-create")
    new_uid = uid_of(stack.must_get("same"))
    assert new_uid != old_uid

    # The old create lands (forced: after the new object exists).
    [old_snap] = await eventually(
        lambda: tagged(stack.admin, old_uid, deleted=True), what="the old create applied"
    )
    new = await stack.wait_condition("same", "Ready", "True")
    assert uid_of(new) == new_uid
    [new_snap] = await tagged(stack.admin, new_uid)
    assert new["status"]["snapshotID"] == new_snap["id"] != old_snap["id"]
    assert new_snap["volume_id"] == new_volume
    await stack.resync_window()  # the new one was looked at again, twice, meanwhile

    new_versions = seen.versions(new_uid)
    assert new_versions, "the watch saw the new object"
    for version in new_versions:
        status = status_of(version)
        assert status.get("snapshotID") in (None, new_snap["id"]), version
        if how == "released":
            assert status.get("volumeID") in (None, new_volume), version
    for version in seen.versions(old_uid):
        assert status_of(version).get("snapshotID") in (None, old_snap["id"]), version
    assert stack.must_get("same")["status"]["snapshotID"] == new_snap["id"]

    calls = await stack.calls()
    assert calls["create"] == 2 + 1, calls  # old, new, and the resync witness
    old_now = await snapshot(stack.admin, old_snap["id"])
    if how == "released":
        # The class's policy (Delete) was applied to the old one's own snapshot.
        assert old_now.get("deleted") is True
        assert calls.get("delete", 0) == 1, calls
    else:
        # No object was left to apply a policy for: the operator must not touch it.
        assert not old_now.get("deleted")
        assert calls.get("delete", 0) == 0, calls
    assert not (await snapshot(stack.admin, new_snap["id"])).get("deleted")


async def test_3b_step_of_a_resource_deleted_while_its_create_is_in_flight_ends_cleanly(
    start_stack: StartStack,
) -> None:
    """The DELETED event drops what the operator remembers of the UID while its create is on
    the wire; the answer, when it comes, must be dropped too, not crash the step (a KeyError
    here once made the scheduler log an unexpected failure and retry 30 s later)."""
    stack = await start_stack()
    volume = await stack.add_volume()
    uid = await delete_during_create(
        stack, "vanishing", volume, create_seconds=3.0, strip_finalizer=True
    )
    await eventually(lambda: tagged(stack.admin, uid), what="the in-flight create applied")
    await stack.resync_window()  # the operator went on working after the answer came back
    log = stack.operator.process.log_text()
    failures = [line for line in log.splitlines() if "Unexpected failure" in line]
    assert not failures, failures[0][:2000]


# -- 4. the account is pinned --------------------------------------------------------------------


async def test_4a_class_pointed_at_another_account_is_account_changed_never_not_found(
    start_stack: StartStack,
) -> None:
    grace = 2.0
    stack = await start_stack(
        settings={
            "CLOUDSNAP_ABSENCE_GRACE_SECONDS": str(grace),
            "CLOUDSNAP_BLOCKED_RETRY_SECONDS": "1",
        }
    )
    volume = await stack.add_volume()
    stack.apply("pinned", volumeID=volume)
    obj = await stack.wait_condition("pinned", "Ready", "True")
    snapshot_id = obj["status"]["snapshotID"]
    account = obj["status"]["account"]
    assert account["className"] == stack.class_name
    # The twin accepts the same credentials and project: were the operator to look for the
    # snapshot there, it would find it missing (NotFound), which is what must not happen.
    twin, twin_admin = await stack.start_twin()

    stack.patch_class({"endpoint": twin.endpoint})
    changed = await stack.wait_condition(
        "pinned", "Synced", "False", reason="AccountChanged", timeout=30
    )
    message = condition(changed, "Synced")["message"]
    assert stack.class_name in message
    assert "endpoint" in message
    blocked_before = stack.metric("cloudsnap_reconciles_total", outcome="blocked")

    reasons: set[str] = set()

    def window() -> bool:
        current = stack.must_get("pinned")
        reasons.add(condition(current, "Ready").get("reason", ""))
        assert has_finalizer(current), "the finalizer must stay while the snapshot exists"
        assert current["status"]["snapshotID"] == snapshot_id
        assert current["status"]["account"] == account
        blocked = stack.metric("cloudsnap_reconciles_total", outcome="blocked")
        return blocked >= blocked_before + 5  # five retries, ~5 s: more than twice the grace

    await eventually(window, timeout=60, what="five retries while the account is changed")
    assert "NotFound" not in reasons
    assert condition(stack.must_get("pinned"), "Synced")["reason"] == "AccountChanged"
    assert sum((await twin_admin.calls()).values()) == 0, "the other account was called"
    assert (await snapshot(stack.admin, snapshot_id))["status"] == "available"

    stack.patch_class({"endpoint": stack.sim.endpoint})
    restored = await stack.wait_condition("pinned", "Synced", "True", timeout=15)
    assert condition(restored, "Ready")["status"] == "True"
    assert restored["status"]["snapshotID"] == snapshot_id
    assert (await stack.calls())["create"] == 1


async def test_4b_newer_default_class_does_not_move_an_existing_resource(
    start_stack: StartStack,
) -> None:
    stack = await start_stack()
    volume = await stack.add_volume()
    stack.apply("stays", volumeID=volume)
    obj = await stack.wait_condition("stays", "Ready", "True")
    uid = uid_of(obj)
    snapshot_id = obj["status"]["snapshotID"]
    twin, twin_admin = await stack.start_twin()
    newer = f"{stack.class_name}-newer"  # sorts after the first on a creation-time tie
    manifests = class_manifests(twin, class_name=newer, operator_namespace=stack.namespace)
    # Only the class: the Secret (same name, same credentials) is already there.
    [_, new_class] = manifests.split("\n---\n")
    stack.cluster.kubectl("apply", "-f", "-", input=new_class)
    try:
        # New resources do go to the newer default class ...
        twin_volume = str((await twin_admin.add_volume())["id"])
        stack.apply("fresh", volumeID=twin_volume)
        fresh = await stack.wait_condition("fresh", "Ready", "True")
        assert fresh["status"]["account"]["className"] == newer
        # ... and the existing one, looked at again twice on its own account, stays there.
        reads_before = await stack.calls()

        async def resynced() -> bool:
            now = await stack.calls()
            grown = sum(now.get(op, 0) - reads_before.get(op, 0) for op in ("list", "show"))
            return grown >= 2

        await eventually(resynced, timeout=30, what="two resyncs of csnap/stays")
        current = stack.must_get("stays")
        assert current["status"]["account"]["className"] == stack.class_name
        assert current["status"]["account"]["endpoint"] in stack.sim.endpoint
        assert current["status"]["snapshotID"] == snapshot_id
        assert condition(current, "Ready")["status"] == "True"
        assert condition(current, "Synced")["status"] == "True"
        assert await tagged(twin_admin, uid, deleted=True) == []
        assert (await stack.calls())["create"] == 1
    finally:
        stack.kubectl("delete", "csnap", "fresh", "--wait=false", check=False)
        stack.cluster.kubectl("delete", "csnapclass", newer, "--ignore-not-found", check=False)


async def test_4c_list_lag_never_declares_a_new_snapshot_not_found(
    start_stack: StartStack, watch: WatchObject
) -> None:
    lag, grace = 8.0, 2.0
    stack = await start_stack(settings={"CLOUDSNAP_ABSENCE_GRACE_SECONDS": str(grace)})
    await stack.admin.set_list_lag(lag)
    seen = watch(stack, "lagged")
    volume = await stack.add_volume()
    stack.apply("lagged", volumeID=volume)
    obj = await stack.wait_condition("lagged", "Ready", "True", timeout=30)
    [snap] = await tagged(stack.admin, uid_of(obj))
    born = parse_time(snap["created_at"])
    lists_at_ready = (await stack.calls()).get("list", 0)

    async def lag_over() -> bool:
        # Past the lag and well past the grace, with the operator still looking (lists).
        old = (datetime.now(UTC) - born).total_seconds() > lag + 2 * grace
        return old and (await stack.calls()).get("list", 0) >= lists_at_ready + 3

    await eventually(lag_over, timeout=60, what="the list lag and the grace to pass")
    versions = seen.versions(uid_of(obj))
    reasons = [condition(v, "Ready").get("reason") for v in versions]
    assert "NotFound" not in reasons, reasons
    assert all(has_finalizer(v) for v in versions[1:]), "the finalizer was never released"
    final = stack.must_get("lagged")
    assert condition(final, "Ready")["status"] == "True"
    assert final["status"]["snapshotID"] == snap["id"]
    assert "missingSince" not in final["status"]
    calls = await stack.calls()
    assert calls.get("show", 0) >= 1, calls  # the absence from list was checked with a show
    assert calls["create"] == 1


# -- 5. adoption collisions ------------------------------------------------------------------------


async def test_5a_adopting_another_resources_snapshot_is_refused_and_harmless(
    stack: Stack,
) -> None:
    volume = await stack.add_volume()
    stack.apply("victim", volumeID=volume)
    victim = await stack.wait_condition("victim", "Ready", "True")
    stolen = victim["status"]["snapshotID"]

    stack.apply("thief", snapshotID=stolen)
    thief = await stack.wait_condition("thief", "Synced", "False", reason="AlreadyOwned")
    assert f"{stack.namespace}/victim" in condition(thief, "Synced")["message"]
    assert condition(thief, "Ready")["status"] == "False"
    assert condition(thief, "Ready")["reason"] == "AlreadyOwned"
    assert "snapshotID" not in thief["status"]

    deleted = stack.kubectl("delete", "csnap", "thief", "--timeout=30s", check=False)
    assert deleted.returncode == 0, deleted.stderr
    await stack.resync_window()
    assert (await snapshot(stack.admin, stolen))["status"] == "available"
    assert not (await snapshot(stack.admin, stolen)).get("deleted")
    victim = stack.must_get("victim")
    assert condition(victim, "Ready")["status"] == "True"
    assert victim["status"]["snapshotID"] == stolen
    assert (await stack.calls()).get("delete", 0) == 0


async def test_5b_second_adopter_of_a_claimed_snapshot_is_refused_and_harmless(
    stack: Stack,
) -> None:
    """An untagged snapshot may be adopted by one resource only: a later adopter is refused,
    naming the first, and deleting it (even with deletionPolicy Delete) leaves it alone."""
    volume = await stack.add_volume()
    made = await asyncio.to_thread(make_snapshot_outside, stack, volume)
    assert (await snapshot(stack.admin, made))["metadata"].get(OWNER_KEY) is None
    stack.apply("first", snapshotID=made)
    first = await stack.wait_condition("first", "Ready", "True")
    assert first["status"]["snapshotID"] == made
    assert first["status"]["deletionPolicy"] == "Retain"  # adopted: kept unless told otherwise
    stack.apply("second", snapshotID=made, deletionPolicy="Delete")
    second = await stack.wait_condition("second", "Synced", "False", reason="AlreadyOwned")
    assert f"{stack.namespace}/first" in condition(second, "Synced")["message"]
    assert condition(second, "Ready")["reason"] == "AlreadyOwned"
    assert "snapshotID" not in second["status"]
    deleted = stack.kubectl("delete", "csnap", "second", "--timeout=30s", check=False)
    assert deleted.returncode == 0, deleted.stderr
    await stack.resync_window()
    assert not (await snapshot(stack.admin, made)).get("deleted")
    assert (await snapshot(stack.admin, made))["status"] == "available"
    first = stack.must_get("first")
    assert condition(first, "Ready")["status"] == "True"
    assert first["status"]["snapshotID"] == made
    assert (await stack.calls()).get("delete", 0) == 0


async def test_5c_snapshot_kept_from_a_deleted_resource_can_be_adopted(stack: Stack) -> None:
    """Retain, delete the resource, adopt the kept snapshot again (e.g. in another namespace
    or after a restore): its owner tag names no existing CloudSnapshot, so adoption is allowed.
    (It was once allowed by the adoption check and then refused by the next ownership check.)"""
    volume = await stack.add_volume()
    stack.apply("maker", volumeID=volume, deletionPolicy="Retain")
    made = (await stack.wait_condition("maker", "Ready", "True"))["status"]["snapshotID"]
    stack.kubectl("delete", "csnap", "maker", "--timeout=30s")
    stack.apply("heir", snapshotID=made)

    def reconciled() -> dict[str, Any] | None:
        obj = stack.must_get("heir")
        return obj if condition(obj, "Synced") else None

    heir = await eventually(reconciled, what="csnap/heir reconciled")
    assert condition(heir, "Synced")["status"] == "True", condition(heir, "Synced")
    heir = await stack.wait_condition("heir", "Ready", "True")
    assert heir["status"]["snapshotID"] == made
    assert not (await snapshot(stack.admin, made)).get("deleted")


# -- 6. a 404 on the rename PUT --------------------------------------------------------------------


async def test_6_rename_404_is_reobserved_and_ends_not_found_after_grace(
    start_stack: StartStack, watch: WatchObject
) -> None:
    grace = 3.0
    stack = await start_stack(settings={"CLOUDSNAP_ABSENCE_GRACE_SECONDS": str(grace)})
    seen = watch(stack, "renamed")
    volume = await stack.add_volume()
    stack.apply("renamed", volumeID=volume, name="one")
    obj = await stack.wait_condition("renamed", "Ready", "True")
    snapshot_id = obj["status"]["snapshotID"]
    # The PUT waits 3 s before EVS looks the snapshot up: it is removed in between.
    await stack.admin.set_faults(
        [{"operation": "update", "kind": "latency", "latency_seconds": 3.0, "count": 1}]
    )
    stack.apply("renamed", volumeID=volume, name="two")
    await wait_calls(stack.admin, "update", 1)
    await stack.admin.remove_snapshot(snapshot_id)
    removed = time.monotonic()

    gone = await stack.wait_condition("renamed", "Ready", "False", reason="NotFound", timeout=60)
    took = time.monotonic() - removed
    print(f"\nNotFound {took:.1f}s after the snapshot was removed (grace {grace:g}s)")
    assert took >= grace, f"declared NotFound {took:.1f}s after the 404, within the grace"
    status = gone["status"]
    assert status["missingSince"]
    not_found_at = parse_time(condition(gone, "Ready")["lastTransitionTime"])
    assert (not_found_at - parse_time(status["missingSince"])).total_seconds() >= grace - 1
    assert status.get("phase") != "available"
    # The status is written before the finalizer is released (two writes): wait for the second.
    await eventually(
        lambda: not has_finalizer(stack.must_get("renamed")),
        what="a confirmed-gone snapshot releases the finalizer",
    )
    # From the rename on, no version said Ready/available, nor gave up as an invalid request.
    after = [v for v in seen.versions(uid_of(obj)) if v["metadata"]["generation"] >= 2]
    for version in after:
        error = status_of(version).get("error") or {}
        assert not (error and not error.get("retryable") and error["code"] != "SnapshotNotFound"), (
            error
        )
        if condition(version, "Ready").get("observedGeneration") == 2:
            assert condition(version, "Ready").get("status") != "True", version
    calls = await stack.calls()
    assert calls["create"] == 1, calls  # never re-created
    assert calls["update"] == 1, calls


# -- 7. account rebuild mid-backlog ------------------------------------------------------------


async def test_7_account_rebuild_mid_backlog_strands_nothing(
    start_stack: StartStack,
) -> None:
    count, bound = 10, 45.0  # the step deadline is 120 s: a stranded waiter would blow the bound
    stack = await start_stack()
    stack.patch_class({"rateLimit": {"requestsPerSecond": 2, "burst": 2}})
    # Every list (the batched polls) takes 2 s, so polls are always in flight on the old poller.
    await stack.admin.set_faults([{"operation": "list", "kind": "latency", "latency_seconds": 2.0}])
    volumes = [await stack.add_volume() for _ in range(count)]
    names = [f"backlog-{i}" for i in range(count)]
    for name, volume in zip(names, volumes, strict=True):
        stack.apply(name, volumeID=volume)

    await wait_calls(stack.admin, "list", 1)
    stack.patch_class({"rateLimit": {"requestsPerSecond": 3, "burst": 3}})
    rebuilt = time.monotonic()
    await wait_calls(stack.admin, "create", count // 2)
    stack.patch_class({"rateLimit": {"requestsPerSecond": 4, "burst": 4}})

    def all_ready() -> bool:
        ready = [o for o in stack.all() if condition(o, "Ready").get("status") == "True"]
        return len(ready) == count

    await eventually(all_ready, timeout=bound, what=f"{count} resources Ready")
    took = time.monotonic() - rebuilt
    # Evidence the rebuilds met polls in flight: their waiters were failed and retried, quietly
    # (a failed look is the class's trouble, not the resource's, so status does not record it).
    replaced = set(
        re.findall(
            r"(backlog-\d+): [^\n]*EVS client was replaced[^\n]*retrying quietly",
            stack.operator.process.log_text(),
        )
    )
    print(f"\nall {count} Ready {took:.1f}s after the first rebuild; waiters failed: {replaced}")
    assert replaced, "no resource retried after the replaced client: the rebuild met no waiter"
    for name, volume in zip(names, volumes, strict=True):
        obj = stack.must_get(name)
        [snap] = await tagged(stack.admin, uid_of(obj), deleted=True)
        assert snap["volume_id"] == volume
        assert obj["status"]["snapshotID"] == snap["id"]
    assert (await stack.calls())["create"] == count


# -- 8. a deleted class ------------------------------------------------------------------------


async def test_8_deleted_class_blocks_delete_with_way_out_and_recorded_retain_releases(
    start_stack: StartStack,
) -> None:
    stack = await start_stack(settings={"CLOUDSNAP_BLOCKED_RETRY_SECONDS": "1"})
    volume = await stack.add_volume()
    stack.apply("was-delete", volumeID=volume)
    deleting = await stack.wait_condition("was-delete", "Ready", "True")
    assert deleting["status"]["deletionPolicy"] == "Delete"
    stack.patch_class({"deletionPolicy": "Retain"})
    stack.apply("was-retain", volumeID=volume)
    retained = await stack.wait_condition("was-retain", "Ready", "True")
    assert retained["status"]["deletionPolicy"] == "Retain"
    assert stack.must_get("was-delete")["status"]["deletionPolicy"] == "Delete"

    stack.cluster.kubectl("delete", "csnapclass", stack.class_name)

    # The recorded Retain stands without the class: released, the snapshot kept.
    gone = stack.kubectl("delete", "csnap", "was-retain", "--timeout=30s", check=False)
    assert gone.returncode == 0, gone.stderr
    kept = await snapshot(stack.admin, retained["status"]["snapshotID"])
    assert kept["status"] == "available"
    assert not kept.get("deleted")

    # The recorded Delete cannot be carried out without the class: it says how to get out.
    stack.kubectl("delete", "csnap", "was-delete", "--wait=false")
    blocked = await stack.wait_condition(
        "was-delete", "Synced", "False", reason="ClassNotFound", timeout=30
    )
    message = condition(blocked, "Synced")["message"]
    assert stack.class_name in message
    assert "recreate the class" in message
    assert "spec.deletionPolicy: Retain" in message
    retries_from = stack.metric("cloudsnap_reconciles_total", outcome="blocked")

    def held() -> bool:
        current = stack.must_get("was-delete")
        assert has_finalizer(current)
        return stack.metric("cloudsnap_reconciles_total", outcome="blocked") >= retries_from + 3

    await eventually(held, timeout=30, what="three retries while the class is gone")
    assert not (await snapshot(stack.admin, deleting["status"]["snapshotID"])).get("deleted")

    retain = '{"spec":{"deletionPolicy":"Retain"}}'
    stack.kubectl("patch", "csnap", "was-delete", "--type=merge", "-p", retain)
    await eventually(lambda: stack.get("was-delete") is None, timeout=30, what="released")
    kept = await snapshot(stack.admin, deleting["status"]["snapshotID"])
    assert kept["status"] == "available"
    assert not kept.get("deleted")
    assert (await stack.calls()).get("delete", 0) == 0
    assert "Retained" in stack.event_reasons("was-delete")


# -- 9. EVS.5413: quota per disk ---------------------------------------------------------------


async def test_9_quota_blocked_without_churn_and_retried_when_a_sibling_is_deleted(
    start_stack: StartStack, watch: WatchObject
) -> None:
    blocked_retry = 2.0
    stack = await start_stack(settings={"CLOUDSNAP_BLOCKED_RETRY_SECONDS": str(blocked_retry)})
    volume = await stack.add_volume()
    siblings = [f"quota-{i}" for i in range(7)]
    for name in siblings:
        stack.apply(name, volumeID=volume, deletionPolicy="Delete")
    for name in siblings:
        await stack.wait_condition(name, "Ready", "True")
    assert len(await stack.snapshots_of(volume)) == 7

    seen = watch(stack, "eighth")
    stack.apply("eighth", volumeID=volume)
    blocked = await stack.wait_condition("eighth", "Synced", "False", timeout=30)
    message = condition(blocked, "Synced")["message"]
    assert volume in message
    assert blocked["status"]["error"]["code"] == "EVS.5413"
    assert has_finalizer(blocked)
    creates = (await stack.calls())["create"]

    # Two blocked retries (each a create answered 413) ...
    await wait_calls(stack.admin, "create", creates + 2, timeout=10 * blocked_retry)
    # ... and no churn: the finalizer was added once and never removed, and the retries
    # refreshed neither the error (at most once a minute) nor the conditions.
    versions = seen.versions(uid_of(blocked))
    holds = [has_finalizer(v) for v in versions]
    adds = sum(1 for a, b in itertools.pairwise(holds) if b and not a) + (1 if holds[0] else 0)
    removals = sum(1 for a, b in itertools.pairwise(holds) if a and not b)
    assert (adds, removals) == (1, 0), holds
    first = next(i for i, v in enumerate(versions) if status_of(v).get("error"))
    for later in versions[first + 1 :]:
        assert status_of(later)["error"] == status_of(versions[first])["error"], churn(versions)
        assert status_of(later)["conditions"] == status_of(versions[first])["conditions"]
    print(f"\nwrites while blocked, after the first: {churn(versions[first:])}")

    # A long blocked interval now: only the freed quota can bring it back soon.
    stack.operator.process.stop()
    stopped_creates = (await stack.calls())["create"]
    stack.restart_operator({"CLOUDSNAP_BLOCKED_RETRY_SECONDS": "600"})
    await wait_calls(stack.admin, "create", stopped_creates + 1)  # re-tried on start, parked
    stack.kubectl("delete", "csnap", siblings[0], "--wait=false")
    freed = time.monotonic()
    ready = await stack.wait_condition("eighth", "Ready", "True", timeout=60)
    took = time.monotonic() - freed
    print(f"csnap/eighth Ready {took:.1f}s after a sibling's delete (blocked interval 600s)")
    assert took < 30
    assert stack.get(siblings[0]) is None
    live = await stack.snapshots_of(volume)
    assert len(live) == 7
    assert ready["status"]["snapshotID"] in {s["id"] for s in live}


# -- 10. watch caches that never sync ----------------------------------------------------------


async def test_10_unreadable_secrets_keep_readyz_false_and_are_logged_sparingly(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, tmp_path: Path
) -> None:
    """The chart's ServiceAccount may read Secrets in its release namespace only; the operator is
    told its Secrets are in `default`: that cache never syncs."""
    release = f"o{uuid.uuid4().hex[:8]}"
    cluster.helm(
        *("install", release, str(CHART), "--namespace", namespace, "--skip-crds"),
        *("--set", IMAGE),
        *("--set", f"operator.watchNamespaces={{{namespace}}}"),
    )
    process: ManagedProcess | None = None
    try:
        account = f"{release}-cloudsnap-operator"
        kubeconfig = service_account_kubeconfig(cluster, namespace, account, tmp_path / "sa.kcfg")
        port = free_port()
        argv = [str(BIN / "cloudsnap-operator"), "run", "--operator-namespace", "default"]
        argv += ["--namespace", namespace, "--metrics-port", str(port), "--log-format", "json"]
        env = {**cluster.env, "KUBECONFIG": str(kubeconfig), "CLOUDSNAP_METRICS_HOST": "127.0.0.1"}
        process = ManagedProcess(argv, tmp_path / "operator.log", env)
        process.start()
        operator = OperatorProcess(process, port)

        def readyz() -> int | None:
            assert process is not None
            assert process.alive, process.log_text()[-3000:]
            try:
                return httpx.get(operator.readyz, timeout=2).status_code
            except httpx.TransportError:
                return None

        statuses: list[int] = []

        def reports() -> list[dict[str, Any]]:
            code = readyz()
            if code is not None:
                statuses.append(code)
            lines = [json.loads(line) for line in process.log_text().splitlines() if line]
            return [
                entry
                for entry in lines
                if entry.get("level") == "WARNING" and "secrets" in entry.get("message", "")
            ]

        await eventually(lambda: len(reports()) >= 2, timeout=75, what="two refusal reports")
        found = reports()
        assert statuses, "the probe never answered"
        assert set(statuses) == {503}, f"/readyz answered {sorted(set(statuses))}"
        first = found[0]
        for entry in found:
            message = entry["message"]
            assert re.search(r"\blist\b", message), message  # the verb
            assert "secrets" in message, message  # what
            assert "default" in message, message  # where
            assert account in message, message  # who was refused
        times = [parse_time(entry["time"]) for entry in found]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        print(f"\n{len(found)} reports, {gaps} s apart: {first['message']}")
        assert min(gaps) >= 29.5, f"reported again after {min(gaps):.1f}s"

        # Control: the Secret cache was all that kept it unready. Granted, it becomes ready.
        cluster.kubectl("apply", "-f", "-", input=secret_reader(release, namespace, account))
        await eventually(
            lambda: readyz() == 200, timeout=60, what="/readyz once Secrets are readable"
        )
    finally:
        if process is not None:
            process.stop()
        cluster.kubectl(
            "-n", "default", "delete", "role,rolebinding", f"{release}-secrets",
            "--ignore-not-found", check=False,
        )  # fmt: skip
        cluster.helm("uninstall", release, "--namespace", namespace)


def secret_reader(release: str, namespace: str, account: str) -> str:
    """A Role and RoleBinding letting the account list and watch Secrets in `default`."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": f"{release}-secrets", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{release}-secrets", "namespace": "default"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"{release}-secrets",
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    return "\n---\n".join(json.dumps(doc) for doc in (role, binding))


# -- a status write for a deleted object never lands on its successor ----------------------------


async def recreate_under_same_name(
    cluster: Cluster, namespace: str, writer: KubeWriter
) -> tuple[dict[str, Any], dict[str, Any]]:
    """csnap/reborn created, written to through `writer` (its own UID), deleted and created
    again: (the old object as last written, the new object)."""
    doc = manifest(namespace, "reborn", volumeID=str(uuid.uuid4()))

    def get() -> dict[str, Any]:
        out = cluster.kubectl("-n", namespace, "get", "csnap", "reborn", "-o", "json")
        return dict(json.loads(out.stdout))

    cluster.kubectl("-n", namespace, "create", "-f", "-", input=doc)
    old_uid = uid_of(get())
    # Positive control: with the right UID (and version) both writes land.
    written = await writer.patch_status(get(), {"phase": "old"})
    assert written is not None
    assert written["status"] == {"phase": "old"}
    held = await writer.set_finalizers(written, ["x.io/hold"])
    assert held is not None
    assert held["metadata"]["finalizers"] == ["x.io/hold"]
    cluster.kubectl(
        "-n", namespace, "patch", "csnap", "reborn", "--type=merge",
        "-p", '{"metadata":{"finalizers":null}}',
    )  # fmt: skip
    cluster.kubectl("-n", namespace, "delete", "csnap", "reborn")
    cluster.kubectl("-n", namespace, "create", "-f", "-", input=doc)
    new = get()
    assert uid_of(new) != old_uid
    return held, new


def under_old_uid(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """The new object as read, but with the old one's UID: writes a step still holding the old
    object would send, at the new object's current resourceVersion."""
    return {"metadata": {**new["metadata"], "uid": uid_of(old)}}


@pytest.fixture
def writer(cluster: Cluster) -> Iterator[KubeWriter]:
    api = api_client(cluster)
    kube_writer = KubeWriter(api)
    yield kube_writer
    kube_writer.close()
    api.close()  # type: ignore[no-untyped-call]


async def test_writes_for_a_deleted_uid_never_land_on_a_recreated_object(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, writer: KubeWriter
) -> None:
    """The guarantee itself: whatever the writer answers, nothing reaches the new object."""
    old, new = await recreate_under_same_name(cluster, namespace, writer)
    version = new["metadata"]["resourceVersion"]
    posing = under_old_uid(new, old)
    outcomes: list[str] = []
    for write in (
        writer.patch_status(posing, {"phase": "stale"}),
        writer.set_finalizers(posing, ["x.io/stale"]),
    ):
        try:
            outcomes.append(repr(await write))
        except Exception as exc:  # the answer is the other test's business
            outcomes.append(type(exc).__name__)
    print(f"\nwrites with the old UID answered: {outcomes}")
    after = json.loads(
        cluster.kubectl("-n", namespace, "get", "csnap", "reborn", "-o", "json").stdout
    )
    assert not after.get("status"), after.get("status")
    assert not after["metadata"].get("finalizers")
    assert after["metadata"]["resourceVersion"] == version  # nothing was written at all
    # And the new UID's own writes still land.
    mine = await writer.patch_status(new, {"phase": "new"})
    assert mine is not None
    assert mine["status"] == {"phase": "new"}


async def test_writer_answers_none_for_a_stale_uid_and_conflict_for_a_stale_version(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, writer: KubeWriter
) -> None:
    """The Writer contract the controller relies on: a write for a gone UID is None (as for a
    gone object), a finalizer write at a stale resourceVersion is Conflict (retried at once).
    The API server answers a failed JSON-patch test with a bare 422 (no cause, no path), which
    the writer must read as one of these, never raise as UnprocessableEntityException."""
    old, new = await recreate_under_same_name(cluster, namespace, writer)
    posing = under_old_uid(new, old)
    with pytest.raises(Conflict):
        await writer.set_finalizers({"metadata": {**new["metadata"], "resourceVersion": "1"}}, [])
    assert await writer.patch_status(posing, {"phase": "stale"}) is None
    stale = await writer.set_finalizers(posing, ["x.io/stale"])
    assert stale is None
