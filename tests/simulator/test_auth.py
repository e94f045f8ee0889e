"""The gateway checks: AK/SK signatures, clock skew, security and auth tokens, project ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from evs_simulator.testing import RunningSimulator, running_simulator
from tests.simulator.signed import assert_evs_error, evs_client, sign

DETAIL = "/cloudsnapshots/detail"


def sdk_date(offset: timedelta) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y%m%dT%H%M%SZ")


async def test_official_signature_is_accepted_and_answers_carry_request_id(
    evs_sim: RunningSimulator,
) -> None:
    async with evs_client(evs_sim) as client:
        response = await client.get(DETAIL, params={"name": "a b/é&c"})
    assert response.status_code == 200, response.text
    assert len(response.headers["X-Request-Id"]) == 32


async def test_wrong_secret_key_gets_gateway_401(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim, secret_key="not-the-secret") as client:
        response = await client.get(DETAIL)
    message = assert_evs_error(response, 401, "APIG.0301", "gateway")
    assert "signature" in message
    assert evs_sim.secret_key not in response.text


async def test_unknown_access_key_is_refused(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim) as client:
        signed = sign(client, "GET", DETAIL)
        signed.headers["Authorization"] = signed.headers["Authorization"].replace(
            evs_sim.access_key, "OTHERACCESSKEY"
        )
        response = await client.send(signed, auth=None)
    assert_evs_error(response, 401, "APIG.0301", "gateway")


async def test_missing_authorization_is_refused() -> None:
    async with running_simulator() as sim, httpx.AsyncClient() as client:
        response = await client.get(f"{sim.endpoint}/v2/{sim.project_id}{DETAIL}")
    assert_evs_error(response, 401, "APIG.0301", "gateway")


async def test_tampered_body_breaks_the_signature(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume()
    async with evs_client(evs_sim) as client:
        body = {"snapshot": {"volume_id": volume["id"]}}
        signed = sign(client, "POST", "/cloudsnapshots", json=body)
        tampered = httpx.Request(
            "POST",
            signed.url,
            headers={k: v for k, v in signed.headers.items() if k != "content-length"},
            content=signed.content.replace(b"}}", b', "force": true}}'),
        )
        response = await client.send(tampered, auth=None)
    assert_evs_error(response, 401, "APIG.0301", "gateway")
    assert await evs_sim.admin.snapshots() == []


async def test_tampered_query_breaks_the_signature(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim) as client:
        signed = sign(client, "GET", DETAIL + "?limit=1")
        moved = httpx.Request(
            "GET", str(signed.url).replace("limit=1", "limit=2"), headers=signed.headers
        )
        response = await client.send(moved, auth=None)
    assert_evs_error(response, 401, "APIG.0301", "gateway")


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [
        (timedelta(minutes=-14), True),
        (timedelta(minutes=14), True),
        (timedelta(minutes=-16), False),
        (timedelta(minutes=16), False),
    ],
)
async def test_clock_skew_over_15_minutes_is_refused(
    evs_sim: RunningSimulator, skew: timedelta, accepted: bool
) -> None:
    async with evs_client(evs_sim, X_Sdk_Date=sdk_date(skew)) as client:
        response = await client.get(DETAIL)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert "15 minutes" in assert_evs_error(response, 401, "APIG.0301", "gateway")


async def test_x_project_id_must_match(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim, project_header="f" * 32) as client:
        response = await client.get(DETAIL)
    assert_evs_error(response, 401, "APIG.0301", "gateway")


async def test_project_in_path_must_match(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim) as client:
        response = await client.get(f"{evs_sim.endpoint}/v2/{'e' * 32}{DETAIL}")
    assert "project id in the URL" in assert_evs_error(response, 401, "APIG.0301", "gateway")


async def test_security_token_required_when_configured() -> None:
    async with running_simulator(security_token="temp-token-1") as sim:
        async with evs_client(sim, X_Security_Token="temp-token-1") as client:
            assert (await client.get(DETAIL)).status_code == 200
        async with evs_client(sim, X_Security_Token="temp-token-2") as client:
            assert_evs_error(await client.get(DETAIL), 401, "APIG.0301", "gateway")
        async with evs_client(sim) as client:
            assert_evs_error(await client.get(DETAIL), 401, "APIG.0301", "gateway")


async def test_security_token_refused_when_not_configured(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim, X_Security_Token="stray") as client:
        assert_evs_error(await client.get(DETAIL), 401, "APIG.0301", "gateway")


async def test_auth_token_accepted_only_when_configured() -> None:
    url = "/v2/{pid}" + DETAIL
    async with running_simulator(auth_token="iam-token") as sim, httpx.AsyncClient() as client:
        good = await client.get(
            sim.endpoint + url.format(pid=sim.project_id), headers={"X-Auth-Token": "iam-token"}
        )
        bad = await client.get(
            sim.endpoint + url.format(pid=sim.project_id), headers={"X-Auth-Token": "other"}
        )
    assert good.status_code == 200
    assert_evs_error(bad, 401, "APIG.0301", "gateway")
    async with running_simulator() as sim, httpx.AsyncClient() as client:
        refused = await client.get(
            sim.endpoint + url.format(pid=sim.project_id), headers={"X-Auth-Token": "iam-token"}
        )
    assert_evs_error(refused, 401, "APIG.0301", "gateway")
