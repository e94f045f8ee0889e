"""List lag: a new snapshot is missing from list answers for a while, but show sees it at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from evs_simulator.config import SimulatorConfig, VolumeSeed
from evs_simulator.errors import SimError
from evs_simulator.state import MAX_SNAPSHOTS_PER_VOLUME, Store
from evs_simulator.testing import running_simulator
from tests.simulator.clock import FakeClock
from tests.simulator.signed import evs_client, evs_query

VOLUME = "11111111-2222-4333-8444-555555555555"


def lagging_store(clock: FakeClock, lag: float = 3.0) -> Store:
    config = SimulatorConfig(volumes=(VolumeSeed(VOLUME, 5),), list_lag_seconds=lag)
    return Store(config, clock=clock)


def listed(store: Store, *pairs: tuple[str, str]) -> tuple[int, list[str]]:
    """(count, ids) of a list answer for these query pairs."""
    query: dict[str, list[str]] = {}
    for key, value in pairs:
        query.setdefault(key, []).append(value)
    answer = store.list_snapshots(query, lambda limit, offset: f"?limit={limit}&offset={offset}")
    return answer["count"], [item["id"] for item in answer["snapshots"]]


def create(store: Store, name: str = "n") -> str:
    return str(store.create({"snapshot": {"volume_id": VOLUME, "name": name}})["snapshot"]["id"])


def test_new_snapshot_is_unlisted_under_every_filter_until_the_lag_has_passed() -> None:
    clock = FakeClock()
    store = lagging_store(clock)
    snap_id = create(store)
    queries: list[tuple[tuple[str, str], ...]] = [
        (),
        (("id", snap_id),),
        (("volume_id", VOLUME),),
        (("name", "n"), ("status", "available")),
        (("limit", "10"), ("offset", "0")),
    ]
    for elapsed in (0.0, 1.0, 2.999):
        clock.now = 1000.0 + elapsed
        assert store.show(snap_id)["snapshot"]["status"] == "available"
        for pairs in queries:
            assert listed(store, *pairs) == (0, []), (elapsed, pairs)
    clock.now = 1003.0
    for pairs in queries:
        assert listed(store, *pairs) == (1, [snap_id]), pairs


def test_count_and_paging_agree_with_what_is_listed() -> None:
    clock = FakeClock()
    store = lagging_store(clock)
    older = create(store, "older")
    clock.advance(3)
    newer = create(store, "newer")
    assert listed(store) == (1, [older])
    answer = store.list_snapshots({"limit": ["1"]}, lambda limit, offset: "next")
    assert (answer["count"], answer["snapshots_links"]) == (1, [])
    clock.advance(3)
    assert listed(store) == (2, [newer, older])


def test_the_lag_applies_by_age_so_changing_it_takes_effect_at_once() -> None:
    clock = FakeClock()
    store = lagging_store(clock, lag=60)
    snap_id = create(store)
    clock.advance(5)
    assert listed(store) == (0, [])
    store.list_lag_seconds = 0
    assert listed(store) == (1, [snap_id])
    store.list_lag_seconds = 10
    assert listed(store) == (0, [])
    store.reset()
    assert store.list_lag_seconds == 60


def test_unlisted_snapshots_still_count_against_the_quota() -> None:
    store = lagging_store(FakeClock())
    for index in range(MAX_SNAPSHOTS_PER_VOLUME):
        create(store, f"s{index}")
    assert listed(store) == (0, [])
    with pytest.raises(SimError) as caught:
        create(store)
    assert caught.value.code == "EVS.5413"


async def test_lag_over_http_and_through_the_admin_api() -> None:
    async with running_simulator(list_lag_seconds=60) as sim, evs_client(sim) as client:
        volume = await sim.admin.add_volume()
        created = await client.post(
            "/cloudsnapshots", json={"snapshot": {"volume_id": volume["id"]}}
        )
        snap_id = created.json()["snapshot"]["id"]

        async def listing(*pairs: tuple[str, Any]) -> dict[str, Any]:
            response = await client.get(f"/cloudsnapshots/detail?{evs_query(pairs)}")
            assert response.status_code == 200, response.text
            return dict(response.json())

        assert (await client.get(f"/cloudsnapshots/{snap_id}")).status_code == 200
        for pairs in [(), (("id", snap_id),)]:
            assert (await listing(*pairs))["count"] == 0
            assert (await listing(*pairs))["snapshots"] == []
        assert await sim.admin.settings() == {
            "list_lag_seconds": 60.0,
            "rate_limits": {},
            "volume_quota": None,
        }
        assert await sim.admin.set_list_lag(0) == {
            "list_lag_seconds": 0.0,
            "rate_limits": {},
            "volume_quota": None,
        }
        assert [s["id"] for s in (await listing(("id", snap_id)))["snapshots"]] == [snap_id]
        await sim.admin.reset()
        assert (await sim.admin.settings())["list_lag_seconds"] == 60.0


@pytest.mark.parametrize(
    "body", [{"list_lag_seconds": -1}, {"list_lag_seconds": "soon"}, {"lag": 1}, []]
)
async def test_bad_settings_are_refused(body: Any) -> None:
    async with (
        running_simulator(list_lag_seconds=2) as sim,
        httpx.AsyncClient(base_url=sim.endpoint) as http,
    ):
        response = await http.patch("/_sim/settings", json=body)
        assert response.status_code == 400, response.text
        with pytest.raises(httpx.HTTPStatusError):
            await sim.admin.set_list_lag(-3)
        assert (await sim.admin.settings())["list_lag_seconds"] == 2.0
