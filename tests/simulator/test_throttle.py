"""Throttling like the API gateway: token buckets per caller and operation, 429 APIG.0308."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cloudsnap.evs.auth import AKSKAuth, TokenAuth
from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import EVSAPIError
from cloudsnap.evs.models import CreateSnapshotRequest
from evs_simulator.faults import OPERATIONS
from evs_simulator.testing import RunningSimulator, running_simulator
from evs_simulator.throttle import RateLimit, Throttle
from tests.fixtures.simulator import operator_client
from tests.simulator.clock import FakeClock
from tests.simulator.signed import assert_evs_error, evs_client

NONE = dict.fromkeys(OPERATIONS, 0)
# Slow enough that no token comes back while a test runs: one per 100 seconds.
TRICKLE = 0.01


def passes(
    throttle: Throttle, times: int, caller: str = "AK", operation: Any = "list"
) -> list[bool]:
    return [throttle.take(caller, operation) is None for _ in range(times)]


def test_burst_defaults_to_the_rate_rounded_up_and_at_least_one() -> None:
    assert RateLimit(rate=10).burst == 10
    assert RateLimit(rate=2.5).burst == 3
    assert RateLimit(rate=0.2).burst == 1
    assert RateLimit(rate=1, burst=5).burst == 5


def test_bucket_spends_its_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    throttle = Throttle({"list": RateLimit(rate=2)}, clock=clock)
    assert passes(throttle, 3) == [True, True, False]
    clock.advance(0.25)
    assert passes(throttle, 1) == [False]
    clock.advance(0.25)
    assert passes(throttle, 2) == [True, False]
    clock.advance(60)
    assert passes(throttle, 3) == [True, True, False], "a rested bucket holds only its burst"


def test_refused_calls_do_not_spend_tokens() -> None:
    clock = FakeClock()
    throttle = Throttle({"create": RateLimit(rate=1, burst=1)}, clock=clock)
    assert passes(throttle, 1, operation="create") == [True]
    clock.advance(0.5)
    assert passes(throttle, 5, operation="create") == [False] * 5
    clock.advance(0.5)
    assert passes(throttle, 2, operation="create") == [True, False]


def test_buckets_are_per_caller_and_per_operation_and_unset_means_unlimited() -> None:
    limit = RateLimit(rate=1, burst=2)
    throttle = Throttle({"list": limit, "create": limit}, clock=FakeClock())
    assert passes(throttle, 3, "AK1") == [True, True, False]
    assert passes(throttle, 3, "AK2") == [True, True, False]
    assert passes(throttle, 3, "AK1", "create") == [True, True, False]
    assert passes(throttle, 100, "AK1", "show") == [True] * 100
    assert throttle.take("AK1", "list") is limit
    throttle.set({"list": limit})
    assert passes(throttle, 3, "AK1") == [True, True, False], "new limits start full"
    assert passes(throttle, 3, "AK1", "create") == [True] * 3


async def list_status(client: httpx.AsyncClient) -> int:
    return (await client.get("/cloudsnapshots/detail")).status_code


async def test_over_the_limit_is_a_retryable_apig_0308_for_the_client() -> None:
    async with running_simulator(rate_limits=f"list={TRICKLE}/2") as sim:
        async with operator_client(sim) as client:
            for _ in range(2):
                assert (await client.list_snapshots()).count == 0
            with pytest.raises(EVSAPIError) as caught:
                await client.list_snapshots()
            error = caught.value
            assert (error.status_code, error.code, error.retryable) == (429, "APIG.0308", True)
            assert "policy user over ratelimit,limit:0.01,time:1 second" in str(error)
            assert error.request_id
            missing = "00000000-0000-4000-8000-000000000000"
            with pytest.raises(EVSAPIError, match=r"EVS\.5404"):
                await client.show_snapshot(missing)
        assert await sim.admin.throttled() == NONE | {"list": 1}
        assert await sim.admin.calls() == NONE | {"list": 3, "show": 1}


async def test_a_throttled_create_is_not_applied() -> None:
    async with running_simulator(rate_limits=f"create={TRICKLE}") as sim:
        volume = await sim.admin.add_volume()
        async with operator_client(sim) as client:
            request = CreateSnapshotRequest(volume_id=volume["id"], name="once")
            await client.create_snapshot(request)
            with pytest.raises(EVSAPIError, match=r"APIG\.0308"):
                await client.create_snapshot(request)
        assert [s["name"] for s in await sim.admin.snapshots()] == ["once"]
        assert await sim.admin.throttled() == NONE | {"create": 1}


async def test_access_key_and_token_callers_have_their_own_buckets() -> None:
    limits = f"list={TRICKLE}"
    async with running_simulator(auth_token="iam-token", rate_limits=limits) as sim:
        signed = AKSKAuth(sim.access_key, sim.secret_key, sim.project_id)
        async with (
            EVSClient(sim.endpoint, signed, sim.project_id) as by_key,
            EVSClient(
                sim.endpoint, TokenAuth("iam-token", sim.project_id), sim.project_id
            ) as by_token,
        ):
            for client in (by_key, by_token):
                await client.list_snapshots()
                with pytest.raises(EVSAPIError, match=r"APIG\.0308"):
                    await client.list_snapshots()
        assert await sim.admin.throttled() == NONE | {"list": 2}


async def test_unauthenticated_calls_are_refused_before_the_throttle() -> None:
    async with (
        running_simulator(rate_limits=f"list={TRICKLE}") as sim,
        evs_client(sim) as good,
        evs_client(sim, secret_key="not-the-secret") as forged,
    ):
        for _ in range(3):
            assert_evs_error(
                await forged.get("/cloudsnapshots/detail"), 401, "APIG.0301", "gateway"
            )
        assert await list_status(good) == 200, "forged calls spent the key's tokens"
        assert_evs_error(await good.get("/cloudsnapshots/detail"), 429, "APIG.0308", "gateway")
        assert await list_status(forged) == 401
        assert await sim.admin.throttled() == NONE | {"list": 1}


async def test_limits_are_read_and_replaced_through_the_admin_api(
    evs_sim: RunningSimulator,
) -> None:
    admin = evs_sim.admin
    assert (await admin.settings())["rate_limits"] == {}
    answer = await admin.set_rate_limits({"list": (TRICKLE, 2), "create": 4})
    assert answer["rate_limits"] == {
        "list": {"rate": TRICKLE, "burst": 2},
        "create": {"rate": 4.0, "burst": 4},
    }
    assert await admin.settings() == answer
    async with evs_client(evs_sim) as client:
        assert [await list_status(client) for _ in range(3)] == [200, 200, 429]
        await admin.set_rate_limits({})
        assert [await list_status(client) for _ in range(3)] == [200] * 3
        await admin.set_rate_limits({"list": TRICKLE})
        assert [await list_status(client) for _ in range(2)] == [200, 429]
        await admin.reset()
        assert (await admin.settings())["rate_limits"] == {}
        assert await admin.throttled() == NONE
        assert [await list_status(client) for _ in range(3)] == [200] * 3


@pytest.mark.parametrize(
    "limits",
    [
        {"copy": {"rate": 1}},
        {"list": {"rate": 0}},
        {"list": {"rate": 1, "burst": 0}},
        {"list": {"rate": 1, "per": "minute"}},
        {"list": 5},
    ],
)
async def test_bad_limits_are_refused(evs_sim: RunningSimulator, limits: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=evs_sim.endpoint) as http:
        response = await http.patch("/_sim/settings", json={"rate_limits": limits})
    assert response.status_code == 400, response.text
    assert (await evs_sim.admin.settings())["rate_limits"] == {}
