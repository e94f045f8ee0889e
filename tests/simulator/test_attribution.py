"""Attribution: which caller, by its User-Agent, sent which calls."""

from __future__ import annotations

from evs_simulator.faults import OPERATIONS
from evs_simulator.testing import running_simulator
from tests.fixtures.simulator import operator_client
from tests.simulator.signed import evs_client
from tests.simulator.wire import raw_request

NONE = dict.fromkeys(OPERATIONS, 0)


async def test_calls_are_split_by_user_agent() -> None:
    async with running_simulator() as sim:
        volume = await sim.admin.add_volume()
        async with (
            evs_client(sim, User_Agent="tool-a/1.0") as tool_a,
            evs_client(sim, User_Agent="tool-b/2.0") as tool_b,
        ):
            body = {"snapshot": {"volume_id": volume["id"]}}
            assert (await tool_a.post("/cloudsnapshots", json=body)).status_code == 202
            assert (await tool_a.get("/cloudsnapshots/detail")).status_code == 200
            for _ in range(2):
                assert (await tool_b.get("/cloudsnapshots/detail")).status_code == 200
        async with operator_client(sim) as operator:
            await operator.list_snapshots()
        target = f"/v2/{sim.project_id}/cloudsnapshots/detail"
        assert await raw_request(sim.endpoint, "GET", target) == 401

        by_agent = await sim.admin.calls_by_agent()
        assert by_agent == {
            "tool-a/1.0": NONE | {"create": 1, "list": 1},
            "tool-b/2.0": NONE | {"list": 2},
            "cloudsnap": NONE | {"list": 1},
            "": NONE | {"list": 1},
        }
        calls = await sim.admin.calls()
        assert {op: sum(agent[op] for agent in by_agent.values()) for op in OPERATIONS} == calls
        await sim.admin.reset()
        assert await sim.admin.calls_by_agent() == {}
