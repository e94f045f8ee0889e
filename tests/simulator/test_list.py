"""List: paging, ``count``, ``snapshots_links``, the limit cap and every filter."""

from __future__ import annotations

from typing import Any

import httpx

from evs_simulator.testing import RunningSimulator
from tests.simulator.signed import assert_evs_error, evs_client, evs_query


async def listing(client: httpx.AsyncClient, *pairs: tuple[str, Any]) -> httpx.Response:
    return await client.get(f"/cloudsnapshots/detail?{evs_query(pairs)}")


async def make(client: httpx.AsyncClient, volume_id: str, name: str) -> str:
    body = {"snapshot": {"volume_id": volume_id, "name": name}}
    return str((await client.post("/cloudsnapshots", json=body)).json()["snapshot"]["id"])


async def test_limit_above_1000_is_evs_1023(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim) as client:
        assert (await listing(client, ("limit", 1000))).status_code == 200
        assert_evs_error(await listing(client, ("limit", 1001)), 400, "EVS.1023")


async def test_bad_limit_offset_or_status_is_evs_5400(evs_sim: RunningSimulator) -> None:
    async with evs_client(evs_sim) as client:
        for pair in [("limit", -1), ("limit", "x"), ("offset", -1), ("offset", "1.5")]:
            assert_evs_error(await listing(client, pair), 400, "EVS.5400")
        assert_evs_error(await listing(client, ("status", "bogus")), 400, "EVS.5400")


async def test_offset_limit_count_and_links(evs_sim: RunningSimulator) -> None:
    volumes = [await evs_sim.admin.add_volume() for _ in range(2)]
    async with evs_client(evs_sim) as client:
        made = [await make(client, volumes[i % 2]["id"], f"s{i}") for i in range(12)]
        newest_first = made[::-1]
        whole = (await listing(client)).json()
        assert whole["count"] == 12
        assert [s["id"] for s in whole["snapshots"]] == newest_first
        assert "snapshots_links" not in whole
        page = (await listing(client, ("limit", 5), ("offset", 5))).json()
        assert page["count"] == 12
        assert [s["id"] for s in page["snapshots"]] == newest_first[5:10]
        (link,) = page["snapshots_links"]
        assert link["rel"] == "next"
        assert link["href"].endswith("limit=5&offset=10")
        last = (await listing(client, ("limit", 5), ("offset", 10))).json()
        assert [s["id"] for s in last["snapshots"]] == newest_first[10:]
        assert last["snapshots_links"] == []
        beyond = (await listing(client, ("offset", 50))).json()
        assert (beyond["count"], beyond["snapshots"]) == (12, [])
        filtered = (await listing(client, ("volume_id", volumes[0]["id"]), ("limit", 2))).json()
        assert filtered["count"] == 6
        assert "volume_id=" in filtered["snapshots_links"][0]["href"]


async def test_list_items_carry_storage_fields(evs_sim: RunningSimulator) -> None:
    volume = await evs_sim.admin.add_volume(
        dedicated_storage_id="dss-1", dedicated_storage_name="pool", service_type="EVS"
    )
    async with evs_client(evs_sim) as client:
        await make(client, volume["id"], "x")
        (item,) = (await listing(client)).json()["snapshots"]
    assert item["service_type"] == "EVS"
    assert (item["dedicated_storage_id"], item["dedicated_storage_name"]) == ("dss-1", "pool")
    assert item["os-extended-snapshot-attributes:progress"] == "100%"


async def test_every_filter(evs_sim: RunningSimulator) -> None:
    admin = evs_sim.admin
    plain = await admin.add_volume()
    zoned = await admin.add_volume(availability_zone="cn-north-4b", enterprise_project_id="ep-1")
    dedicated = await admin.add_volume(
        service_type="DSS", dedicated_storage_id="dss-1", dedicated_storage_name="pool a"
    )
    async with evs_client(evs_sim) as client:
        a = await make(client, plain["id"], "alpha")
        b = await make(client, zoned["id"], "beta")
        c = await make(client, dedicated["id"], "gamma é")
        await admin.set_snapshot_status(a, "error")

        async def ids(*pairs: tuple[str, Any]) -> set[str]:
            response = await listing(client, *pairs)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["count"] == len(body["snapshots"])
            return {s["id"] for s in body["snapshots"]}

        assert await ids() == {a, b, c}
        assert await ids(("name", "gamma é")) == {c}
        assert await ids(("name", "gamma")) == set()
        assert await ids(("status", "error")) == {a}
        assert await ids(("status", "available")) == {b, c}
        assert await ids(("volume_id", zoned["id"])) == {b}
        assert await ids(("availability_zone", "cn-north-4b")) == {b}
        assert await ids(("id", a), ("id", c)) == {a, c}
        assert await ids(("id", b)) == {b}
        assert await ids(("service_type", "DSS")) == {c}
        assert await ids(("enterprise_project_id", "ep-1")) == {b}
        assert await ids(("enterprise_project_id", "0")) == {a, c}
        assert await ids(("enterprise_project_id", "all_granted_eps")) == {a, b, c}
        assert await ids(("dedicated_storage_id", "dss-1")) == {c}
        assert await ids(("dedicated_storage_name", "pool a")) == {c}
        assert await ids(("status", "available"), ("service_type", "EVS")) == {b}
        assert await ids(("unknown_filter", "x")) == {a, b, c}
