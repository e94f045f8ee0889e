"""Seeded fault injection: errors and refusals in EVS and gateway shapes, latency, hangs, lost
responses."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from evs_simulator.errors import THROTTLED
from evs_simulator.faults import OPERATIONS
from evs_simulator.testing import RunningSimulator
from tests.simulator.signed import assert_evs_error, evs_client

DETAIL = "/cloudsnapshots/detail"


def rule(kind: str, operation: str = "*", **fields: Any) -> dict[str, Any]:
    return {"operation": operation, "kind": kind, **fields}


IN_USE = "the snapshot is in use by a disk being created from it"
INTERNAL = "Internal error, please try again later."


@pytest.mark.parametrize("operation", ["create", "delete"])
@pytest.mark.parametrize(
    ("kind", "fields", "answer"),
    [
        pytest.param(
            "error", {"status": 500}, (500, "EVS.5500", "error", INTERNAL), id="error-500"
        ),
        pytest.param(
            "error", {"status": 503}, (503, "EVS.5503", "error", INTERNAL), id="error-503"
        ),
        pytest.param(
            "error", {"status": 429}, (429, "APIG.0308", "gateway", THROTTLED), id="error-429"
        ),
        pytest.param(
            "refusal",
            {"status": 400, "code": "EVS.1047", "message": IN_USE},
            (400, "EVS.1047", "error", IN_USE),
            id="refusal-400",
        ),
        pytest.param(
            "refusal",
            {"status": 409, "code": "EVS.9999", "message": IN_USE},
            (409, "EVS.9999", "error", IN_USE),
            id="refusal-409",
        ),
        pytest.param(
            "refusal",
            {"status": 403, "code": "APIG.0302", "message": IN_USE},
            (403, "APIG.0302", "gateway", IN_USE),
            id="refusal-403",
        ),
    ],
)
async def test_error_or_refusal_answers_in_evs_or_gateway_shape_and_applies_nothing(
    evs_sim: RunningSimulator,
    evs: httpx.AsyncClient,
    operation: str,
    kind: str,
    fields: dict[str, Any],
    answer: tuple[int, str, str, str],
) -> None:
    """An error (codes defaulted) or a refusal (code and message chosen) of a create or a delete
    answers ``answer`` (status, code, body shape, message), leaves every snapshot as it was, and
    hits only its operation and only as often as its count."""
    volume = await evs_sim.admin.add_volume()
    created = await evs.post("/cloudsnapshots", json={"snapshot": {"volume_id": volume["id"]}})
    snapshot_id = created.json()["snapshot"]["id"]
    await evs_sim.admin.set_snapshot_status(snapshot_id, "available")
    before = await evs_sim.admin.snapshots()

    def send() -> Awaitable[httpx.Response]:
        if operation == "create":
            return evs.post("/cloudsnapshots", json={"snapshot": {"volume_id": volume["id"]}})
        return evs.delete(f"/cloudsnapshots/{snapshot_id}")

    await evs_sim.admin.set_faults([rule(kind, operation, count=1, **fields)])
    status, code, key, message = answer
    assert assert_evs_error(await send(), status, code, key) == message
    assert await evs_sim.admin.snapshots() == before
    assert (await evs.get(f"/cloudsnapshots/{snapshot_id}")).status_code == 200
    assert (await send()).status_code == 202  # count=1: the next one goes through


async def test_error_fault_with_chosen_code(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults([rule("error", "list", status=500, code="EVS.2002")])
    assert_evs_error(await evs.get(DETAIL), 500, "EVS.2002")


async def test_refusal_defaults_to_400_with_a_generic_message(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults([rule("refusal", "list", code="EVS.2043")])
    assert assert_evs_error(await evs.get(DETAIL), 400, "EVS.2043") == "The request was refused."


async def test_fault_only_hits_its_operation(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults([rule("error", "show", status=503)])
    assert (await evs.get(DETAIL)).status_code == 200
    await evs_sim.admin.clear_faults()
    await evs_sim.admin.set_faults([rule("error", "*", status=503)])
    assert (await evs.get(DETAIL)).status_code == 503


async def test_count_caps_how_often_a_rule_fires(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults([rule("error", "list", status=503, count=2)])
    statuses = [(await evs.get(DETAIL)).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


async def test_latency_delays_the_answer(evs_sim: RunningSimulator, evs: httpx.AsyncClient) -> None:
    await evs_sim.admin.set_faults([rule("latency", "list", latency_seconds=0.4)])
    started = time.monotonic()
    assert (await evs.get(DETAIL)).status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_hang_is_never_answered_until_the_client_gives_up(
    evs_sim: RunningSimulator,
) -> None:
    await evs_sim.admin.set_faults([rule("hang", "list", count=1)])
    async with evs_client(evs_sim) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(DETAIL, timeout=0.5)
        assert time.monotonic() - started >= 0.5
        assert (await client.get(DETAIL)).status_code == 200
    assert (await evs_sim.admin.calls())["list"] == 2


async def test_lost_response_applies_then_drops_the_connection(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    volume = await evs_sim.admin.add_volume()
    await evs_sim.admin.set_faults([rule("lost_response", "create")])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await evs.post("/cloudsnapshots", json={"snapshot": {"volume_id": volume["id"]}})
    (made,) = await evs_sim.admin.snapshots()
    assert made["volume_id"] == volume["id"]
    assert made["deleted"] is False


async def outcomes(sim: RunningSimulator, seed: int) -> list[int]:
    await sim.admin.set_faults([rule("error", "list", status=503, rate=0.5)], seed=seed)
    async with evs_client(sim) as client:
        return [(await client.get(DETAIL)).status_code for _ in range(24)]


async def test_faults_replay_with_the_same_seed(evs_sim: RunningSimulator) -> None:
    first = await outcomes(evs_sim, seed=7)
    assert set(first) == {200, 503}
    assert await outcomes(evs_sim, seed=7) == first
    assert await outcomes(evs_sim, seed=8) != first


async def test_calls_count_every_request_including_failures(
    evs_sim: RunningSimulator, evs: httpx.AsyncClient
) -> None:
    await evs_sim.admin.set_faults([rule("error", "show", status=500)])
    await evs.get(f"/cloudsnapshots/{'0' * 8}-0000-4000-8000-{'0' * 12}")
    await evs.get("/cloudsnapshots/not-a-uuid")
    async with evs_client(evs_sim, secret_key="wrong") as bad:
        assert (await bad.get(DETAIL)).status_code == 401
    assert await evs_sim.admin.calls() == dict.fromkeys(OPERATIONS, 0) | {"show": 2, "list": 1}


async def test_invalid_fault_rules_are_refused(evs_sim: RunningSimulator) -> None:
    for bad in [
        rule("explode"),
        rule("error", "format"),
        rule("error", rate=2),
        rule("error", status=404),
        rule("error", status=400, code="EVS.1047"),
        rule("refusal", code="EVS.1047", status=500),
        rule("refusal", code="EVS.1047", status=399),
        rule("refusal", status=400),
        rule("refusal", code=""),
    ]:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await evs_sim.admin.set_faults([bad])
        assert caught.value.response.status_code == 400
