"""Prometheus metrics and the health endpoints, served together on the metrics port.

Everything lives on one dedicated registry so the exposition holds only what this operator means
to publish (plus the process collector, for memory and CPU), and so nothing a library registers on
the global registry leaks into it. Kubernetes probes the same port: /healthz answers while the
event loop runs, /readyz only once the operator says its watches are established.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

# The `_created` companion series only double every series; scrapers get the same from resets.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# A snapshot can take minutes to become available; the default buckets stop at 10 s.
_TIME_TO_READY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Limiter waits are usually zero or a fraction of a second; a long tail means a class is saturated.
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RECONCILE_TOTAL = Counter(
    "cloudsnap_reconciles_total",
    "Reconciliations of CloudSnapshot resources, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "cloudsnap_reconcile_duration_seconds",
    "Time spent in one reconciliation of a CloudSnapshot, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
EVS_REQUESTS_TOTAL = Counter(
    "cloudsnap_evs_requests_total",
    "HTTP requests sent to the EVS API, by operation and HTTP status code (or timeout / "
    "connection_error).",
    ["operation", "code"],
    registry=REGISTRY,
)
EVS_REQUEST_SECONDS = Histogram(
    "cloudsnap_evs_request_duration_seconds",
    "Latency of HTTP requests to the EVS API, by operation.",
    ["operation"],
    registry=REGISTRY,
)
SNAPSHOTS = Gauge(
    "cloudsnap_snapshots",
    "CloudSnapshot resources known to the operator, by EVS phase.",
    ["phase"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "cloudsnap_rate_limiter_wait_seconds",
    "Time a call to EVS waited for its class's pace (the adaptive rate of its operation and the"
    " class's ceiling), by CloudSnapshotClass.",
    ["cls"],
    buckets=_WAIT_BUCKETS,
    registry=REGISTRY,
)
EVS_RATE = Gauge(
    "cloudsnap_evs_rate_limit",
    "Calls per second the operator currently allows itself, by CloudSnapshotClass and EVS"
    " operation: it grows while EVS answers and is cut when the API gateway throttles.",
    ["cls", "operation"],
    registry=REGISTRY,
)
DRIFT_SWEEPS = Counter(
    "cloudsnap_drift_sweeps_total",
    "Drift sweeps run: every resync period, one listing per class checks its steady (Ready,"
    " unchanged) resources, which take no reconcile step while nothing changes.",
    registry=REGISTRY,
)
DUPLICATES_DELETED = Counter(
    "cloudsnap_duplicate_snapshots_deleted_total",
    "Extra EVS snapshots tagged with a resource that already had one (a create EVS applied after"
    " its answer was lost), deleted by the operator.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "cloudsnap_leader",
    "1 while this replica holds the leader Lease (or runs without leader election), else 0.",
    registry=REGISTRY,
)
LEADER_TRANSITIONS = Counter(
    "cloudsnap_leader_transitions_total",
    "Times this replica started or stopped leading.",
    registry=REGISTRY,
)
TIME_TO_READY_SECONDS = Histogram(
    "cloudsnap_snapshot_time_to_ready_seconds",
    "Time from a CloudSnapshot's creation to its Ready condition turning True.",
    buckets=_TIME_TO_READY_BUCKETS,
    registry=REGISTRY,
)
SCHEDULE_RUNS = Counter(
    "cloudsnap_schedule_runs_total",
    "Runs started by CloudSnapshotSchedules (one per slot, whatever the number of sources).",
    registry=REGISTRY,
)
SCHEDULE_MISSED_RUNS = Counter(
    "cloudsnap_schedule_missed_runs_total",
    "Schedule slots skipped (past startingDeadlineSeconds, or older than the one catch-up run"
    " after downtime or a suspension), and sources a run made no child for (one each).",
    registry=REGISTRY,
)
RETENTION_DELETIONS = Counter(
    "cloudsnap_schedule_retention_deletions_total",
    "Children deleted by schedule retention, by reason (MaxCount, MaxAge, Superseded, DiskLimit).",
    ["reason"],
    registry=REGISTRY,
)
SCHEDULE_RETAINED_SNAPSHOTS = Counter(
    "cloudsnap_schedule_retained_snapshots_total",
    "EVS snapshots left on their disk by retention's deletion of children with deletionPolicy"
    " Retain; each takes one of the disk's places until deleted in EVS.",
    registry=REGISTRY,
)
# One series per schedule and metric (bounded by the number of CloudSnapshotSchedules), published
# by the leader only and removed with the schedule. The schedule's namespace is
# `schedule_namespace`: a scrape gives `namespace` the operator's own.
SCHEDULE_LAST_SUCCESS = Gauge(
    "cloudsnap_schedule_last_success_timestamp_seconds",
    "Slot of the schedule's latest run whose children are all Ready (Unix seconds); the"
    " schedule's creation while it has none.",
    ["schedule_namespace", "schedule"],
    registry=REGISTRY,
)
SCHEDULE_NEXT_RUN = Gauge(
    "cloudsnap_schedule_next_run_timestamp_seconds",
    "The schedule's next slot (Unix seconds); absent while it is suspended or its spec invalid.",
    ["schedule_namespace", "schedule"],
    registry=REGISTRY,
)
SCHEDULE_SUCCESS_DUE = Gauge(
    "cloudsnap_schedule_success_due_timestamp_seconds",
    "When the schedule will have gone two slots past its latest success (or its creation)"
    " without another (Unix seconds); absent while it is suspended or its spec invalid.",
    ["schedule_namespace", "schedule"],
    registry=REGISTRY,
)
SCHEDULE_CHILDREN = Gauge(
    "cloudsnap_schedule_children",
    "Children of CloudSnapshotSchedules at their schedules' latest steps, by phase.",
    ["phase"],
    registry=REGISTRY,
)

# Restores: a new disk from a snapshot takes seconds to many minutes (the disk's size), a claim
# binds in seconds more; a rollback waits for its safety snapshot first.
_RESTORE_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
RESTORES = Gauge(
    "cloudsnap_restores",
    "CloudSnapshotRestores known to the leader, by phase (published by the leader only).",
    ["phase"],
    registry=REGISTRY,
)
RESTORES_COMPLETED = Counter(
    "cloudsnap_restores_completed_total",
    "Restores that became Ready, by target (newVolume or rollback).",
    ["target"],
    registry=REGISTRY,
)
RESTORES_FAILED = Counter(
    "cloudsnap_restores_failed_total",
    "Restores that turned Failed (EVS's job failed, the disk went into error, or what the"
    " restore made was deleted behind its back), by target (newVolume or rollback).",
    ["target"],
    registry=REGISTRY,
)
RESTORE_SECONDS = Histogram(
    "cloudsnap_restore_duration_seconds",
    "Time from a CloudSnapshotRestore's creation to its Ready (observed as it turns Ready), by"
    " target (newVolume or rollback).",
    ["target"],
    buckets=_RESTORE_BUCKETS,
    registry=REGISTRY,
)


def observe_rate_limit_wait(class_name: str, seconds: float) -> None:
    """Record one wait for a class's rate limiter; fits ``Accounts(limiter_observer=...)``."""
    RATE_LIMIT_WAIT_SECONDS.labels(cls=class_name).observe(seconds)


def observe_evs_rate(class_name: str, operation: str, rate: float) -> None:
    """Record a class's new pace for an operation; fits ``Accounts(rate_observer=...)``."""
    EVS_RATE.labels(cls=class_name, operation=operation).set(rate)


def observe_evs_request(operation: str, code: str, seconds: float) -> None:
    """Record one EVS request; its signature fits ``EVSClient(observer=...)`` as is."""
    EVS_REQUESTS_TOTAL.labels(operation=operation, code=code).inc()
    EVS_REQUEST_SECONDS.labels(operation=operation).observe(seconds)


def _app(is_ready: Callable[[], bool], is_healthy: Callable[[], bool]) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        # Honour the scraper's Accept header (OpenMetrics or the classic text format).
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})

    async def healthz(request: web.Request) -> web.Response:
        if is_healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="stalled: due work has made no progress\n")

    async def readyz(request: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(
    host: str,
    port: int,
    is_ready: Callable[[], bool],
    is_healthy: Callable[[], bool] = lambda: True,
) -> web.AppRunner:
    """Start the metrics and probe server; the caller owns the runner and calls ``cleanup()``.

    ``port`` 0 binds a free port; the bound address is then in ``runner.addresses``. Access logs
    are off: kubelet probes every few seconds would drown the operator's own log lines.
    """
    runner = web.AppRunner(_app(is_ready, is_healthy), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
