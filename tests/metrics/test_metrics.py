"""The metrics the operator publishes, as produced by real work, and the server that serves them.

The values are never set by the test: an EVS client makes real calls to the simulator, or the
operator (a process) takes a CloudSnapshot to Ready and back, and the test reads what the
exposition says happened. The probes and the exposition format are checked on a loopback server.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from cloudsnap import metrics
from cloudsnap.evs.errors import EVSAPIError, EVSTimeoutError
from cloudsnap.evs.models import CreateSnapshotRequest
from cloudsnap.runtime.workqueue import WorkQueue, watchdog
from evs_simulator.testing import RunningSimulator
from tests.fixtures.operator import Stack
from tests.fixtures.simulator import operator_client
from tests.waiting import eventually

MISSING_ID = "00000000-0000-4000-8000-000000000000"


def _port(runner: web.AppRunner) -> int:
    host, port = runner.addresses[0][:2]
    assert host == "127.0.0.1"
    return int(port)


@pytest.fixture
def ready_flag() -> list[bool]:
    return [False]


@pytest.fixture
async def server(ready_flag: list[bool]) -> AsyncIterator[httpx.AsyncClient]:
    runner = await metrics.serve("127.0.0.1", 0, lambda: ready_flag[0])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{_port(runner)}") as client:
            yield client
    finally:
        await runner.cleanup()


def _value(text: str, name: str, labels: dict[str, str] | None = None, **more: str) -> float:
    """Sample `name` summed over the series carrying `labels`; 0 when there is none."""
    wanted = {**(labels or {}), **more}
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted.items() <= sample.labels.items()
    )


def _by_label(text: str, name: str, *keys: str) -> Counter[Any]:
    """Sample `name` per value of the label `keys` (one key: by its value; more: by tuple)."""
    values: Counter[Any] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.value:
                key = tuple(sample.labels[k] for k in keys)
                values[key[0] if len(keys) == 1 else key] += sample.value
    return values


def _scrape(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.operator.metrics_port}/metrics"
    return httpx.get(url, timeout=10).text


async def test_healthz_is_ok_while_running(server: httpx.AsyncClient) -> None:
    response = await server.get("/healthz")
    assert response.status_code == 200


async def test_healthz_turns_503_while_due_work_stalls_past_the_watchdog_and_200_after() -> None:
    """The operator's liveness check: a queue whose step hangs past the watchdog fails /healthz,
    so Kubernetes restarts the pod; once a step finishes it passes again."""
    gate = asyncio.Event()

    async def work(key: str) -> float | None:
        await gate.wait()
        return None

    queue: WorkQueue[str] = WorkQueue(work)
    runner = await metrics.serve("127.0.0.1", 0, lambda: True, watchdog([queue], 1.0))
    queue.start("test")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{_port(runner)}") as client:

            async def status() -> int:
                return (await client.get("/healthz")).status_code

            assert await status() == 200
            queue.enqueue("hangs")
            await eventually(lambda: queue.running() == ["hangs"], timeout=5)
            await eventually(lambda: queue.stalled_for() > 0.1, timeout=5)
            assert await status() == 200  # stalled, but for less than the watchdog
            await eventually(lambda: _is(status(), 503), timeout=5, what="/healthz 503")
            response = await client.get("/healthz")
            assert "stalled" in response.text
            gate.set()
            await eventually(lambda: _is(status(), 200), timeout=5, what="/healthz 200 again")
    finally:
        await queue.stop()
        await runner.cleanup()


async def _is(status: Awaitable[int], wanted: int) -> bool:
    return await status == wanted


async def test_readyz_follows_is_ready(server: httpx.AsyncClient, ready_flag: list[bool]) -> None:
    assert (await server.get("/readyz")).status_code == 503
    ready_flag[0] = True
    assert (await server.get("/readyz")).status_code == 200
    ready_flag[0] = False
    assert (await server.get("/readyz")).status_code == 503


async def test_exposition_is_the_operators_own(server: httpx.AsyncClient) -> None:
    response = await server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {s.name for f in text_string_to_metric_families(response.text) for s in f.samples}
    assert "process_resident_memory_bytes" in names
    assert not any(name.endswith("_created") for name in names)
    # Only this operator's registry: nothing a library registered globally leaks in.
    assert all(name.startswith(("cloudsnap_", "process_", "python_")) for name in names), names


async def test_evs_calls_are_counted_by_operation_and_code(
    server: httpx.AsyncClient, evs_sim: RunningSimulator
) -> None:
    """A real client, wired as the operator wires it, calling the simulator: each answer counted
    under its operation and HTTP code (or timeout), each latency in the histogram."""
    volume = (await evs_sim.admin.add_volume(size=1))["id"]
    before = (await server.get("/metrics")).text
    async with operator_client(evs_sim, timeout=0.5, observer=metrics.observe_evs_request) as evs:
        await evs.create_snapshot(CreateSnapshotRequest(volume_id=volume))
        for _ in range(2):
            with pytest.raises(EVSAPIError):
                await evs.show_snapshot(MISSING_ID)
        await evs_sim.admin.set_faults([{"operation": "list", "kind": "hang", "rate": 1.0}])
        started = time.perf_counter()
        with pytest.raises(EVSTimeoutError):
            await evs.list_snapshots()
        timed_out_after = time.perf_counter() - started
    after = (await server.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, labels) - _value(before, name, labels)

    requests = "cloudsnap_evs_requests_total"
    assert delta(requests, operation="create", code="202") == 1
    assert delta(requests, operation="show", code="404") == 2
    assert delta(requests, operation="list", code="timeout") == 1
    assert delta(requests) == 4  # nothing else, and every call the simulator saw
    assert sum((await evs_sim.admin.calls()).values()) == 4
    durations = "cloudsnap_evs_request_duration_seconds"
    assert delta(f"{durations}_count", operation="show") == 2
    assert delta(f"{durations}_count", operation="list") == 1
    assert 0.5 <= delta(f"{durations}_sum", operation="list") <= timed_out_after


async def test_metrics_follow_one_snapshot_from_create_to_ready_and_gone(stack: Stack) -> None:
    """The operator's /metrics after one CloudSnapshot went Ready, then was deleted."""
    volume = await stack.add_volume()
    applied = time.monotonic()
    stack.apply("measured", volumeID=volume)
    await stack.wait_condition("measured", "Ready", "True")
    ready_seen = time.monotonic() - applied
    text = _scrape(stack)
    calls = Counter(await stack.calls())

    reconciles = _by_label(text, "cloudsnap_reconciles_total", "outcome")
    # At least: the finalizer, the create, a poll that saw it available; no failed step.
    assert reconciles["success"] >= 3, reconciles
    assert set(reconciles) == {"success"}, reconciles
    timed = _value(text, "cloudsnap_reconcile_duration_seconds_count", outcome="success")
    assert timed == reconciles["success"], (timed, reconciles)
    # One create accepted; every EVS call counted, answered 2xx, and each waited its turn at the
    # class's rate limiter once.
    evs = _by_label(text, "cloudsnap_evs_requests_total", "operation", "code")
    assert evs[("create", "202")] == 1, evs
    assert all(code.startswith("2") for _, code in evs), evs
    assert evs.total() == calls.total(), (evs, calls)
    limiter = {"cls": stack.class_name}
    assert _value(text, "cloudsnap_rate_limiter_wait_seconds_count", limiter) == calls.total()
    # One resource, available; its time to Ready counted once, within what the test saw (plus
    # the second the creation timestamp is rounded down to) and no shorter than EVS took (1 s).
    assert _by_label(text, "cloudsnap_snapshots", "phase") == Counter({"available": 1})
    assert _value(text, "cloudsnap_snapshot_time_to_ready_seconds_count", {}) == 1
    took = _value(text, "cloudsnap_snapshot_time_to_ready_seconds_sum", {})
    assert 1.0 <= took <= ready_seen + 1.0, (took, ready_seen)
    # The only replica holds the Lease, having taken it once.
    assert _value(text, "cloudsnap_leader", {}) == 1
    assert _value(text, "cloudsnap_leader_transitions_total", {}) == 1

    deleted = stack.kubectl("delete", "csnap", "measured", "--timeout=60s", check=False)
    assert deleted.returncode == 0, deleted.stderr
    # The operator hears of the deletion through its watch, a moment after kubectl returns.
    await eventually(
        lambda: _by_label(_scrape(stack), "cloudsnap_snapshots", "phase").total() == 0,
        what="no CloudSnapshot counted in cloudsnap_snapshots",
    )
    text = _scrape(stack)
    evs = _by_label(text, "cloudsnap_evs_requests_total", "operation", "code")
    assert sum(n for (operation, _), n in evs.items() if operation == "delete") == 1, evs
    assert _value(text, "cloudsnap_snapshot_time_to_ready_seconds_count", {}) == 1


async def test_openmetrics_when_the_scraper_asks(server: httpx.AsyncClient) -> None:
    response = await server.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_busy_port_fails_loudly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="address already in use"):
            await metrics.serve("127.0.0.1", port, lambda: True)
