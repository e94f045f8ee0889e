"""Faults, throttling, lost answers and bad credentials: exactly one snapshot, clear conditions."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cloudsnap.controllers.snapshot.controller import FINALIZER
from cloudsnap.controllers.snapshot.reconciler import Result
from cloudsnap.providers.evs.accounts import Accounts
from cloudsnap.providers.evs.connector import EVSConnector
from cloudsnap.runtime.failures import LocalFailure
from evs_simulator.testing import RunningSimulator
from tests.fixtures.reconcile import CLASS, FAST
from tests.fixtures.world import SECRET_NAME, FakeCluster, World
from tests.waiting import eventually


async def live_snapshots(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [s for s in await sim.admin.snapshots() if not s.get("deleted")]


def last_result(world: World, name: str) -> Result:
    """The latest step result of the resource `name` (others may have stepped since)."""
    results = [result for who, result in world.results if who == name]
    assert results, f"{name} was never reconciled"
    return results[-1]


def error_rule(operation: str, status: int, count: int) -> dict[str, Any]:
    """A simulator fault: the next ``count`` calls of ``operation`` fail with ``status``."""
    return {"operation": operation, "kind": "error", "rate": 1.0, "status": status, "count": count}


async def test_5xx_and_429_bursts_are_retried_and_end_with_one_snapshot(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    throttled = error_rule("*", 429, 3) | {"code": "APIG.0308"}
    await evs_sim.admin.set_faults(
        [error_rule("create", 503, 2), error_rule("list", 500, 2), throttled]
    )
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert len(await live_snapshots(evs_sim)) == 1
    transient = [r for who, r in world.results if r.outcome == "transient"]
    assert len(transient) >= 3
    delays = [r.requeue_after for r in transient]
    assert all(d is not None and 0 < d <= FAST.backoff.cap for d in delays)
    assert "error" not in world.objects["db"]["status"]  # cleared on success
    assert world.condition("db", "Synced")["status"] == "True"
    # No event storm: a Failed event when the error changes, not one per retry.
    failed = [e.message for _, e in world.events if e.reason == "Failed"]
    assert failed
    assert all(a != b for a, b in itertools.pairwise(failed))


@pytest.mark.parametrize("evs_sim", [{"create_seconds": 1.0}], indirect=True)
async def test_a_failing_batched_poll_is_no_failure_of_the_resources_it_answers(
    world: World, evs_sim: RunningSimulator
) -> None:
    """Three failed list calls while ten snapshots are being created: every resource retries
    quietly (no Failed Event, no status write), and each still costs exactly its three writes."""
    names = [f"db{i}" for i in range(10)]
    for name in names:
        world.apply(name, volumeID=(await evs_sim.admin.add_volume())["id"])
    await eventually(
        lambda: all(world.objects[n].get("status", {}).get("snapshotID") for n in names),
        timeout=10,
    )
    await evs_sim.admin.set_faults([error_rule("list", 503, 3)])
    await eventually(lambda: all(world.is_ready(n) for n in names), timeout=10)
    assert (await evs_sim.admin.calls())["list"] >= 4  # the three failed, then the answer
    quiet = [r for _, r in world.results if r.outcome == "transient"]
    assert quiet  # the failures reached the resources ...
    assert all(r.status is None and not r.events for r in quiet)  # ... and cost nothing
    assert [e for _, e in world.events if e.reason != "Created"] == []
    for name in names:
        assert world.writes.count((name, "status")) == 2
        assert "error" not in world.objects[name]["status"]


@pytest.mark.parametrize("evs_sim", [{"create_seconds": 60.0}], indirect=True)
async def test_a_batched_poll_failing_for_the_grace_period_is_reported_once(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    """A poll that keeps failing for Timing.poll_failure_grace is the resource's business: its
    status and one Failed Event say so, after a few quiet retries."""
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.objects["db"].get("status", {}).get("snapshotID"), timeout=10)
    await evs_sim.admin.set_faults([error_rule("list", 503, 1000)])
    await eventually(lambda: "Failed" in world.reasons("db"), timeout=10)
    results = [r for who, r in world.results if who == "db"]
    reported = next(i for i, r in enumerate(results) if "Failed" in [e.reason for e in r.events])
    quiet = results[2:reported]  # after the finalizer and the create
    assert len(quiet) >= 2
    assert all(r.outcome == "transient" and r.status is None for r in quiet)
    [failed] = [e for _, e in world.events if e.reason == "Failed"]
    assert failed.message.startswith("EVS.5503")
    assert world.objects["db"]["status"]["error"]["code"] == "EVS.5503"
    assert world.condition("db", "Ready")["reason"] == "Creating"  # the snapshot as last seen
    await eventually(lambda: len(world.results) > len(results) + 3, timeout=10)
    assert world.reasons("db").count("Failed") == 1  # repeats refresh status, no new Event


async def test_lost_create_answer_is_adopted_by_identity(
    world: World, evs_sim: RunningSimulator, volume: str
) -> None:
    await evs_sim.admin.set_faults(
        [{"operation": "create", "kind": "lost_response", "rate": 1.0, "count": 1}]
    )
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.is_ready("db"), timeout=10)
    snaps = await live_snapshots(evs_sim)
    assert len(snaps) == 1
    assert world.objects["db"]["status"]["snapshotID"] == snaps[0]["id"]
    assert "Found" in world.reasons("db")
    assert (await evs_sim.admin.calls()).get("create") == 1


async def test_wrong_secret_key_names_the_class_and_never_the_key(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    wrong = "wrong-secret-key-that-must-never-leak"
    fake.secrets[SECRET_NAME]["secretKey"] = wrong
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.condition("db", "Synced") is not None, timeout=10)
    status = world.objects["db"]["status"]
    assert status["error"]["code"] == "APIG.0301"
    synced = world.condition("db", "Synced")
    assert synced["status"] == "False"
    assert f"CloudSnapshotClass {CLASS}" in synced["message"]
    assert SECRET_NAME in synced["message"]
    assert last_result(world, "db").requeue_after == FAST.blocked
    shown = repr(world.objects) + repr(world.events) + repr(world.results)
    assert wrong not in shown
    assert evs_sim.secret_key not in shown


async def test_fixed_secret_lets_the_next_attempt_succeed(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster, accounts: Accounts
) -> None:
    fake.secrets[SECRET_NAME]["secretKey"] = "not-the-key"
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.condition("db", "Synced") is not None, timeout=10)
    fake.secrets[SECRET_NAME]["secretKey"] = evs_sim.secret_key
    world.controller.retry_blocked()  # what the Secret watch does
    await eventually(lambda: world.is_ready("db"), timeout=10)
    assert "error" not in world.objects["db"]["status"]


async def test_missing_class_secret_and_keys_are_local_blocked_errors(
    world: World, evs_sim: RunningSimulator, volume: str, fake: FakeCluster
) -> None:
    world.apply("noclass", volumeID=volume, className="nope")
    await eventually(lambda: world.condition("noclass", "Synced") is not None, timeout=10)
    error = world.objects["noclass"]["status"]["error"]
    assert (error["code"], error["retryable"]) == ("ClassNotFound", False)
    assert "nope" in error["message"]

    fake.secrets.clear()
    world.apply("nosecret", volumeID=volume)
    await eventually(lambda: world.condition("nosecret", "Synced") is not None, timeout=10)
    error = world.objects["nosecret"]["status"]["error"]
    assert error["code"] == "SecretNotFound"
    assert f"class {CLASS}" in error["message"]

    fake.secrets[SECRET_NAME] = {"accessKey": evs_sim.access_key}
    world.apply("nokey", volumeID=volume)
    await eventually(lambda: world.condition("nokey", "Synced") is not None, timeout=10)
    error = world.objects["nokey"]["status"]["error"]
    assert error["code"] == "InvalidCredentials"
    assert "secretKey" in error["message"]

    for name in ("noclass", "nosecret", "nokey"):
        assert FINALIZER not in world.objects[name]["metadata"].get("finalizers", [])
        last = last_result(world, name)
        assert (last.outcome, last.requeue_after) == ("blocked", FAST.blocked), (name, last)
    assert sum((await evs_sim.admin.calls()).values()) == 0


async def test_no_default_class_is_class_not_found(
    world: World, volume: str, fake: FakeCluster
) -> None:
    fake.classes[CLASS]["metadata"]["annotations"] = {}
    world.apply("db", volumeID=volume)
    await eventually(lambda: world.condition("db", "Synced") is not None, timeout=10)
    assert world.objects["db"]["status"]["error"]["code"] == "ClassNotFound"


async def test_newest_default_class_wins(
    accounts: Accounts, evs_sim: RunningSimulator, fake: FakeCluster
) -> None:
    fake.add_class(
        "newer",
        endpoint=evs_sim.endpoint,
        project_id=evs_sim.project_id,
        created="2026-06-01T00:00:00Z",
    )
    assert (await accounts.resolve(None)).class_name == "newer"
    assert (await accounts.resolve(CLASS)).class_name == CLASS


class _CacheLikeReader:
    """Hands out the same objects until one is replaced, as the operator's watch caches do."""

    def __init__(self, fake: FakeCluster) -> None:
        self.classes = copy.deepcopy(fake.classes)
        self.secrets = copy.deepcopy(fake.secrets)

    async def get_class(self, name: str) -> Mapping[str, Any] | None:
        return self.classes.get(name)

    async def list_classes(self) -> Sequence[Mapping[str, Any]]:
        return list(self.classes.values())

    async def get_secret(self, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(name)


async def test_an_account_kept_by_the_identity_of_its_sources_follows_their_replacements(
    fake: FakeCluster,
) -> None:
    """Unchanged objects give the same account without a rebuild; a replaced Secret with other
    keys, or a replaced class with another endpoint, gives a new one; an equal replacement not."""
    reader = _CacheLikeReader(fake)
    accounts = Accounts(reader, reader)
    try:
        first = await accounts.resolve(CLASS)
        assert await accounts.resolve(CLASS) is first
        assert await accounts.resolve(None) is first
        reader.secrets[SECRET_NAME] = dict(reader.secrets[SECRET_NAME])  # equal, new object
        assert await accounts.resolve(CLASS) is first
        reader.secrets[SECRET_NAME] = {**reader.secrets[SECRET_NAME], "secretKey": "rotated"}
        rotated = await accounts.resolve(CLASS)
        assert rotated is not first
        assert rotated.fingerprint != first.fingerprint
        moved = copy.deepcopy(reader.classes[CLASS])
        moved["spec"]["endpoint"] = "https://127.0.0.1:1"
        reader.classes[CLASS] = moved
        assert (await accounts.resolve(CLASS)).spec.evs_endpoint() == "https://127.0.0.1:1"
        del reader.classes[CLASS]
        with pytest.raises(LocalFailure, match="not found"):
            await accounts.resolve(CLASS)
    finally:
        await accounts.aclose()


@pytest.mark.parametrize(
    "edit",
    [
        {"allowedNamespaces": {"names": ["team-a"]}},
        {"volumeIDs": "Denied"},
        {"adoption": "Retain"},
        {"deletionPolicy": "Retain"},
    ],
)
async def test_editing_a_class_s_rules_keeps_its_client(
    fake: FakeCluster, edit: dict[str, Any]
) -> None:
    """A class's rules are read at each step from the account's spec; only what the client is
    built from (endpoint, region, project, credentials, TLS, rate limit) rebuilds it."""
    reader = _CacheLikeReader(fake)
    accounts = Accounts(reader, reader)
    connector = EVSConnector(accounts)
    try:
        first = await accounts.resolve(CLASS)
        edited = copy.deepcopy(reader.classes[CLASS])
        edited["spec"].update(edit)
        reader.classes[CLASS] = edited
        kept = await accounts.resolve(CLASS)
        assert kept.client is first.client, "a rules edit must not rebuild the EVS client"
        assert kept.poller is first.poller
        assert kept.fingerprint == first.fingerprint
        spec = (await connector.connect(CLASS)).class_spec
        rules = spec.model_dump(by_alias=True, exclude_none=True)
        assert {key: rules[key] for key in edit} == edit, "the connection sees the new rules"
        assert await accounts.resolve(CLASS) is kept

        paced = copy.deepcopy(edited)
        paced["spec"]["rateLimit"] = {"requestsPerSecond": 5, "burst": 5}
        reader.classes[CLASS] = paced
        assert (await accounts.resolve(CLASS)).client is not first.client
    finally:
        await accounts.aclose()
