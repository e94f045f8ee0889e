"""The metrics module against a real loopback server: names, labels, probes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from cloudsnap import metrics


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


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not in the exposition")


async def test_healthz_is_ok_while_running(server: httpx.AsyncClient) -> None:
    response = await server.get("/healthz")
    assert response.status_code == 200


async def test_readyz_follows_is_ready(server: httpx.AsyncClient, ready_flag: list[bool]) -> None:
    assert (await server.get("/readyz")).status_code == 503
    ready_flag[0] = True
    assert (await server.get("/readyz")).status_code == 200
    ready_flag[0] = False
    assert (await server.get("/readyz")).status_code == 503


async def test_every_agreed_metric_is_exposed(server: httpx.AsyncClient) -> None:
    metrics.RECONCILE_TOTAL.labels(outcome="success").inc()
    metrics.RECONCILE_SECONDS.labels(outcome="success").observe(0.2)
    metrics.SNAPSHOTS.labels(phase="available").set(3)
    metrics.RATE_LIMIT_WAIT_SECONDS.labels(cls="default").observe(0.01)
    metrics.TIME_TO_READY_SECONDS.observe(12.0)
    metrics.observe_evs_request("create", "202", 0.05)

    response = await server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {s.name for f in text_string_to_metric_families(response.text) for s in f.samples}
    for expected in (
        "cloudsnap_reconciles_total",
        "cloudsnap_reconcile_duration_seconds_bucket",
        "cloudsnap_evs_requests_total",
        "cloudsnap_evs_request_duration_seconds_bucket",
        "cloudsnap_snapshots",
        "cloudsnap_rate_limiter_wait_seconds_bucket",
        "cloudsnap_snapshot_time_to_ready_seconds_bucket",
        "process_resident_memory_bytes",
    ):
        assert expected in names
    assert _sample(response.text, "cloudsnap_snapshots", {"phase": "available"}) == 3
    assert not any(name.endswith("_created") for name in names)


async def test_observe_evs_request_counts_by_operation_and_code(
    server: httpx.AsyncClient,
) -> None:
    before = (await server.get("/metrics")).text
    metrics.observe_evs_request("delete", "timeout", 30.0)
    metrics.observe_evs_request("delete", "timeout", 30.0)
    metrics.observe_evs_request("delete", "204", 0.1)
    after = (await server.get("/metrics")).text

    def delta(name: str, labels: dict[str, str]) -> float:
        try:
            old = _sample(before, name, labels)
        except AssertionError:
            old = 0.0
        return _sample(after, name, labels) - old

    assert delta("cloudsnap_evs_requests_total", {"operation": "delete", "code": "timeout"}) == 2
    assert delta("cloudsnap_evs_requests_total", {"operation": "delete", "code": "204"}) == 1
    assert delta("cloudsnap_evs_request_duration_seconds_count", {"operation": "delete"}) == 3
    assert delta(
        "cloudsnap_evs_request_duration_seconds_sum", {"operation": "delete"}
    ) == pytest.approx(60.1)


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
