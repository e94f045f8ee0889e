"""`make sandbox`: the whole stack on one machine, and the process helpers the e2e tests share.

The sandbox starts a real control plane, the EVS simulator with a demo disk, the CRDs, a default
CloudSnapshotClass with its credentials Secret, the operator, and `examples/cloudsnapshot.yaml`; it
waits until the example is Ready, prints how to reach it and stays up until Ctrl-C. The end-to-end
tests start the simulator and the operator through the same helpers, so what a developer pokes at
in the sandbox is what the tests exercised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar

import httpx

from cloudsnap.api.constants import DEFAULT_CLASS_ANNOTATION
from hack.cluster import Cluster, ControlPlane, tool_env
from hack.cluster.controlplane import die_with_parent, free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
OPERATOR_NAMESPACE = "cloudsnap-system"
DEMO_VOLUME_ID = "5aa119a8-d25b-45a7-8d1b-88e127885635"


T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll `probe` until it returns a truthy value; processes give no other readiness signal."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class ManagedProcess:
    """A child in its own process group, logging to a file, that can be stopped, killed, restarted.

    Its own session means a SIGKILL reaches every process it spawned, so nothing strays.
    """

    argv: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or start again); output is appended so every run's log stays readable."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - argv built from our own console scripts
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group, as a node failure or OOM kill would; no chance to clean up."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if the child has not exited within `grace` seconds."""
        self._signal(signal.SIGTERM)
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        """Everything every run of the child has written so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: re.Pattern[str], *, timeout: float) -> re.Match[str]:
        """The first match of `pattern` in the log; fails early, with the log, if the child dies."""

        def probe() -> re.Match[str] | None:
            match = pattern.search(self.log_text())
            if match is None and not self.alive:
                raise RuntimeError(f"{self.argv[0]} exited:\n{self.log_text()[-4000:]}")
            return match

        return wait_until(probe, timeout=timeout, what=f"{pattern.pattern!r} in {self.log_path}")


@dataclass
class Simulator:
    """The EVS simulator as a separate process, and the account it accepts."""

    process: ManagedProcess
    endpoint: str
    access_key: str
    secret_key: str
    project_id: str


def start_simulator(
    workdir: Path,
    *,
    volumes: Sequence[str] = (),
    create_seconds: float | None = None,
    delete_seconds: float | None = None,
    volume_create_seconds: float | None = None,
    volume_delete_seconds: float | None = None,
    timeout: float = 30.0,
) -> Simulator:
    """Start `evs-simulator` on a free port with a fresh random account; wait until it listens.

    `volumes` are `ID:SIZE:STATUS` triples, as the simulator's `--volume` flag takes them. Disk and
    snapshot IDs are drawn from a fresh seed too: EVS's IDs are unique across accounts, and objects
    of one cluster (PersistentVolumes naming a disk) outlive the simulator that made it.
    """
    access_key = "AK" + secrets.token_hex(8).upper()
    secret_key = "SK" + secrets.token_hex(20)
    project_id = secrets.token_hex(16)
    argv = [str(BIN / "evs-simulator"), "--host", "127.0.0.1", "--port", "0"]
    argv += ["--access-key", access_key, "--project-id", project_id]
    argv += ["--seed", str(secrets.randbits(31))]
    for volume in volumes:
        argv += ["--volume", volume]
    timings = {
        "--create-seconds": create_seconds,
        "--delete-seconds": delete_seconds,
        "--volume-create-seconds": volume_create_seconds,
        "--volume-delete-seconds": volume_delete_seconds,
    }
    for flag, seconds in timings.items():
        if seconds is not None:
            argv += [flag, str(seconds)]
    # The key goes through the environment, where `ps` does not show it.
    env = {**os.environ, "EVS_SIMULATOR_SECRET_KEY": secret_key}
    process = ManagedProcess(argv, workdir / "evs-simulator.log", env)
    process.start()
    try:
        endpoint = process.wait_for_log(LISTENING, timeout=timeout).group(1)
    except BaseException:
        process.stop()
        raise
    return Simulator(process, endpoint, access_key, secret_key, project_id)


@dataclass
class OperatorProcess:
    """`cloudsnap-operator run` as a separate process with its metrics/health port."""

    process: ManagedProcess
    metrics_port: int
    restarts: int = field(default=0)

    @property
    def readyz(self) -> str:
        """The readiness URL: 200 once the operator watches its resources."""
        return f"http://127.0.0.1:{self.metrics_port}/readyz"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /readyz answers 200; fail with the log if the operator exits first."""

        def probe() -> bool:
            if not self.process.alive:
                raise RuntimeError(f"operator exited:\n{self.process.log_text()[-4000:]}")
            try:
                return httpx.get(self.readyz, timeout=2.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(probe, timeout=timeout, what=f"operator readiness at {self.readyz}")

    def restart(self) -> None:
        """Start again after a kill or stop, on the same port and log, and wait until ready."""
        self.restarts += 1
        self.process.start()
        self.wait_ready()


def start_operator(
    workdir: Path,
    env: Mapping[str, str],
    *,
    namespaces: Sequence[str],
    operator_namespace: str,
    resync_seconds: float | None = None,
    log_level: str = "DEBUG",
    settings: Mapping[str, str] | None = None,
) -> OperatorProcess:
    """Start `cloudsnap-operator run` watching `namespaces` (all when empty) and wait until ready.

    `env` carries KUBECONFIG; `settings` are more `CLOUDSNAP_*` variables (intervals, backoff).
    Its health/metrics server listens on loopback only. The log is JSON lines.
    """
    metrics_port = free_port()
    argv = [str(BIN / "cloudsnap-operator"), "run", "--operator-namespace", operator_namespace]
    argv += ["--metrics-port", str(metrics_port), "--log-format", "json", "--log-level", log_level]
    if namespaces:
        for namespace in namespaces:
            argv += ["--namespace", namespace]
    else:
        argv.append("--all-namespaces")
    if resync_seconds is not None:
        argv += ["--resync-seconds", str(resync_seconds)]
    child_env = {**env, "CLOUDSNAP_METRICS_HOST": "127.0.0.1", **(settings or {})}
    operator = OperatorProcess(
        ManagedProcess(argv, workdir / "operator.log", child_env), metrics_port
    )
    operator.process.start()
    try:
        operator.wait_ready()
    except BaseException:
        operator.process.stop()
        raise
    return operator


def released_lease(namespace: str, name: str = "cloudsnap-operator") -> str:
    """The operator's Lease as a clean shutdown leaves it (no holder), as JSON, to create before
    an operator's first start in `namespace`.

    A replica that finds no Lease at all acts only a lease duration (15 s) after creating it: it
    cannot tell a first start from a Lease deleted while its holder still acts
    (docs/operations.md, High availability). A released Lease is taken at once, so tests and
    benchmarks that start many operators do not wait that long each time.
    """
    return json.dumps(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
        }
    )


def class_manifests(
    sim: Simulator,
    *,
    class_name: str,
    operator_namespace: str,
    secret_name: str = "evs-credentials",  # noqa: S107 - the Secret's name, not a key
    secret_key: str | None = None,
    default: bool = True,
    deletion_policy: str = "Delete",
) -> str:
    """The credentials Secret and a CloudSnapshotClass pointing at the simulator, as JSON docs.

    `secret_key` overrides the simulator's key, to play a misconfigured account.
    """
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": operator_namespace},
        "type": "Opaque",
        "stringData": {
            "accessKey": sim.access_key,
            "secretKey": sim.secret_key if secret_key is None else secret_key,
        },
    }
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    cls = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshotClass",
        "metadata": {"name": class_name, "annotations": annotations},
        "spec": {
            "region": "sim-1",
            "projectID": sim.project_id,
            "endpoint": sim.endpoint,
            "credentialsSecretRef": {"name": secret_name},
            "deletionPolicy": deletion_policy,
        },
    }
    return "\n---\n".join(json.dumps(doc) for doc in (secret, cls))


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so everything started is stopped on the way out."""
    raise SystemExit(128 + signum)


def run_sandbox(workdir: Path) -> None:
    """Bring the stack up, show it, keep it up until interrupted, then stop it in reverse order."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        print("starting etcd, kube-apiserver and kube-controller-manager ...", flush=True)
        plane = stack.enter_context(ControlPlane(directory=workdir / "cluster"))
        cluster = Cluster(
            plane.kubeconfig, tool_env(plane.kubeconfig, plane.bin_dir, workdir), plane
        )
        kubectl = cluster.kubectl

        print("starting the EVS simulator with a demo disk ...", flush=True)
        sim = start_simulator(
            workdir, volumes=[f"{DEMO_VOLUME_ID}:10:available"], create_seconds=3.0
        )
        stack.callback(sim.process.stop)

        print("installing the CRDs, the credentials Secret and the default class ...", flush=True)
        kubectl("apply", "-f", str(REPO / "crds"))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl("create", "namespace", OPERATOR_NAMESPACE)
        manifests = class_manifests(
            sim, class_name="default", operator_namespace=OPERATOR_NAMESPACE
        )
        kubectl("apply", "-f", "-", input=manifests)

        print("starting the operator ...", flush=True)
        operator = start_operator(
            workdir,
            cluster.env,
            namespaces=[],
            operator_namespace=OPERATOR_NAMESPACE,
            log_level="INFO",
        )
        stack.callback(operator.process.stop)

        example = REPO / "examples" / "cloudsnapshot.yaml"
        kubectl("apply", "-f", str(example))
        kubectl("wait", "--for=condition=Ready", "-f", str(example), "--timeout=120s")
        print(_banner(plane.kubeconfig, workdir, kubectl("get", "csnap", "-o", "wide").stdout))
        print("Up. Press Ctrl-C to stop everything.", flush=True)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        finally:
            print("stopping ...", flush=True)


def _banner(kubeconfig: Path, workdir: Path, table: str) -> str:
    """What to try, with this sandbox's paths filled in."""
    return f"""
$ kubectl get csnap -o wide
{table}
The sandbox is up. kubeconfig: {kubeconfig}
In another shell:

  export KUBECONFIG={kubeconfig}
  export PATH={BIN}:$PATH
  kubectl get csnap,csnapclass                  # resources, READY/PHASE/SNAPSHOT-ID columns
  kubectl describe csnap demo-daily             # conditions and events
  kubectl explain csnap.spec                    # the CRD reference
  kubectl patch csnap demo-daily --type=merge -p '{{"spec":{{"description":"edited"}}}}'
  kubectl delete csnap demo-daily               # deletes the EVS snapshot (policy Delete)
  kubectl apply -f examples/cloudsnapshot-retain.yaml   # a second one, kept on delete
  kubectl apply -f examples/cloudsnapshot-pvc.yaml      # the demo disk named by a bound claim
  kubectl apply -f examples/invalid-reserved-name.yaml  # refused at admission, with the reason

Logs: {workdir}/operator.log (operator), {workdir}/evs-simulator.log (simulator)
"""


def main() -> None:
    """`python -m hack.sandbox [--dir DIR]` (what `make sandbox` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=REPO / ".sandbox", help="working directory")
    args = parser.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    run_sandbox(args.dir)


if __name__ == "__main__":
    main()
