"""Two operator replicas against the real stack: the harness of the leader-election and chaos
end-to-end tests, and of `make ha-trials` and `make chaos` (bench/).

Two `cloudsnap-operator run` processes share one Lease, a real control plane (etcd +
kube-apiserver) and the EVS simulator. Each replica runs under its own identity, which its EVS
calls carry as `User-Agent: cloudsnap/<identity>`, so the simulator's per-agent counts say which
replica called what. With ``audit``, a replica runs under a small shim that logs every non-GET
request of the Kubernetes client and of kopf before it is sent, so that its writes can be
attributed from its own log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from hack.cluster import Cluster
from hack.cluster.controlplane import free_port
from hack.sandbox import (
    BIN,
    ManagedProcess,
    OperatorProcess,
    Simulator,
    class_manifests,
    start_simulator,
    wait_until,
)
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from cloudsnap.api.constants import GROUP, OWNER_UID_METADATA_KEY, SNAPSHOT_PLURAL, VERSION
from cloudsnap.api.objects import condition_in
from cloudsnap.kube.objects import unless_missing

REPO = Path(__file__).resolve().parents[2]


OPERATOR_NAMESPACE = "cloudsnap-system"


FINALIZER = f"{GROUP}/snapshot-protection"


DEFAULT_TIMING = (15.0, 10.0, 2.0)


"""Lease duration, renew deadline, retry period: controller-runtime's defaults, the operator's."""


MUTATING = ("create", "update", "delete", "rollback")


READS = ("show", "list")


# The operator's step line at DEBUG: "<namespace>/<name>: <outcome>, <n> event(s), next step in ..".
STEP_LINE = re.compile(r"^[^/\s]+/[^:\s]+: \w+, \d+ event\(s\), next step in ")


AUDIT_LOGGER = "bench.k8s"


# Runs the operator's own entry point after wrapping the two HTTP clients it talks to Kubernetes
# with (the official client for status, finalizers, Events and the Lease; kopf's aiohttp session,
# which should write nothing), so that each non-GET request is logged, before it is sent, in the
# replica's log.
AUDIT_SHIM = f"""
import logging, sys
import aiohttp
import kubernetes.client.rest as rest
log = logging.getLogger({AUDIT_LOGGER!r})
sync_request = rest.RESTClientObject.request
def request(self, method, url, *args, **kwargs):
    if method.upper() not in ("GET", "HEAD", "OPTIONS"):
        log.info("k8s write %s %s", method.upper(), url)
    return sync_request(self, method, url, *args, **kwargs)
rest.RESTClientObject.request = request
async_request = aiohttp.ClientSession._request
async def _request(self, method, url, *args, **kwargs):
    if method.upper() not in ("GET", "HEAD", "OPTIONS"):
        log.info("k8s write %s %s", method.upper(), url)
    return await async_request(self, method, url, *args, **kwargs)
aiohttp.ClientSession._request = _request
from cloudsnap.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


Obj = dict[str, Any]


class SimAdmin:
    """The `/_sim/` calls this harness needs, over a blocking client."""

    def __init__(self, endpoint: str) -> None:
        self._http = httpx.Client(base_url=endpoint.rstrip("/"), timeout=10.0)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def calls_by_agent(self) -> dict[str, dict[str, int]]:
        """EVS requests received per User-Agent and operation (failed and faulted ones too)."""
        return dict(self._call("GET", "calls/by-agent"))

    def snapshots(self) -> list[Obj]:
        """Every snapshot ever made, `deleted` telling the gone ones."""
        return list(self._call("GET", "snapshots"))

    def volumes(self) -> list[Obj]:
        """Every disk not yet gone, with its metadata (the owner tags of a restore's disk)."""
        return list(self._call("GET", "volumes"))

    def add_volumes(self, count: int, size: int = 10) -> list[str]:
        """`count` fresh available disks; their ids."""
        return [
            str(self._call("POST", "volumes", {"size": size, "status": "available"})["id"])
            for _ in range(count)
        ]

    def set_faults(self, rules: Sequence[Mapping[str, Any]], seed: int) -> None:
        """Replace the fault plan; the same seed replays the same draws."""
        self._call("PUT", "faults", {"seed": seed, "rules": [dict(rule) for rule in rules]})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def close(self) -> None:
        self._http.close()


@dataclass
class Replica:
    """One operator process; each start is a new generation with a new identity."""

    name: str
    operator: OperatorProcess
    prefix: str
    generation: int = 0
    log_start: int = 0
    """Log offset at which the current generation began writing."""
    log_starts: list[int] = field(default_factory=list)
    """The same for every generation so far."""

    @property
    def identity(self) -> str:
        """The current generation's name in the Lease."""
        return f"{self.prefix}-{self.name}{self.generation}"

    @property
    def agent(self) -> str:
        """The User-Agent of the current generation's EVS calls."""
        return f"cloudsnap/{self.identity}"

    @property
    def process(self) -> ManagedProcess:
        return self.operator.process

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    @property
    def alive(self) -> bool:
        return self.process.alive

    def start(self, *, wait: bool = True, timeout: float = 120.0) -> None:
        """Start a new generation (a new identity); wait until /readyz answers 200.

        Must be called from a thread that outlives the child (the child dies with that thread).
        """
        self.generation += 1
        self.process.env["CLOUDSNAP_IDENTITY"] = self.identity
        self.log_start = self.log_size()
        self.log_starts.append(self.log_start)
        self.process.start()
        if wait:
            self.operator.wait_ready(timeout)

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the replica's process group, without waiting."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a node failure would; returns once it is gone."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP; returns once the kernel shows the process stopped."""
        self.signal(signal.SIGSTOP)
        wait_until(lambda: self.state() == "T", timeout=10, what=f"{self.identity} stopped")

    def resume(self) -> None:
        """SIGCONT."""
        self.signal(signal.SIGCONT)

    def state(self) -> str:
        """The kernel's one-letter process state (R, S, T, Z ...)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]

    def log_size(self) -> int:
        path = self.process.log_path
        return path.stat().st_size if path.exists() else 0

    def log_entries(self, start: int = 0, end: int | None = None) -> list[Obj]:
        """The JSON log lines between two byte offsets (other lines skipped)."""
        path = self.process.log_path
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read() if end is None else handle.read(max(0, end - start))
        entries = []
        for line in data.decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def generations(self) -> list[list[Obj]]:
        """The log entries of each generation (process) in turn."""
        bounds = [*self.log_starts, None]
        return [self.log_entries(start, end) for start, end in itertools.pairwise(bounds)]

    def metric(self, name: str, **labels: str) -> float:
        """A metric sample of this replica, summed over the other labels; 0 when absent."""
        url = f"http://127.0.0.1:{self.operator.metrics_port}/metrics"
        text = httpx.get(url, timeout=10).text
        return sum(value for got, value in samples(text, name) if labels.items() <= got.items())


def step_lines(entries: Sequence[Obj]) -> list[Obj]:
    """The operator's step lines (one per reconcile step that ran to its end)."""
    return [e for e in entries if STEP_LINE.match(str(e.get("message", "")))]


def audited_writes(entries: Sequence[Obj]) -> list[str]:
    """The Kubernetes writes the audit shim logged: "METHOD URL"."""
    prefix = "k8s write "
    return [
        str(e["message"]).removeprefix(prefix)
        for e in entries
        if e.get("logger") == AUDIT_LOGGER and str(e.get("message", "")).startswith(prefix)
    ]


def is_lease_write(write: str) -> bool:
    return "/leases" in write


def writes_while_standby(entries: Sequence[Obj]) -> list[str]:
    """CloudSnapshot and Event writes one process (generation) logged while it did not lead:
    from its start, or a "stops leading" line, to its next "now leads" line."""
    leading = False
    found = []
    for entry in entries:
        message = str(entry.get("message", ""))
        if message.startswith("leader election: ") and message.endswith(" now leads"):
            leading = True
        elif message.startswith("leader election: ") and " stops leading " in message:
            leading = False
        elif not leading:
            found += [w for w in audited_writes([entry]) if not is_lease_write(w)]
    return found


@dataclass
class Pair:
    """Two replicas of the operator sharing one Lease, with the simulator and the class they use."""

    cluster: Cluster
    kube: client.ApiClient
    sim: Simulator
    admin: SimAdmin
    namespace: str
    operator_namespace: str
    lease_name: str
    class_name: str
    timing: tuple[float, float, float]
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    # -- who leads

    def lease(self) -> client.V1Lease | None:
        """The Lease, None when it does not exist."""
        lease: client.V1Lease | None = unless_missing(
            lambda: client.CoordinationV1Api(self.kube).read_namespaced_lease(
                self.lease_name, self.operator_namespace
            )
        )
        return lease

    def holder(self) -> str:
        """holderIdentity of the Lease ("" when free or not yet created)."""
        lease = self.lease()
        return str(lease.spec.holder_identity or "") if lease is not None else ""

    def lease_version(self) -> str:
        """resourceVersion of the Lease ("" when it does not exist): it changes at each renewal."""
        lease = self.lease()
        return str(lease.metadata.resource_version) if lease is not None else ""

    def delete_lease(self) -> None:
        """Delete the Lease, as a person, a namespace clean-up or a GitOps prune would."""
        client.CoordinationV1Api(self.kube).delete_namespaced_lease(
            self.lease_name, self.operator_namespace
        )

    def replica(self, identity: str) -> Replica | None:
        """The running replica whose current identity this is."""
        return next((r for r in self.replicas if r.alive and r.identity == identity), None)

    def leader(self) -> Replica | None:
        """The running replica named in the Lease, if any."""
        return self.replica(self.holder())

    def wait_leader(self, timeout: float) -> Replica:
        """Wait until a running replica holds the Lease."""
        found: Replica = wait_until(self.leader, timeout=timeout, what="a running Lease holder")
        return found

    def wait_acting_leader(self, timeout: float) -> Replica:
        """Wait until a running replica holds the Lease and reports that it acts
        (`cloudsnap_leader` 1): a replica that created the Lease holds it a while before."""

        def acting() -> Replica | None:
            leader = self.leader()
            return leader if leader is not None and leader.metric("cloudsnap_leader") else None

        found: Replica = wait_until(acting, timeout=timeout, what="an acting Lease holder")
        return found

    def other(self, replica: Replica) -> Replica:
        return next(r for r in self.replicas if r is not replica)

    def calls(self, replica: Replica) -> Counter[str]:
        """EVS calls the replica's current generation made, by operation."""
        return Counter(self.admin.calls_by_agent().get(replica.agent, {}))

    def calls_of(self, agents: Sequence[str]) -> dict[str, Counter[str]]:
        by_agent = self.admin.calls_by_agent()
        return {agent: Counter(by_agent.get(agent, {})) for agent in agents}

    # -- CloudSnapshots

    def manifest(self, name: str, volume_id: str, **spec: Any) -> Obj:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CloudSnapshot",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"volumeID": volume_id, "className": self.class_name, **spec},
        }

    def create(self, name: str, volume_id: str, **spec: Any) -> Obj:
        created: Obj = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL, self.manifest(name, volume_id, **spec)
        )
        return created

    def _unless_gone(self, call: Callable[..., Any], name: str) -> Obj | None:
        """``call`` on the CloudSnapshot ``name``; None where there is none by that name."""
        found: Obj | None = unless_missing(
            lambda: call(GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL, name)
        )
        return found

    def get(self, name: str) -> Obj | None:
        return self._unless_gone(self.custom.get_namespaced_custom_object, name)

    def items(self) -> list[Obj]:
        listing = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL
        )
        return list(listing["items"])

    def delete(self, name: str) -> bool:
        """Delete (the operator's finalizer then holds it until its snapshot is gone); False
        where there was none to delete."""
        return self._unless_gone(self.custom.delete_namespaced_custom_object, name) is not None

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> None:
        """A merge patch of the spec, as `kubectl patch --type=merge` sends it."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL, name, {"spec": dict(spec)}
        )

    def create_at_once(self, names: Sequence[str], volumes: Sequence[str]) -> None:
        """Create the CloudSnapshots together, from a pool of threads, spread over `volumes`."""
        with ThreadPoolExecutor(len(names), thread_name_prefix="ha-apply") as pool:
            futures = [
                pool.submit(self.create, name, volumes[j % len(volumes)])
                for j, name in enumerate(names)
            ]
            for future in futures:
                future.result()

    def wait_ready(self, names: Sequence[str], timeout: float) -> None:
        def probe() -> bool:
            ready = {item["metadata"]["name"] for item in self.items() if is_ready(item)}
            return ready >= set(names)

        wait_until(probe, timeout=timeout, what=f"{len(names)} CloudSnapshots Ready")

    def close(self) -> None:
        """Stop both replicas, release what nothing will release now, stop the simulator."""
        for replica in self.replicas:
            if replica.alive:
                # Both at once: stopped one by one, the last would take the Lease the first
                # released and start working during the teardown.
                replica.signal(signal.SIGTERM)
                replica.resume()
        for replica in self.replicas:
            replica.process.stop()
        for item in self.items():
            if item["metadata"].get("finalizers"):
                with contextlib.suppress(ApiException):
                    self.custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self.namespace,
                        SNAPSHOT_PLURAL,
                        item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )
        self.cluster.kubectl(
            "delete", "csnapclass", self.class_name, "--ignore-not-found", check=False
        )
        self.admin.close()
        self.sim.process.stop()


def kube_client(kubeconfig: Path, pool: int = 16) -> client.ApiClient:
    """An API client of its own (not the global default configuration)."""
    configuration = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def operator_environment(
    *,
    poll: float | None = None,
    backoff_base: float | None = None,
    backoff_max: float | None = None,
    blocked_retry: float | None = None,
    create_doubt: float | None = None,
    evs_timeout: float | None = None,
) -> dict[str, str]:
    """The operator's CLOUDSNAP_* settings for the timings given, in seconds (those not given keep
    the operator's defaults): how often it polls EVS, its retry backoff, how long a blocked
    resource waits to retry, its late-create window and its EVS request timeout."""
    timings = {
        "CLOUDSNAP_POLL_SECONDS": poll,
        "CLOUDSNAP_BACKOFF_BASE_SECONDS": backoff_base,
        "CLOUDSNAP_BACKOFF_MAX_SECONDS": backoff_max,
        "CLOUDSNAP_BLOCKED_RETRY_SECONDS": blocked_retry,
        "CLOUDSNAP_CREATE_DOUBT_SECONDS": create_doubt,
        "CLOUDSNAP_EVS_TIMEOUT_SECONDS": evs_timeout,
    }
    return {name: f"{value:g}" for name, value in timings.items() if value is not None}


def timing_settings(timing: tuple[float, float, float]) -> dict[str, str]:
    lease, renew, retry = timing
    return {
        "CLOUDSNAP_LEASE_DURATION_SECONDS": str(lease),
        "CLOUDSNAP_RENEW_DEADLINE_SECONDS": str(renew),
        "CLOUDSNAP_RETRY_PERIOD_SECONDS": str(retry),
    }


@contextlib.contextmanager
def running_pair(
    cluster: Cluster,
    workdir: Path,
    *,
    namespace: str,
    operator_namespace: str,
    timing: tuple[float, float, float] = DEFAULT_TIMING,
    settings: Mapping[str, str] | None = None,
    create_seconds: float = 2.0,
    delete_seconds: float = 1.0,
    audit: bool = False,
    log_level: str = "DEBUG",
) -> Iterator[Pair]:
    """Simulator, credentials Secret and a class of its own, then replica a (which takes the
    Lease) and replica b (the standby); all stopped on the way out."""
    with kube_client(cluster.kubeconfig) as kube:
        pair = _start_pair(
            cluster,
            kube,
            workdir,
            namespace=namespace,
            operator_namespace=operator_namespace,
            timing=timing,
            settings=settings,
            create_seconds=create_seconds,
            delete_seconds=delete_seconds,
            audit=audit,
            log_level=log_level,
        )
        try:
            yield pair
        finally:
            pair.close()


def e2e_pair(
    cluster: Cluster,
    workdir: Path,
    namespace: str,
    *,
    timing: tuple[float, float, float],
    settings: Mapping[str, str],
    audit: bool = False,
    log_level: str = "DEBUG",
) -> contextlib.AbstractContextManager[Pair]:
    """``running_pair`` as the e2e tests run it: the operator and its resources in the test's
    namespace, EVS creates and deletes of half a second."""
    return running_pair(
        cluster,
        workdir,
        namespace=namespace,
        operator_namespace=namespace,
        timing=timing,
        settings=settings,
        create_seconds=0.5,
        delete_seconds=0.5,
        audit=audit,
        log_level=log_level,
    )


def _start_pair(
    cluster: Cluster,
    kube: client.ApiClient,
    workdir: Path,
    *,
    namespace: str,
    operator_namespace: str,
    timing: tuple[float, float, float],
    settings: Mapping[str, str] | None,
    create_seconds: float,
    delete_seconds: float,
    audit: bool,
    log_level: str,
) -> Pair:
    sim = start_simulator(workdir, create_seconds=create_seconds, delete_seconds=delete_seconds)
    token = secrets.token_hex(3)
    pair = Pair(
        cluster=cluster,
        kube=kube,
        sim=sim,
        admin=SimAdmin(sim.endpoint),
        namespace=namespace,
        operator_namespace=operator_namespace,
        lease_name=f"cloudsnap-ha-{token}",
        class_name=f"ha-{token}",
        timing=timing,
        workdir=workdir,
    )
    try:
        manifests = class_manifests(
            sim,
            class_name=pair.class_name,
            operator_namespace=operator_namespace,
            secret_name=f"evs-credentials-{token}",
            default=False,
        )
        cluster.kubectl("apply", "-f", "-", input=manifests)
        env = {
            **cluster.env,
            "CLOUDSNAP_METRICS_HOST": "127.0.0.1",
            "CLOUDSNAP_LEASE_NAME": pair.lease_name,
            **timing_settings(timing),
            **(settings or {}),
        }
        program = [sys.executable, "-c", AUDIT_SHIM] if audit else [str(BIN / "cloudsnap-operator")]
        for name in ("a", "b"):
            port = free_port()
            argv = [*program, "run", "--operator-namespace", operator_namespace]
            argv += ["--namespace", namespace, "--metrics-port", str(port)]
            argv += ["--log-format", "json", "--log-level", log_level]
            log_path = workdir / f"replica-{name}" / "operator.log"
            process = ManagedProcess(argv, log_path, dict(env))
            pair.replicas.append(Replica(name, OperatorProcess(process, port), prefix=token))
        first, second = pair.replicas
        first.start()
        wait_until(
            lambda: pair.holder() == first.identity,
            timeout=60 + timing[0],
            what=f"{first.identity} holding the Lease",
        )
        second.start()
    except BaseException:
        pair.close()
        raise
    return pair


def owner_of(snapshot: Mapping[str, Any]) -> str | None:
    return (snapshot.get("metadata") or {}).get(OWNER_UID_METADATA_KEY)


def evs_time(text: str) -> float:
    """EVS's naive-UTC timestamp as wall-clock seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def duplicate_details(snapshots: Sequence[Mapping[str, Any]], since: float) -> dict[str, list[Obj]]:
    """Per owner UID with more than one snapshot: each snapshot's id, status and when EVS made
    it, in seconds after the wall-clock instant `since`."""
    details: dict[str, list[Obj]] = {}
    for owner in duplicate_owners(snapshots):
        details[owner] = [
            {
                "id": snap["id"],
                "status": snap.get("status"),
                "deleted": bool(snap.get("deleted")),
                "made_at": round(evs_time(str(snap["created_at"])) - since, 2),
            }
            for snap in snapshots
            if owner_of(snap) == owner
        ]
    return details


def duplicate_owners(
    snapshots: Sequence[Mapping[str, Any]], *, live_only: bool = False
) -> dict[str, int]:
    """Owner UIDs with more than one snapshot made for them (deleted ones too, unless live_only)."""
    counts = Counter(
        owner
        for snap in snapshots
        if (owner := owner_of(snap)) and not (live_only and snap.get("deleted"))
    )
    return {owner: count for owner, count in counts.items() if count > 1}


def wrong_ids(
    items: Sequence[Mapping[str, Any]], snapshots: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Resources whose status.snapshotID names a snapshot that is missing, gone, tagged for
    another UID, or of another disk than spec.volumeID."""
    by_id = {snap["id"]: snap for snap in snapshots}
    wrong = []
    for item in items:
        snapshot_id = (item.get("status") or {}).get("snapshotID")
        if not snapshot_id:
            continue
        snap = by_id.get(snapshot_id)
        if (
            snap is None
            or snap.get("deleted")
            or owner_of(snap) != item["metadata"]["uid"]
            or snap.get("volume_id") != (item.get("spec") or {}).get("volumeID")
        ):
            wrong.append(str(item["metadata"]["name"]))
    return wrong


def stale_statuses(
    items: Sequence[Mapping[str, Any]], snapshots: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Resources whose status.phase is not what EVS says of the snapshot it names."""
    by_id = {snap["id"]: snap for snap in snapshots}
    stale = []
    for item in items:
        status = item.get("status") or {}
        snap = by_id.get(status.get("snapshotID") or "")
        if snap is not None and not snap.get("deleted") and status.get("phase") != snap["status"]:
            stale.append(
                f"{item['metadata']['name']}: {status.get('phase')} / EVS {snap['status']}"
            )
    return stale


def deletion_trial(
    pair: Pair, index: int, batch: int, timeout: float, *, create_latency: float
) -> Obj:
    """Delete the Lease with the standby made to win it while the leader still acts: SIGSTOP
    the standby (its next try falls due meanwhile), wait for a renewal of the leader, delete the
    Lease, SIGCONT the standby, which finds no Lease and creates it at once, about a retry period
    before the leader's next renewal would notice; then create `batch` CloudSnapshots at once.
    EVS answers each create `create_latency` seconds late, as a busy EVS does, so a create is
    still unrecorded when the other replica looks at the same resource. Count the resources that
    got more than one EVS snapshot."""
    leader = pair.wait_acting_leader(timeout)
    standby = pair.other(leader)
    # Three a disk: EVS allows seven, so even a twin of each would not be refused for quota.
    volumes = pair.admin.add_volumes(-(-batch // 3))
    names = [f"gone-{index}-{j}" for j in range(batch)]
    standby.pause()
    time.sleep(pair.timing[2])
    version = pair.lease_version()
    wait_until(
        lambda: pair.lease_version() != version, timeout=timeout, what="a renewal of the Lease"
    )
    renewed_at = time.monotonic()
    leader_before, standby_before = pair.calls(leader), pair.calls(standby)
    offset = leader.log_size()
    pair.admin.set_faults(
        [{"operation": "create", "kind": "latency", "latency_seconds": create_latency}], index
    )
    pair.delete_lease()
    deleted = time.monotonic()
    standby.resume()
    holder = wait_until(pair.holder, timeout=timeout, what="the Lease created again")
    recreated = time.monotonic()
    pair.create_at_once(names, volumes)
    applied = time.monotonic()
    # Two replicas acting at once can also leave a status overwritten by a stale one (Ready
    # only at the next resync): that is reported, not waited for.
    with contextlib.suppress(TimeoutError):
        pair.wait_ready(names, timeout)
    ready = time.monotonic()
    pair.admin.clear_faults()
    if holder == standby.identity:
        wait_until(
            lambda: leader.metric("cloudsnap_leader") == 0,
            timeout=timeout,
            what=f"{leader.identity} reporting cloudsnap_leader 0",
        )
    return {
        "trial": index,
        "leader": leader.identity,
        "standby": standby.identity,
        "recreated_by": "standby" if holder == standby.identity else "leader",
        # Seconds after the Lease was deleted (the renewal: before it).
        "seconds": {
            "renewal": round(renewed_at - deleted, 2),
            "lease_recreated": round(recreated - deleted, 2),
            "applied": round(applied - deleted, 2),
            "all_ready": round(ready - deleted, 2),
        },
        "leader_evs_calls": dict(pair.calls(leader) - leader_before),
        "standby_evs_calls": dict(pair.calls(standby) - standby_before),
        "leader_stopped": any(
            "stops leading" in str(e.get("message")) for e in leader.log_entries(offset)
        ),
        **batch_outcome(pair, names),
    }


def batch_outcome(pair: Pair, names: Sequence[str]) -> Obj:
    """What became of a batch of CloudSnapshots: those not Ready, the EVS snapshots made for
    them, the owners with more than one (gone ones counted, and live ones only), and statuses
    naming a wrong snapshot."""
    snapshots = pair.admin.snapshots()
    items = [item for item in pair.items() if item["metadata"]["name"] in names]
    uids = {item["metadata"]["uid"] for item in items}
    return {
        "not_ready": sorted(item["metadata"]["name"] for item in items if not is_ready(item)),
        "resources": len(items),
        "snapshots": sum(1 for snap in snapshots if owner_of(snap) in uids),
        "duplicate_owners": len(set(duplicate_owners(snapshots)) & uids),
        "live_duplicate_owners": len(set(duplicate_owners(snapshots, live_only=True)) & uids),
        "wrong_ids": len(wrong_ids(items, snapshots)),
    }


def is_ready(obj: Obj) -> bool:
    """The resource's Ready condition is True."""
    return condition_in(obj, "Ready").get("status") == "True"


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """The (labels, value) pairs of metric sample `name` in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value
