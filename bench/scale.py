"""`make bench`: N CloudSnapshots applied at once against the whole real stack, timed and costed.

The target: 1,000 resources applied at once all Ready within about a minute on a
2-core machine, with bounded EVS calls and Kubernetes writes per resource and memory flat in the
number of resources. This measures exactly that, end to end and black-box: a real control plane,
the EVS simulator and the operator as separate processes (started by the sandbox's helpers), no
class ceiling and no throttling in the simulator unless told otherwise (`--throttle create=10`).
Each count in `--count` is one round with a fresh namespace, fresh disks and a freshly started
operator, so the rounds' memory figures compare.

Per round it reports: seconds from the start of the apply until every resource is applied, Ready,
and announced Created; the same for deleting them all; snapshots Ready per second; EVS calls per
resource by operation and the 429s among them (the simulator's own count); Kubernetes writes per
resource by verb and resource (the API server's `apiserver_request_total`, minus the benchmark's
own creates and deletes); the operator's resident memory idle, with N Ready, at
its peak and after the deletes; and that the simulator holds no snapshot afterwards. Progress is
followed with watches, which cost the machine under test far less than polling a thousand objects
would. With `--idle-seconds S` it also watches the operator for S seconds with every resource Ready
(CPU share of one core, EVS calls and writes: the drift resyncs), and with `--restart` it then
restarts the operator and counts what looking at every resource again costs (writes, EVS calls,
seconds until each has been stepped). With `--competitor` each round is run again, on the same
stack, for the straightforward kopf operator of bench/competitor.py, and the two are printed side
by side. Everything started is stopped on the way out, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from hack.cluster import Cluster, ControlPlane, tool_env
from hack.sandbox import (
    ManagedProcess,
    OperatorProcess,
    Simulator,
    class_manifests,
    free_port,
    released_lease,
    start_operator,
    start_simulator,
)
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from tests.harness.replicas import is_ready, samples

from cloudsnap.api.constants import GROUP, OWNER_NAME_METADATA_KEY, SNAPSHOT_PLURAL, VERSION
from evs_simulator.admin_client import AdminClient
from evs_simulator.state import MAX_SNAPSHOTS_PER_VOLUME
from evs_simulator.throttle import parse_rate_limits

REPO = Path(__file__).resolve().parent.parent
OPERATOR_NAMESPACE = "cloudsnap-system"
CLASS_NAME = "bench"
# Enough concurrent creates to keep the API server busy without starving the operator of CPU.
APPLY_THREADS = 16
# A watch is re-opened at least this often, so a dead operator or a failed apply is noticed.
WATCH_SLICE_SECONDS = 5
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# The API server's own heartbeats, written whatever the operator does.
HOUSEKEEPING = frozenset({"leases"})

Obj = dict[str, Any]


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (resident at its peak) in KiB, as the kernel accounts them."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def api_writes(cluster: Cluster) -> Counter[str]:
    """Writes the API server has served so far, keyed "VERB resource[/subresource]"."""
    writes: Counter[str] = Counter()
    metrics = cluster.kubectl("get", "--raw", "/metrics").stdout
    for labels, value in samples(metrics, "apiserver_request_total"):
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") not in HOUSEKEEPING:
            resource = "/".join(filter(None, (labels.get("resource"), labels.get("subresource"))))
            writes[f"{labels['verb']} {resource}"] += int(value)
    return writes


class Watcher:
    """Objects of one list call by key, each with the moment it first passed a test; via a watch.

    Moments are wall-clock seconds, comparable with the simulator's snapshot timestamps.

    `list_call` lists (and, with watch=True, watches) the objects; `key` names an object; `passed`
    is the test whose first success is timed (Ready for CloudSnapshots). Objects deleted on the
    server leave the map, so an empty map after a delete means all gone.
    """

    def __init__(
        self,
        kube: client.ApiClient,
        list_call: Callable[..., Any],
        *,
        key: Callable[[Obj], str],
        passed: Callable[[Obj], bool],
    ) -> None:
        self._kube = kube
        self._list_call = list_call
        self._key = key
        self._passed = passed
        self.passed_at: dict[str, float | None] = {}
        self._resource_version = ""
        self._relist()

    def _see(self, obj: Obj, *, deleted: bool = False) -> None:
        name = self._key(obj)
        if deleted:
            self.passed_at.pop(name, None)
        elif self.passed_at.get(name) is None:
            self.passed_at[name] = time.time() if self._passed(obj) else None

    def _relist(self) -> None:
        """Start over from a list, when the watch history we had is no longer available."""
        listing: Obj = self._kube.sanitize_for_serialization(self._list_call())
        items: list[Obj] = listing["items"]
        current = {self._key(item) for item in items}
        for gone in set(self.passed_at) - current:
            del self.passed_at[gone]
        for item in items:
            self._see(item)
        self._resource_version = listing["metadata"]["resourceVersion"]

    @property
    def passed(self) -> int:
        """How many objects passed the test so far."""
        return sum(stamp is not None for stamp in self.passed_at.values())

    def follow(
        self,
        done: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        check: Callable[[], None] = lambda: None,
    ) -> float:
        """Follow the watch until `done()` holds, at most `timeout` seconds; the moment it held.

        `check` runs between watch slices and raises when something the wait relies on broke.
        """
        deadline = time.monotonic() + timeout
        while not done():
            check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
            slice_seconds = max(1, min(WATCH_SLICE_SECONDS, math.ceil(remaining)))
            stream = watch.Watch().stream(
                self._list_call,
                resource_version=self._resource_version,
                timeout_seconds=slice_seconds,
                _request_timeout=slice_seconds + 10,
            )
            try:
                for event in stream:
                    raw: Obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch failed while waiting for {what}: {raw}")
                    self._resource_version = raw["metadata"]["resourceVersion"]
                    self._see(raw, deleted=event["type"] == "DELETED")
                    if done():
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                self._relist()
        return time.time()


@dataclass
class Stack:
    """What every round shares: the control plane, the simulator, the class and the clients."""

    cluster: Cluster
    kube: client.ApiClient
    admin: AdminClient
    loop: asyncio.Runner
    workdir: Path
    rate_limit: dict[str, int]
    """The class's ceiling (spec.rateLimit); empty: none."""
    throttle: str
    """The simulator's gateway limits (its --rate-limit form); empty: it never throttles."""
    simulator: Simulator

    @property
    def custom(self) -> client.CustomObjectsApi:
        """CloudSnapshots and classes."""
        return client.CustomObjectsApi(self.kube)

    def evs_calls(self) -> Counter[str]:
        """EVS requests the simulator has received so far, by operation."""
        return Counter(self.loop.run(self.admin.calls()))

    def throttled(self) -> Counter[str]:
        """EVS requests the simulator's gateway answered 429 so far, by operation."""
        return Counter(self.loop.run(self.admin.throttled()))

    def live_snapshots(self) -> list[Obj]:
        """Snapshots the simulator still holds (not deleted)."""
        return [s for s in self.loop.run(self.admin.snapshots()) if not s.get("deleted")]

    def start_operator(self, namespace: str) -> OperatorProcess:
        """The operator watching `namespace`, logging at INFO into the stack's directory."""
        return start_operator(
            self.workdir,
            self.cluster.env,
            namespaces=[namespace],
            operator_namespace=OPERATOR_NAMESPACE,
            log_level="INFO",
        )

    def add_disks(self, count: int) -> list[str]:
        """`count` fresh available disks; their ids."""

        async def add() -> list[str]:
            slots = asyncio.Semaphore(APPLY_THREADS)  # the admin client's pool is small

            async def one() -> Obj:
                async with slots:
                    return await self.admin.add_volume(size=10)

            made = await asyncio.gather(*(one() for _ in range(count)))
            return [str(volume["id"]) for volume in made]

        return self.loop.run(add())


@dataclass
class Round:
    """One count's figures; `summary()` is what the table and the JSON file show."""

    count: int
    namespace: str
    disks: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    ready_after: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)
    """(EVS create sent, Ready) per resource, seconds after the apply started."""
    create_seconds: float = 0.0
    """How long the simulator takes to make a snapshot available."""

    @property
    def create_sent_after(self) -> list[float]:
        """Per resource: when its EVS create was sent; the rate limit spreads these out."""
        return [sent for sent, _ in self.timeline]

    @property
    def ready_lag(self) -> list[float]:
        """Per resource: how long Ready came after EVS had made the snapshot available."""
        return [ready - sent - self.create_seconds for sent, ready in self.timeline]

    evs_calls: dict[str, Counter[str]] = field(default_factory=dict)
    throttled: dict[str, Counter[str]] = field(default_factory=dict)
    writes: dict[str, Counter[str]] = field(default_factory=dict)
    memory_kib: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """The operator's CPU time from its start until all were Ready, and until all were gone."""
    operator_metrics: dict[str, float] = field(default_factory=dict)
    snapshots_left: int = -1
    idle: dict[str, float] = field(default_factory=dict)
    """With every resource Ready and nothing to do: window, CPU seconds, share of one core."""

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able figures, per-resource ratios included."""
        per = {
            phase: {
                "evs_calls_per_resource": _per(self.evs_calls[phase], self.count),
                "k8s_writes_per_resource": _per(self.writes[phase], self.count),
                "evs_calls": dict(self.evs_calls[phase]),
                "throttled": dict(self.throttled.get(phase, Counter())),
                "k8s_writes": dict(self.writes[phase]),
            }
            for phase in self.evs_calls
        }
        return {
            "count": self.count,
            "namespace": self.namespace,
            "disks": len(self.disks),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "ready_after_apply_start": _spread(self.ready_after),
            "evs_create_after_apply_start": _spread(self.create_sent_after),
            "ready_after_evs_available": _spread(self.ready_lag),
            # Per resource, in the order EVS received the creates: [create sent, Ready] in seconds
            # after the apply started: whether Ready follows the creates or waits for them all.
            "timeline": sorted([round(sent, 2), round(ready, 2)] for sent, ready in self.timeline),
            "phases": per,
            "operator_memory_kib": self.memory_kib,
            "operator_cpu_seconds": {k: round(v, 2) for k, v in self.cpu_seconds.items()},
            "operator_metrics": self.operator_metrics,
            "snapshots_left_in_simulator": self.snapshots_left,
            "idle_with_all_ready": self.idle,
        }


def _spread(values: list[float]) -> dict[str, float]:
    """Median, p90, p99 and mean of per-resource seconds."""
    ordered = sorted(values)
    if not ordered:
        return {}
    quantiles = {
        f"p{q}": round(ordered[min(len(ordered) - 1, len(ordered) * q // 100)], 2)
        for q in (50, 90, 99)
    }
    return {**quantiles, "mean": round(statistics.mean(ordered), 2)}


def _per(counts: Counter[str], count: int) -> dict[str, float]:
    """Each count and the total divided by the number of resources."""
    ratios = {key: round(value / count, 3) for key, value in sorted(counts.items())}
    return {"total": round(counts.total() / count, 3), **ratios}


def operator_metrics(operator: OperatorProcess) -> dict[str, float]:
    """The operator's own view: reconciles by outcome, EVS requests by code, rate-limit waiting."""
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10).text
    figures: dict[str, float] = {}
    for labels, value in samples(text, "cloudsnap_reconciles_total"):
        figures[f"reconciles {labels.get('outcome')}"] = value
    for labels, value in samples(text, "cloudsnap_evs_requests_total"):
        figures[f"evs {labels.get('operation')} {labels.get('code')}"] = value
    for name in ("sum", "count"):
        for _, value in samples(text, f"cloudsnap_rate_limiter_wait_seconds_{name}"):
            figures[f"rate-limit wait {name}"] = figures.get(f"rate-limit wait {name}", 0) + value
    return {key: round(value, 3) for key, value in sorted(figures.items())}


class Tally:
    """EVS calls, 429s and Kubernetes writes from its making until ``record``."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._calls, self._throttled = stack.evs_calls(), stack.throttled()
        self._writes = api_writes(stack.cluster)

    def record(self, result: Round, phase: str) -> None:
        """Put what ``phase`` cost into ``result``, less the benchmark's own writes: a create or
        a delete per resource."""
        stack = self._stack
        writes = api_writes(stack.cluster) - self._writes
        own = {"create": f"POST {SNAPSHOT_PLURAL}", "delete": f"DELETE {SNAPSHOT_PLURAL}"}
        if phase in own:
            writes[own[phase]] -= result.count
        result.writes[phase] = +writes
        result.evs_calls[phase] = stack.evs_calls() - self._calls
        result.throttled[phase] = stack.throttled() - self._throttled


def cloudsnapshot(namespace: str, name: str, volume_id: str) -> Obj:
    """A CloudSnapshot of `volume_id` using the default class."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CloudSnapshot",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"volumeID": volume_id},
    }


@dataclass(frozen=True)
class Plan:
    """What a round does besides apply, Ready, delete, gone."""

    timeout: float
    create_seconds: float
    idle_seconds: float = 0.0
    """Watch the operator this long with every resource Ready (drift resyncs included)."""
    restart: bool = False
    """Then restart it and count what looking at everything again costs."""


def run_round(stack: Stack, count: int, settings: dict[str, str], plan: Plan) -> Round:
    """Apply `count` CloudSnapshots at once, wait for Ready, delete them all, wait until gone."""
    namespace = f"bench-{count}-{secrets.token_hex(3)}"
    stack.cluster.kubectl("create", "namespace", namespace)
    disks = stack.add_disks(math.ceil(count / MAX_SNAPSHOTS_PER_VOLUME))
    result = Round(count, namespace, disks, create_seconds=plan.create_seconds)
    started: list[OperatorProcess] = []

    def start(name: str) -> OperatorProcess:
        operator = start_operator(
            stack.workdir / namespace / name,
            stack.cluster.env,
            namespaces=[namespace],
            operator_namespace=OPERATOR_NAMESPACE,
            log_level="INFO",
            settings=settings,
        )
        started.append(operator)
        return operator

    try:
        _measure(stack, start, result, plan)
    finally:
        for operator in started:
            operator.process.stop()
    return result


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _evs_time(text: str) -> float:
    """EVS's naive-UTC timestamp as wall-clock seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _pid(operator: OperatorProcess) -> int:
    assert operator.process.proc is not None
    return operator.process.proc.pid


def _measure(
    stack: Stack, start: Callable[[str], OperatorProcess], result: Round, plan: Plan
) -> None:
    """The round itself, starting the operator with `start`; fills `result`."""
    operator = start("operator")
    pid, count, namespace, timeout = _pid(operator), result.count, result.namespace, plan.timeout
    custom, core = stack.custom, client.CoreV1Api(stack.kube)

    def list_snapshots(**kwargs: Any) -> Any:
        return custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, SNAPSHOT_PLURAL, **kwargs
        )

    def events_with(reason: str) -> Watcher:
        """Events of `reason` in the namespace, one entry per resource they are about."""

        def list_events(**kwargs: Any) -> Any:
            return core.list_namespaced_event(
                namespace, field_selector=f"reason={reason}", **kwargs
            )

        return Watcher(
            stack.kube,
            list_events,
            key=lambda event: str(event["involvedObject"]["name"]),
            passed=lambda event: True,
        )

    def announced(events: Watcher, reason: str) -> float:
        """When an Event of `reason` had come for every resource (the operator still up)."""
        return events.follow(
            lambda: events.passed == count,
            timeout=timeout,
            what=f"{count} {reason} events",
            check=lambda: operator_alive(operator),
        )

    # --- create: everything at once, until Ready and announced ---
    result.memory_kib["idle"] = memory_kib(pid)["VmRSS"]
    snapshots = Watcher(stack.kube, list_snapshots, key=_name, passed=is_ready)
    created = events_with("Created")
    tally = Tally(stack)
    started = time.time()
    applied_at, ready_at = apply_at_once(
        stack, result, snapshots, timeout, lambda: operator_alive(operator)
    )
    announced_at = announced(created, "Created")
    result.seconds["applied"] = applied_at - started
    result.seconds["ready"] = ready_at - started
    result.seconds["created_events"] = announced_at - started
    ready_at_by_name = {name: stamp for name, stamp in snapshots.passed_at.items() if stamp}
    result.ready_after = [stamp - started for stamp in ready_at_by_name.values()]
    # Where each resource's time went: queued until its EVS create was sent, then EVS's own
    # creating time, then waiting until the operator looked again and wrote Ready.
    for snap in stack.live_snapshots():
        name = snap["metadata"].get(OWNER_NAME_METADATA_KEY)
        if name in ready_at_by_name:
            sent = _evs_time(snap["created_at"]) - started
            result.timeline.append((sent, ready_at_by_name[name] - started))
    tally.record(result, "create")
    result.memory_kib["ready"] = memory_kib(pid)["VmRSS"]
    result.cpu_seconds["ready"] = cpu_seconds(pid)

    # --- idle: everything Ready, nothing to do but the drift resyncs ---
    if plan.idle_seconds > 0:
        calls_before, writes_before = stack.evs_calls(), api_writes(stack.cluster)
        used_before, since = cpu_seconds(pid), time.monotonic()
        deadline = since + plan.idle_seconds
        while time.monotonic() < deadline:
            operator_alive(operator)
            time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        window = time.monotonic() - since
        used = cpu_seconds(pid) - used_before
        result.idle = {
            "seconds": round(window, 1),
            "cpu_seconds": round(used, 2),
            "core_share_percent": round(100 * used / window, 2),
            "rss_mib": round(memory_kib(pid)["VmRSS"] / 1024, 1),
        }
        result.evs_calls["idle"] = stack.evs_calls() - calls_before
        result.writes["idle"] = +(api_writes(stack.cluster) - writes_before)

    # --- restart: a new process looks at every resource again ---
    if plan.restart:
        calls_before, writes_before = stack.evs_calls(), api_writes(stack.cluster)
        operator.process.stop()
        stopped = time.time()
        operator = start("restarted")
        pid = _pid(operator)

        def stepped() -> float:
            figures = operator_metrics(operator)
            return sum(v for k, v in figures.items() if k.startswith("reconciles "))

        while stepped() < count:
            operator_alive(operator)
            if time.time() - stopped > timeout:
                raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {count} steps")
            time.sleep(0.5)
        result.seconds["restart_all_observed"] = time.time() - stopped
        result.evs_calls["restart"] = stack.evs_calls() - calls_before
        result.writes["restart"] = +(api_writes(stack.cluster) - writes_before)
        result.memory_kib["restarted"] = memory_kib(pid)["VmRSS"]

    # --- delete: every resource at once, until every resource and snapshot is gone ---
    deleted = events_with("Deleted")
    tally = Tally(stack)
    started = time.time()
    gone_at = delete_all(stack, namespace, snapshots, timeout, lambda: operator_alive(operator))
    announced_at = announced(deleted, "Deleted")
    result.seconds["gone"] = gone_at - started
    result.seconds["deleted_events"] = announced_at - started
    tally.record(result, "delete")
    result.snapshots_left = len(stack.live_snapshots())
    memory = memory_kib(pid)
    result.memory_kib["after_delete"] = memory["VmRSS"]
    result.memory_kib["peak"] = memory["VmHWM"]
    result.cpu_seconds["gone"] = cpu_seconds(pid)
    result.operator_metrics = operator_metrics(operator)


def run_competitor_round(stack: Stack, count: int, timeout: float) -> Round:
    """The same round for the straightforward operator (bench/competitor.py): `count` applied at
    once in a namespace of its own, Ready, deleted, gone; writes, EVS calls, 429s, memory, CPU."""
    namespace = f"rival-{count}-{secrets.token_hex(3)}"
    stack.cluster.kubectl("create", "namespace", namespace)
    result = Round(count, namespace, stack.add_disks(math.ceil(count / MAX_SNAPSHOTS_PER_VOLUME)))
    rival = start_competitor(stack, namespace)
    try:
        assert rival.proc is not None
        pid = rival.proc.pid

        def alive() -> None:
            if not rival.alive:
                raise RuntimeError(f"competitor exited:\n{rival.log_text()[-4000:]}")

        def list_snapshots(**kwargs: Any) -> Any:
            return stack.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL, **kwargs
            )

        snapshots = Watcher(stack.kube, list_snapshots, key=_name, passed=is_ready)
        tally = Tally(stack)
        started = time.time()
        applied_at, ready_at = apply_at_once(stack, result, snapshots, timeout, alive)
        result.seconds["applied"] = applied_at - started
        result.seconds["ready"] = ready_at - started
        result.ready_after = [at - started for at in snapshots.passed_at.values() if at]
        tally.record(result, "create")
        result.memory_kib["ready"] = memory_kib(pid)["VmRSS"]
        result.cpu_seconds["ready"] = cpu_seconds(pid)

        tally = Tally(stack)
        started = time.time()
        gone_at = delete_all(stack, namespace, snapshots, timeout, alive)
        result.seconds["gone"] = gone_at - started
        tally.record(result, "delete")
        result.snapshots_left = len(stack.live_snapshots())
        result.memory_kib["peak"] = memory_kib(pid)["VmHWM"]
        result.cpu_seconds["gone"] = cpu_seconds(pid)
    finally:
        rival.stop()
    return result


def start_competitor(stack: Stack, namespace: str) -> ManagedProcess:
    """`kopf run` of bench/competitor.py on `namespace`, once its liveness endpoint answers."""
    sim, port = stack.simulator, free_port()
    argv = [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", namespace]
    argv += [
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
        str(REPO / "bench" / "competitor.py"),
    ]
    env = {
        **stack.cluster.env,
        "COMPETITOR_ENDPOINT": sim.endpoint,
        "COMPETITOR_PROJECT_ID": sim.project_id,
        "COMPETITOR_ACCESS_KEY": sim.access_key,
        "COMPETITOR_SECRET_KEY": sim.secret_key,
    }
    rival = ManagedProcess(argv, stack.workdir / namespace / "competitor.log", env)
    rival.start()
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success:
                return rival
        if not rival.alive or time.monotonic() > deadline:
            rival.stop()
            raise RuntimeError(f"competitor did not start:\n{rival.log_text()[-4000:]}")
        time.sleep(0.5)


def duel_table(ours: Round, rival: Round, conditions: str) -> str:
    """cloudsnap and the straightforward operator side by side, for one count."""
    rows: list[tuple[str, str, str]] = []

    def row(label: str, figure: Callable[[Round], str]) -> None:
        rows.append((label, figure(ours), figure(rival)))

    row("s apply start -> all Ready", lambda r: f"{r.seconds['ready']:.1f}")
    row("snapshots Ready per second", lambda r: f"{r.count / r.seconds['ready']:.2f}")
    for phase in ("create", "delete"):
        row(f"EVS calls/resource, {phase}", lambda r, p=phase: _ratios(r.evs_calls[p], r.count))
        row(
            f"429s received, {phase}",
            lambda r, p=phase: _share(r.throttled[p], r.evs_calls[p]),
        )
        row(f"k8s writes/resource, {phase}", lambda r, p=phase: _ratios(r.writes[p], r.count))
    row("s delete -> all gone", lambda r: f"{r.seconds['gone']:.1f}")
    row("RSS with all Ready, MiB", lambda r: f"{r.memory_kib['ready'] / 1024:.1f}")
    row("CPU s, start -> Ready / -> gone", _cpu)
    width = max(len(label) for label, _, _ in rows)
    left = max(len(ours) for _, ours, _ in [*rows, ("", "cloudsnap", "")])
    lines = [f"N={ours.count}, {conditions}", f"{'':{width}}  {'cloudsnap':{left}} | competitor"]
    lines += [f"{label:{width}}  {a:{left}} | {b}" for label, a, b in rows]
    return "\n".join(lines)


def _cpu(r: Round) -> str:
    return f"{r.cpu_seconds['ready']:.1f} / {r.cpu_seconds['gone']:.1f}"


def apply_at_once(
    stack: Stack, result: Round, snapshots: Watcher, timeout: float, alive: Callable[[], None]
) -> tuple[float, float]:
    """Create the round's CloudSnapshots from APPLY_THREADS threads at once; when the last one
    was applied, and when all were Ready. `alive` raises if the operator under test died."""
    custom, namespace, count = stack.custom, result.namespace, result.count
    with ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="apply") as pool:
        creates = [
            pool.submit(
                custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                SNAPSHOT_PLURAL,
                cloudsnapshot(
                    namespace, f"snap-{i:05d}", result.disks[i // MAX_SNAPSHOTS_PER_VOLUME]
                ),
            )
            for i in range(count)
        ]
        applied_at: list[float] = []
        for future in creates:
            future.add_done_callback(lambda _: applied_at.append(time.time()))

        def healthy() -> None:
            alive()
            _raise_failed(creates)

        ready_at = snapshots.follow(
            lambda: len(applied_at) == count and snapshots.passed == count,
            timeout=timeout,
            what=f"{count} CloudSnapshots Ready",
            check=healthy,
        )
    _raise_failed(creates)
    return max(applied_at), ready_at


def delete_all(
    stack: Stack, namespace: str, snapshots: Watcher, timeout: float, alive: Callable[[], None]
) -> float:
    """Delete every CloudSnapshot of `snapshots` from APPLY_THREADS threads at once; when all
    were gone. (One delete-collection of 10,000 outlasts the API server's 60 s request timeout.)
    `alive` raises if the operator under test died."""
    with ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="delete") as pool:
        deletes = [
            pool.submit(
                stack.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                SNAPSHOT_PLURAL,
                name,
            )
            for name in list(snapshots.passed_at)
        ]

        def deleting() -> None:
            alive()
            _raise_failed(deletes)

        gone_at = snapshots.follow(
            lambda: not snapshots.passed_at,
            timeout=timeout,
            what=f"{len(deletes)} CloudSnapshots gone",
            check=deleting,
        )
    _raise_failed(deletes)
    return gone_at


def operator_alive(operator: OperatorProcess) -> None:
    """Raise, with the log's tail, when the operator process has exited."""
    if not operator.process.alive:
        raise RuntimeError(f"operator exited:\n{operator.process.log_text()[-4000:]}")


def _raise_failed(futures: list[Future[Any]]) -> None:
    """Re-raise the first failed call, so a refused apply or delete fails the run at once."""
    for future in futures:
        if future.done() and future.exception() is not None:
            future.result()


@contextlib.contextmanager
def running_stack(
    workdir: Path,
    *,
    rate_limit: dict[str, int] | None,
    throttle: str,
    create_seconds: float,
    delete_seconds: float,
    volume_create_seconds: float | None = None,
) -> Iterator[Stack]:
    """Control plane, simulator, CRDs, Secret and default class; all stopped on the way out
    (``volume_create_seconds``: how long the simulator takes to make a disk; default at once)."""
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(asyncio.Runner())
        print(f"starting the control plane in {workdir} ...", flush=True)
        plane = stack.enter_context(ControlPlane(directory=workdir / "cluster"))
        cluster = Cluster(plane.kubeconfig, tool_env(plane.kubeconfig, plane.bin_dir, workdir))
        sim = start_simulator(
            workdir,
            create_seconds=create_seconds,
            delete_seconds=delete_seconds,
            volume_create_seconds=volume_create_seconds,
        )
        stack.callback(sim.process.stop)
        admin = AdminClient(sim.endpoint)
        stack.callback(lambda: loop.run(admin.aclose()))
        if throttle:
            limits = {
                op: (limit.rate, limit.burst) for op, limit in parse_rate_limits(throttle).items()
            }
            loop.run(admin.set_rate_limits(limits))

        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        cluster.kubectl("create", "-f", "-", input=released_lease(OPERATOR_NAMESPACE))
        manifests = class_manifests(
            sim, class_name=CLASS_NAME, operator_namespace=OPERATOR_NAMESPACE
        )
        cluster.kubectl("apply", "-f", "-", input=manifests)
        if rate_limit:
            patch = json.dumps({"spec": {"rateLimit": rate_limit}})
            cluster.kubectl("patch", "csnapclass", CLASS_NAME, "--type=merge", "-p", patch)

        kube_config = client.Configuration()
        config.load_kube_config(str(plane.kubeconfig), client_configuration=kube_config)
        kube_config.connection_pool_maxsize = APPLY_THREADS + 4
        kube = stack.enter_context(client.ApiClient(kube_config))
        yield Stack(cluster, kube, admin, loop, workdir, rate_limit or {}, throttle, sim)


def stack_from_options(
    args: argparse.Namespace,
    workdir: Path,
    *,
    rate_limit: dict[str, int] | None = None,
    delete_seconds: float = 1.0,
    volume_create_seconds: float | None = None,
) -> contextlib.AbstractContextManager[Stack]:
    """``running_stack`` with the simulator's gateway limits and create time of the parsed
    `--throttle` and `--create-seconds`; no class ceiling and deletes of a second unless given."""
    return running_stack(
        workdir,
        rate_limit=rate_limit,
        throttle=args.throttle,
        create_seconds=args.create_seconds,
        delete_seconds=delete_seconds,
        volume_create_seconds=volume_create_seconds,
    )


def table(rounds: list[Round], rate_limit: dict[str, int], throttle: str) -> str:
    """The figures side by side, one column per count."""
    sums = [r.summary() for r in rounds]
    rows: list[tuple[str, list[str]]] = [
        ("resources (disks)", [f"{s['count']} ({s['disks']})" for s in sums])
    ]
    for key, label in (
        ("applied", "s apply start -> all applied"),
        ("ready", "s apply start -> all Ready"),
        ("created_events", "s apply start -> all Created events"),
        ("gone", "s delete -> all gone"),
        ("deleted_events", "s delete -> all Deleted events"),
    ):
        rows.append((label, [f"{s['seconds'][key]:.1f}" for s in sums]))
    for key, label in (
        ("ready_after_apply_start", "Ready after apply start p50/p90/p99"),
        ("evs_create_after_apply_start", "EVS create sent after start p50/p90/p99"),
        ("ready_after_evs_available", "Ready after EVS available p50/p90/p99"),
    ):
        rows.append((label, [_quantiles(s[key]) for s in sums]))
    rows.append(
        ("snapshots Ready per second", [f"{s['count'] / s['seconds']['ready']:.2f}" for s in sums])
    )
    for phase in ("create", "idle", "restart", "delete"):
        if any(phase not in r.evs_calls for r in rounds):
            continue
        rows.append(
            (
                f"429s received, {phase} (share of calls)",
                [_share(r.throttled.get(phase, Counter()), r.evs_calls[phase]) for r in rounds],
            )
        )
        rows.append(
            (f"EVS calls/resource, {phase}", [_ratios(r.evs_calls[phase], r.count) for r in rounds])
        )
        rows.append(
            (f"k8s writes/resource, {phase}", [_ratios(r.writes[phase], r.count) for r in rounds])
        )
    if all(r.idle for r in rounds):
        rows.append(
            (
                "idle: s watched, CPU s, % of a core",
                [
                    f"{r.idle['seconds']:.0f}, {r.idle['cpu_seconds']:.1f},"
                    f" {r.idle['core_share_percent']:.2f} %"
                    for r in rounds
                ],
            )
        )
    if all("restart_all_observed" in r.seconds for r in rounds):
        rows.append(
            (
                "s restart -> every resource stepped",
                [f"{r.seconds['restart_all_observed']:.1f}" for r in rounds],
            )
        )
    for key in ("idle", "ready", "restarted", "peak", "after_delete"):
        if any(key not in r.memory_kib for r in rounds):
            continue
        rows.append(
            (f"operator RSS {key} MiB", [f"{r.memory_kib[key] / 1024:.1f}" for r in rounds])
        )
    growth = [(r.memory_kib["ready"] - r.memory_kib["idle"]) / r.count for r in rounds]
    rows.append(("RSS idle -> Ready, KiB/resource", [f"{g:.1f}" for g in growth]))
    marginal = ["-"] + [
        f"{(r.memory_kib['ready'] - prev.memory_kib['ready']) / (r.count - prev.count):.1f}"
        if r.count != prev.count
        else "-"
        for prev, r in itertools.pairwise(rounds)
    ]
    rows.append(("RSS Ready vs previous round, KiB/resource", marginal))
    rows.append(("snapshots left in simulator", [str(r.snapshots_left) for r in rounds]))
    ceiling = (
        f"class ceiling {rate_limit.get('requestsPerSecond', 20)}/s, burst"
        f" {rate_limit.get('burst', 40)}"
        if rate_limit
        else "no class ceiling"
    )
    limit = f"{ceiling}; simulator gateway limits: {throttle or 'none'}"
    header = ("", [f"N={r.count}" for r in rounds])
    width = max(len(label) for label, _ in rows)
    columns = [max(len(cells[i]) for _, cells in [header, *rows]) for i in range(len(rounds))]
    lines = [
        (
            f"{label:{width}}  "
            + " | ".join(f"{c:{w}}" for c, w in zip(cells, columns, strict=True))
        ).rstrip()
        for label, cells in [header, *rows]
    ]
    return "\n".join([limit, *lines])


def _share(throttled: Counter[str], calls: Counter[str]) -> str:
    """429s received, and their share of the calls made."""
    total = throttled.total()
    return f"{total} ({total / max(1, calls.total()):.1%})"


def _quantiles(q: dict[str, float]) -> str:
    return f"{q['p50']}/{q['p90']}/{q['p99']}"


def _ratios(counts: Counter[str], count: int) -> str:
    """Per resource: the total, then each key, e.g. "2.10 (create 1.00, list 1.10)"."""
    per = _per(counts, count)
    total = per.pop("total")
    parts = ", ".join(
        f"{key.replace(SNAPSHOT_PLURAL, 'csnap')} {value:.2f}" for key, value in per.items()
    )
    return f"{total:.2f} ({parts})"


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so everything started is stopped on the way out."""
    raise SystemExit(128 + signum)


def add_throttle_option(parser: argparse.ArgumentParser, default: str = "") -> None:
    """`--throttle`, the simulator gateway's limits, for every benchmark that starts a stack."""
    parser.add_argument(
        "--throttle",
        default=default,
        metavar="OPERATION=RATE[/BURST],...",
        help="the simulator's gateway limits per access key, e.g. create=10,list=20"
        f" (default {default or 'none'})",
    )


def round_parser(
    doc: str | None, *, count: int, counted: str, throttle: str = ""
) -> argparse.ArgumentParser:
    """The options of a benchmark of one round on a fresh stack: `--count`, `--throttle`,
    `--create-seconds`, `--timeout` and `--dir`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--count", type=int, default=count, help=f"{counted} (default {count})")
    add_throttle_option(parser, throttle)
    parser.add_argument("--create-seconds", type=float, default=2.0, help="simulated create time")
    parser.add_argument("--timeout", type=float, default=600.0, help="deadline of the run (s)")
    parser.add_argument("--dir", type=Path, help="working directory (logs); default a temp dir")
    return parser


def write_result(workdir: Path, result: dict[str, Any]) -> None:
    """The figures into DIR/result.json and on the terminal, with where the logs are."""
    (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"logs: {workdir}")


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.scale [--count N ...]` (what `make bench` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--count", type=int, nargs="+", default=[1000], help="resources per round (default 1000)"
    )
    parser.add_argument(
        "--rate-limit", type=int, metavar="RPS", help="class ceiling: rateLimit.requestsPerSecond"
    )
    parser.add_argument("--burst", type=int, help="class ceiling: rateLimit.burst")
    add_throttle_option(parser)
    parser.add_argument("--create-seconds", type=float, default=2.0, help="simulated create time")
    parser.add_argument("--delete-seconds", type=float, default=1.0, help="simulated delete time")
    parser.add_argument("--timeout", type=float, default=600.0, help="deadline of each wait (s)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="watch the operator's CPU this long with all Ready (e.g. 600; default: skip)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="then restart it and count what that costs"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="CLOUDSNAP_X=V",
        help="an operator setting (environment variable), repeatable",
    )
    parser.add_argument(
        "--competitor",
        action="store_true",
        help="after each round, the same round for bench/competitor.py, and the two side by side",
    )
    parser.add_argument("--dir", type=Path, help="working directory (logs); default a temp dir")
    parser.add_argument("--output", type=Path, help="JSON result file (default DIR/result.json)")
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="cloudsnap-bench-"))
    output = args.output or workdir / "result.json"
    settings = dict(item.split("=", 1) for item in args.setting)
    rate_limit = {
        key: value
        for key, value in (("requestsPerSecond", args.rate_limit), ("burst", args.burst))
        if value is not None
    }
    rounds: list[Round] = []
    rivals: list[Round] = []
    load_at_start = os.getloadavg()
    with stack_from_options(
        args, workdir, rate_limit=rate_limit, delete_seconds=args.delete_seconds
    ) as stack:
        for count in args.count:
            print(f"round N={count}: applying, waiting for Ready, deleting ...", flush=True)
            plan = Plan(args.timeout, args.create_seconds, args.idle_seconds, args.restart)
            rounds.append(run_round(stack, count, settings, plan))
            print(table(rounds[-1:], stack.rate_limit, stack.throttle), flush=True)
            if args.competitor:
                print(f"round N={count}, competitor: the same ...", flush=True)
                rivals.append(run_competitor_round(stack, count, args.timeout))
                conditions = (
                    f"creation {args.create_seconds:g} s,"
                    f" simulator gateway limits: {args.throttle or 'none'}"
                )
                print(duel_table(rounds[-1], rivals[-1], conditions), flush=True)
        effective_limit = stack.rate_limit
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": os.getloadavg(),
        },
        "simulator": {"create_seconds": args.create_seconds, "delete_seconds": args.delete_seconds},
        "rate_limit": effective_limit,
        "throttle": args.throttle,
        "operator_settings": settings,
        "rounds": [r.summary() for r in rounds],
        "competitor_rounds": [r.summary() for r in rivals],
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table(rounds, effective_limit, args.throttle))
    print(f"\nresult: {output}\nlogs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
