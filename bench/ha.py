"""`make ha-trials`: leader election end to end, two operator replicas against the real stack.

Two `cloudsnap-operator run` processes share one Lease, a real control plane (etcd +
kube-apiserver) and the EVS simulator. Each replica runs under its own identity, which its EVS
calls carry as `User-Agent: cloudsnap/<identity>`, so the simulator's per-agent counts say which
replica called what. A killed replica is started again under a new identity (a new candidate, as
a restarted pod would be), so the counts of every process are separate.

Four experiments, with the default timings (15/10/2 s) unless told otherwise:

- SIGKILL the leader: seconds from the kill until the standby took the Lease, made its first EVS
  call (its first step: a new leader looks at every resource again), and made a CloudSnapshot
  applied right after the kill Ready; and that no owner UID ever has two snapshots.
- SIGTERM the leader: the same figures for a clean shutdown, which releases the Lease.
- SIGSTOP the leader while it is creating snapshots, until the standby has taken over, then SIGCONT
  it: the EVS calls (mutating and reads) and Kubernetes writes the old leader made after it woke.
  Kubernetes writes are attributed per replica from the replica's own log: the replicas run under
  a small shim that logs every non-GET request of the Kubernetes client and of kopf before it is
  sent (nothing else of the operator changes); the step lines ("<ns>/<name>: <outcome>, ...",
  DEBUG) and `cloudsnap_reconciles_total` are counted too. Log lines after the byte offset the log
  had while the process was stopped were written after it woke.
- Delete the Lease (`--deletion-trials`), with the standby made to win it while the leader
  still acts: the standby SIGSTOPped until its next try is due, the Lease deleted right after a
  renewal of the leader, the standby SIGCONTed (it finds no Lease and creates it at once, about a
  retry period before the leader's next renewal would find it), then `--deletion-batch`
  CloudSnapshots created at once, EVS answering each create `--create-latency` seconds late. The
  resources with more than one EVS snapshot, and when all were Ready.

Each trial's figures go to a JSON file; a table summarises them. The same two-replica harness
(`running_pair`, `Pair`, `Replica`) is what bench/chaos.py and the leader-election e2e tests use.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from hack.cluster import Cluster, ControlPlane, tool_env
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

from bench.scale import is_ready, samples
from cloudsnap.api import GROUP, OWNER_UID_METADATA_KEY, SNAPSHOT_PLURAL, VERSION

REPO = Path(__file__).resolve().parent.parent
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


# -- the simulator's admin API, synchronously (usable from sync tests and benchmarks alike) --------


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


# -- one operator replica ----------------------------------------------------------------------


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


# -- two replicas, one simulator, one class ----------------------------------------------------


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
        try:
            lease: client.V1Lease = client.CoordinationV1Api(self.kube).read_namespaced_lease(
                self.lease_name, self.operator_namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
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

    def get(self, name: str) -> Obj | None:
        try:
            found: Obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def items(self) -> list[Obj]:
        listing = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL
        )
        return list(listing["items"])

    def delete(self, name: str) -> bool:
        """Delete (the operator's finalizer then holds it until its snapshot is gone)."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, SNAPSHOT_PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

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


# -- invariants on what the simulator holds ---------------------------------------------------


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


# -- the trials --------------------------------------------------------------------------------


def follow_handover(
    pair: Pair,
    successor: Replica,
    before: Counter[str],
    started: float,
    *,
    fresh: str | None,
    timeout: float,
    exiting: Replica | None = None,
) -> dict[str, float]:
    """Seconds after `started` at which `successor` held the Lease, made its first EVS call, and
    (if given) CloudSnapshot `fresh` turned Ready; also when `exiting` exited."""
    marks: dict[str, float] = {}
    wanted = {"lease", "first_evs_call"} | ({"fresh_ready"} if fresh else set())
    wanted |= {"exited"} if exiting is not None else set()
    deadline = started + timeout
    while not wanted <= marks.keys():
        now = time.monotonic()
        if "lease" not in marks and pair.holder() == successor.identity:
            marks["lease"] = now - started
        if "first_evs_call" not in marks and pair.calls(successor).total() > before.total():
            marks["first_evs_call"] = now - started
        if fresh and "fresh_ready" not in marks and is_ready(pair.get(fresh) or {}):
            marks["fresh_ready"] = now - started
        if exiting is not None and "exited" not in marks and not exiting.alive:
            marks["exited"] = now - started
        if not successor.alive:
            raise RuntimeError(
                f"{successor.identity} exited:\n{successor.process.log_text()[-3000:]}"
            )
        if now > deadline:
            raise TimeoutError(
                f"handover to {successor.identity} incomplete after {timeout:.0f}s: {marks}"
            )
        time.sleep(0.05)
    return {key: round(value, 2) for key, value in marks.items()}


def handover_trial(pair: Pair, kind: str, index: int, timeout: float) -> Obj:
    """SIGKILL or SIGTERM the leader; time the standby's takeover; restart the old one."""
    leader = pair.wait_leader(timeout)
    standby = pair.other(leader)
    volume = pair.admin.add_volumes(1)[0]
    standby_before = pair.calls(standby)
    fresh = f"{kind}-{index}"
    started = time.monotonic()
    if kind == "kill":
        leader.kill()
    else:
        leader.signal(signal.SIGTERM)
    pair.create(fresh, volume)
    marks = follow_handover(
        pair,
        standby,
        standby_before,
        started,
        fresh=fresh,
        timeout=timeout,
        exiting=leader if kind == "term" else None,
    )
    released = any(
        "released the Lease" in str(e.get("message")) for e in leader.log_entries(leader.log_start)
    )
    killed = leader.identity
    leader.start()
    snapshots = pair.admin.snapshots()
    fresh_obj = pair.get(fresh) or {"metadata": {}}
    return {
        "trial": index,
        "signal": "SIGKILL" if kind == "kill" else "SIGTERM",
        "leader": killed,
        "successor": standby.identity,
        "standby_evs_calls_while_standby": standby_before.total(),
        "seconds": marks,
        "released_lease": released,
        "fresh_snapshots": sum(
            1 for snap in snapshots if owner_of(snap) == fresh_obj["metadata"].get("uid")
        ),
        "duplicate_owners": len(duplicate_owners(snapshots)),
        "wrong_ids": len(wrong_ids(pair.items(), snapshots)),
    }


def stop_trial(pair: Pair, index: int, batch: int, timeout: float) -> Obj:
    """SIGSTOP the leader while it creates snapshots, SIGCONT it once the standby took over;
    count what the old leader sent after it woke."""
    leader = pair.wait_leader(timeout)
    standby = pair.other(leader)
    volumes = pair.admin.add_volumes(2)
    names = [f"stop-{index}-{j}" for j in range(batch)]
    at_start = pair.calls(leader)
    for j, name in enumerate(names):
        pair.create(name, volumes[j % 2])
    # Mid-work: some creates sent, others (and every follow-up poll) still to come.
    wait_until(
        lambda: pair.calls(leader)["create"] >= at_start["create"] + 2,
        timeout=timeout,
        what=f"{leader.identity} sending creates",
    )
    leader.pause()
    stopped, stopped_wall = time.monotonic(), time.time()
    offset = leader.log_size()
    standby_before = pair.calls(standby)
    marks = follow_handover(pair, standby, standby_before, stopped, fresh=None, timeout=timeout)
    before = pair.calls(leader)
    steps_before = len(step_lines(leader.log_entries(leader.log_start, offset)))
    took_over = time.monotonic() - stopped
    leader.resume()
    woke = time.monotonic()

    def noticed() -> bool:
        return any("stops leading" in str(e.get("message")) for e in leader.log_entries(offset))

    wait_until(noticed, timeout=timeout, what=f"{leader.identity} noticing it lost the Lease")
    wait_until(
        lambda: leader.metric("cloudsnap_leader") == 0,
        timeout=timeout,
        what=f"{leader.identity} reporting cloudsnap_leader 0",
    )
    # The successor finishes the batch; a status the old leader overwrote after waking may keep
    # a resource from Ready until its next resync, which is what `stale_status` reports.
    settle = min(timeout, 2 * pair.timing[0] + 30)
    with contextlib.suppress(TimeoutError):
        pair.wait_ready(names, settle)
    after = pair.calls(leader)
    entries = leader.log_entries(offset)
    writes = audited_writes(entries)
    delta = after - before
    snapshots = pair.admin.snapshots()
    items = [item for item in pair.items() if item["metadata"]["name"] in names]
    uids = {item["metadata"]["uid"] for item in items}
    return {
        "trial": index,
        "leader": leader.identity,
        "successor": standby.identity,
        "seconds": {**marks, "stopped": round(woke - stopped, 2)},
        # Relative to the SIGSTOP: the successor acted at `took_over`, the old leader woke at
        # `stopped`; a duplicate made after both was sent by the old leader after it woke.
        "duplicates": {
            owner: made
            for owner, made in duplicate_details(snapshots, stopped_wall).items()
            if owner in uids
        },
        "took_over_at": round(took_over, 2),
        "evs_calls_before_stop": sum(before.values()),
        "evs_after_wake": dict(delta),
        "mutating_evs_after_wake": sum(delta[op] for op in MUTATING),
        "read_evs_after_wake": sum(delta[op] for op in READS),
        "k8s_writes_after_wake": [w for w in writes if not is_lease_write(w)],
        "lease_writes_after_wake": [w for w in writes if is_lease_write(w)],
        "steps_after_wake_log": len(step_lines(entries)),
        "steps_after_wake_metric": leader.metric("cloudsnap_reconciles_total") - steps_before,
        "not_ready": sorted(item["metadata"]["name"] for item in items if not is_ready(item)),
        "stale_status": stale_statuses(items, snapshots),
        "duplicate_owners": len(set(duplicate_owners(snapshots)) & uids),
        "live_duplicate_owners": len(set(duplicate_owners(snapshots, live_only=True)) & uids),
        "wrong_ids": len(wrong_ids(items, snapshots)),
    }


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


# -- the report --------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50 and max (and min), rounded."""
    if not values:
        return {}
    return {
        "p50": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
    }


def summarise(report: Obj) -> Obj:
    summary: Obj = {}
    for kind in ("sigkill", "sigterm"):
        trials = report.get(kind) or []
        if not trials:
            continue
        keys = sorted({key for t in trials for key in t["seconds"]})
        summary[kind] = {key: spread([t["seconds"][key] for t in trials]) for key in keys}
        summary[kind]["duplicate_owners"] = max(t["duplicate_owners"] for t in trials)
        summary[kind]["wrong_ids"] = max(t["wrong_ids"] for t in trials)
        summary[kind]["standby_evs_calls_while_standby"] = max(
            t["standby_evs_calls_while_standby"] for t in trials
        )
    deletions = report.get("deletion") or []
    if deletions:
        summary["deletion"] = {
            "trials": len(deletions),
            "recreated_by_standby": sum(1 for t in deletions if t["recreated_by"] == "standby"),
            "resources": sum(t["resources"] for t in deletions),
            "snapshots": sum(t["snapshots"] for t in deletions),
            "duplicate_owners": sum(t["duplicate_owners"] for t in deletions),
            "trials_with_duplicates": sum(1 for t in deletions if t["duplicate_owners"]),
            "not_ready": sum(len(t["not_ready"]) for t in deletions),
            "wrong_ids": sum(t["wrong_ids"] for t in deletions),
            "all_ready": spread([t["seconds"]["all_ready"] for t in deletions]),
        }
    stops = report.get("sigstop") or []
    if stops:
        summary["sigstop"] = {
            "takeover_first_evs_call": spread([t["seconds"]["first_evs_call"] for t in stops]),
            "mutating_evs_after_wake": sum(t["mutating_evs_after_wake"] for t in stops),
            "read_evs_after_wake": sum(t["read_evs_after_wake"] for t in stops),
            "k8s_writes_after_wake": sum(len(t["k8s_writes_after_wake"]) for t in stops),
            "cloudsnapshot_writes_after_wake": sum(
                sum(1 for w in t["k8s_writes_after_wake"] if "/cloudsnapshots/" in w) for t in stops
            ),
            "event_posts_after_wake": sum(
                sum(1 for w in t["k8s_writes_after_wake"] if "/events" in w) for t in stops
            ),
            "lease_writes_after_wake": sum(len(t["lease_writes_after_wake"]) for t in stops),
            "steps_after_wake_log": sum(t["steps_after_wake_log"] for t in stops),
            "steps_after_wake_metric": sum(t["steps_after_wake_metric"] for t in stops),
            "evs_calls_before_stop": spread([t["evs_calls_before_stop"] for t in stops]),
            "duplicate_owners": sum(t["duplicate_owners"] for t in stops),
            "live_duplicate_owners": sum(t["live_duplicate_owners"] for t in stops),
            "stale_status": sum(len(t["stale_status"]) for t in stops),
            "trials_with_mutating_evs_after_wake": sum(
                1 for t in stops if t["mutating_evs_after_wake"]
            ),
            "trials": len(stops),
        }
    return summary


def table(report: Obj) -> str:
    """Per-trial rows, then the summary."""
    lines = []
    for kind, label in (("sigkill", "SIGKILL"), ("sigterm", "SIGTERM")):
        trials = report.get(kind) or []
        if not trials:
            continue
        lines.append(
            f"{label} the leader: seconds after the signal"
            f"{'  (exited = the old leader gone)' if kind == 'sigterm' else ''}"
        )
        lines.append(
            f"  {'trial':>5} {'Lease taken':>11} {'1st EVS call':>12} {'fresh Ready':>11}"
            f" {'exited':>7} {'dup owners':>10}"
        )
        for t in trials:
            s = t["seconds"]
            lines.append(
                f"  {t['trial']:>5} {s['lease']:>11.2f} {s['first_evs_call']:>12.2f}"
                f" {s['fresh_ready']:>11.2f} {s.get('exited', float('nan')):>7.2f}"
                f" {t['duplicate_owners']:>10}"
            )
    stops = report.get("sigstop") or []
    if stops:
        lines.append("SIGSTOP the leader mid-create until the standby took over, then SIGCONT")
        lines.append(
            f"  {'trial':>5} {'stopped s':>9} {'takeover s':>10} {'EVS mut':>7} {'EVS read':>8}"
            f" {'k8s writes':>10} {'Lease wr':>8} {'steps(log)':>10} {'steps(metric)':>13}"
            f" {'dup owners':>10} {'stale status':>12}"
        )
        for t in stops:
            lines.append(
                f"  {t['trial']:>5} {t['seconds']['stopped']:>9.2f}"
                f" {t['seconds']['first_evs_call']:>10.2f} {t['mutating_evs_after_wake']:>7}"
                f" {t['read_evs_after_wake']:>8} {len(t['k8s_writes_after_wake']):>10}"
                f" {len(t['lease_writes_after_wake']):>8} {t['steps_after_wake_log']:>10}"
                f" {t['steps_after_wake_metric']:>13.0f} {t['duplicate_owners']:>10}"
                f" {len(t['stale_status']):>12}"
            )
    deletions = report.get("deletion") or []
    if deletions:
        lines.append(
            "Lease deleted right after a renewal, the standby creating it, a batch applied at once"
        )
        lines.append(
            f"  {'trial':>5} {'created by':>10} {'Lease back s':>12} {'all Ready s':>11}"
            f" {'creates L/S':>11} {'snapshots':>9} {'dup owners':>10} {'not Ready':>9}"
        )
        for t in deletions:
            creates = f"{t['leader_evs_calls'].get('create', 0)}/"
            creates += f"{t['standby_evs_calls'].get('create', 0)}"
            lines.append(
                f"  {t['trial']:>5} {t['recreated_by']:>10}"
                f" {t['seconds']['lease_recreated']:>12.2f} {t['seconds']['all_ready']:>11.2f}"
                f" {creates:>11} {t['snapshots']:>9} {t['duplicate_owners']:>10}"
                f" {len(t['not_ready']):>9}"
            )
    summary = report["summary"]
    lines.append("summary")
    for kind, label in (("sigkill", "SIGKILL"), ("sigterm", "SIGTERM")):
        if kind in summary:
            s = summary[kind]
            first, lease = s["first_evs_call"], s["lease"]
            lines.append(
                f"  {label}: standby's first step (EVS call) p50 {first['p50']}s"
                f" max {first['max']}s; Lease taken p50 {lease['p50']}s max {lease['max']}s;"
                " fresh Ready p50"
                f" {s['fresh_ready']['p50']}s max {s['fresh_ready']['max']}s; owners with >1"
                f" snapshot {s['duplicate_owners']}; standby EVS calls while standby"
                f" {s['standby_evs_calls_while_standby']}"
            )
    if "sigstop" in summary:
        s = summary["sigstop"]
        lines.append(
            f"  SIGSTOP: after SIGCONT the old leader sent {s['mutating_evs_after_wake']} mutating"
            f" EVS calls, {s['read_evs_after_wake']} EVS reads,"
            f" {s['cloudsnapshot_writes_after_wake']} CloudSnapshot writes,"
            f" {s['event_posts_after_wake']} Event posts,"
            f" {s['lease_writes_after_wake']} Lease writes; steps"
            f" finished after waking {s['steps_after_wake_log']} (log),"
            f" {s['steps_after_wake_metric']:.0f} (metric); takeover p50"
            f" {s['takeover_first_evs_call']['p50']}s max {s['takeover_first_evs_call']['max']}s;"
            f" owners with 2 snapshots {s['duplicate_owners']} ({s['live_duplicate_owners']}"
            f" still live); statuses left stale {s['stale_status']}"
        )
    if "deletion" in summary:
        s = summary["deletion"]
        lines.append(
            f"  Lease deleted: {s['trials']} trials ({s['recreated_by_standby']} won by the"
            f" standby), {s['snapshots']} snapshots for {s['resources']} resources, owners with"
            f" >1 snapshot {s['duplicate_owners']} (in {s['trials_with_duplicates']} trials),"
            f" not Ready {s['not_ready']}; all Ready p50 {s['all_ready']['p50']}s max"
            f" {s['all_ready']['max']}s after the deletion"
        )
    standby = summary.get("writes_while_standby")
    if standby is not None:
        lines.append(
            "  standbys (whole run, every generation, from each replica's log):"
            f" {sum(map(len, standby.values()))} CloudSnapshot/Event writes while not leading"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def control_plane(workdir: Path) -> Iterator[Cluster]:
    """etcd + kube-apiserver with the CRDs and the operator namespace; stopped on the way out."""
    with contextlib.ExitStack() as stack:
        print(f"starting etcd and kube-apiserver in {workdir} ...", flush=True)
        plane = stack.enter_context(ControlPlane(directory=workdir / "cluster"))
        cluster = Cluster(plane.kubeconfig, tool_env(plane.kubeconfig, plane.bin_dir, workdir))
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        yield cluster


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so everything started is stopped on the way out."""
    raise SystemExit(128 + signum)


def add_pair_arguments(
    parser: argparse.ArgumentParser, *, timing: tuple[float, float, float], timeout: float
) -> None:
    """The options every two-replica benchmark takes: Lease timings, waits, where results go."""
    default = " ".join(f"{value:g}" for value in timing)
    parser.add_argument(
        "--timing",
        type=float,
        nargs=3,
        default=list(timing),
        metavar=("LEASE", "RENEW", "RETRY"),
        help=f"lease duration, renew deadline, retry period in seconds ({default};"
        " the operator's default: 15 10 2)",
    )
    parser.add_argument("--timeout", type=float, default=timeout, help="deadline of each wait (s)")
    parser.add_argument("--dir", type=Path, help="working directory (logs); default a temp dir")
    parser.add_argument("--output", type=Path, help="JSON result file (default in DIR)")


def begin_run(args: argparse.Namespace, name: str) -> tuple[Path, Path, tuple[float, float, float]]:
    """Unwind on SIGTERM/SIGHUP; the working directory, the result file and the Lease timings."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix=f"cloudsnap-{name}-"))
    output = args.output or workdir / f"{name}.json"
    return workdir, output, (args.timing[0], args.timing[1], args.timing[2])


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.ha` (what `make ha-trials` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kill-trials", type=int, default=10, help="SIGKILL trials (10)")
    parser.add_argument("--term-trials", type=int, default=10, help="SIGTERM trials (10)")
    parser.add_argument("--stop-trials", type=int, default=10, help="SIGSTOP trials (10)")
    parser.add_argument("--stop-batch", type=int, default=8, help="creates in flight at SIGSTOP")
    parser.add_argument("--deletion-trials", type=int, default=10, help="Lease deletions (10)")
    parser.add_argument(
        "--deletion-batch", type=int, default=30, help="CloudSnapshots applied after a deletion"
    )
    parser.add_argument(
        "--create-latency",
        type=float,
        default=1.0,
        help="seconds EVS takes to answer a create in the deletion trials (1)",
    )
    parser.add_argument("--create-seconds", type=float, default=2.0, help="simulated create time")
    add_pair_arguments(parser, timing=DEFAULT_TIMING, timeout=180.0)
    args = parser.parse_args(argv)
    workdir, output, timing = begin_run(args, "ha")
    report: Obj = {
        "timing": dict(
            zip(("lease_duration", "renew_deadline", "retry_period"), timing, strict=True)
        ),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
    }
    with control_plane(workdir) as cluster:
        namespace = f"ha-{secrets.token_hex(3)}"
        cluster.kubectl("create", "namespace", namespace)
        with running_pair(
            cluster,
            workdir,
            namespace=namespace,
            operator_namespace=OPERATOR_NAMESPACE,
            timing=timing,
            create_seconds=args.create_seconds,
            audit=True,
        ) as pair:
            # Resources a new leader looks at first: its first step is an EVS call.
            volume = pair.admin.add_volumes(1)[0]
            names = [f"base-{i}" for i in range(3)]
            for name in names:
                pair.create(name, volume)
            pair.wait_ready(names, args.timeout)
            for kind, key, count in (
                ("kill", "sigkill", args.kill_trials),
                ("term", "sigterm", args.term_trials),
            ):
                report[key] = []
                for index in range(count):
                    trial = handover_trial(pair, kind, index, args.timeout)
                    report[key].append(trial)
                    print(f"{key} trial {index}: {json.dumps(trial)}", flush=True)
            report["sigstop"] = []
            for index in range(args.stop_trials):
                trial = stop_trial(pair, index, args.stop_batch, args.timeout)
                report["sigstop"].append(trial)
                print(f"sigstop trial {index}: {json.dumps(trial)}", flush=True)
            report["deletion"] = []
            for index in range(args.deletion_trials):
                trial = deletion_trial(
                    pair,
                    index,
                    args.deletion_batch,
                    args.timeout,
                    create_latency=args.create_latency,
                )
                report["deletion"].append(trial)
                print(f"deletion trial {index}: {json.dumps(trial)}", flush=True)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["summary"] = summarise(report)
    report["summary"]["writes_while_standby"] = {
        replica.name: [
            w for entries in replica.generations() for w in writes_while_standby(entries)
        ]
        for replica in pair.replicas
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table(report))
    print(f"\nresult: {output}\nlogs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
