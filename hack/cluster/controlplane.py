"""A Kubernetes control plane without nodes: etcd, kube-apiserver and kube-controller-manager.

The operator's behaviour only means something against a real API server (CRD schemas, CEL rules,
the status subresource, RBAC, finalizers), and there is no container engine to run kind, so the
harness runs the binaries built by hack.tools.install directly on loopback ports. The
controller-manager runs only the controllers a cluster without nodes needs to behave like a real
one for the operator: PersistentVolumeClaim binding (and the PV/PVC protection finalizers, which
would otherwise hold every deleted claim), garbage collection by ownerReference, and namespace
deletion. Each of its controllers acts as its own ServiceAccount, as in kubeadm clusters.

Everything started here is stopped again: ``with ControlPlane() as cp`` stops on exit, an atexit
hook stops whatever is still running when the interpreter ends, SIGTERM/SIGHUP stop everything
before the process dies, and each child asks the kernel to kill it if its parent dies first.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType

import httpx
import yaml

from hack.cluster import pki as pki_mod
from hack.tools.install import tools_bin

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.2
START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1
# The controllers the harness runs; everything else a real cluster runs needs nodes or pods.
CONTROLLERS = (
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "garbage-collector-controller",
    "namespace-controller",
    # Folds ClusterRoles labelled aggregate-to-view/edit/admin (the chart's user roles) into the
    # built-in view, edit and admin roles.
    "clusterrole-aggregation-controller",
)
_OWNED_NAMES = (
    "etcd",
    "pki",
    "apiserver-certs",
    "kubeconfig",
    "controller-manager.kubeconfig",
    "etcd.log",
    "kube-apiserver.log",
    "kube-controller-manager.log",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (the message carries the failing log's tail)."""


class _PortInUseError(ControlPlaneError):
    """A port picked as free was taken before the server bound it; worth another attempt."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Resolved in the parent: after fork, the child must not load libraries (loader locks).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it if the parent goes away (even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Process:
    """One child in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.popen.pid

    def check_alive(self) -> None:
        """Raise with the log's tail if the child has already exited."""
        code = self.popen.poll()
        if code is None:
            return
        tail = _tail(self.log_path)
        error = _PortInUseError if "address already in use" in tail else ControlPlaneError
        raise error(f"{self.name} exited with {code} during start-up:\n{tail}")

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL it after a grace period, and reap the child."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        # The leader is reaped; anything it left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def _wait_until(
    condition: Callable[[], bool], timeout: float, what: str, processes: list[_Process]
) -> None:
    """Poll condition until it holds, failing fast if a child died and at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in processes:
            proc.check_alive()
        if condition():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_SECONDS)


_RUNNING: set[ControlPlane] = set()
# Re-entrant: the signal handler may run while the main thread holds it.
_RUNNING_LOCK = threading.RLock()


def stop_all() -> None:
    """Stop every control plane of this process (atexit and signal path)."""
    with _RUNNING_LOCK:
        planes = list(_RUNNING)
    for plane in planes:
        plane.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Stop the children, then let the signal do what it would have done."""
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """SIGTERM/SIGHUP would kill Python without running atexit; stop our children first."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _on_signal)


atexit.register(stop_all)


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager on free loopback ports, with RBAC and an
    admin client cert.

    Start it from a thread that outlives it: children are tied to the starting thread's life.
    """

    def __init__(
        self,
        *,
        directory: Path | None = None,
        bin_dir: Path | None = None,
        start_timeout: float = 120.0,
        apiserver: str = "kube-apiserver",
        controller_manager: bool = True,
    ) -> None:
        """`apiserver` names the API server binary in bin_dir (another release's, for the
        compatibility tests); `controller_manager=False` runs etcd and the API server only."""
        self.bin_dir = bin_dir or tools_bin()
        self.apiserver = apiserver
        self.controller_manager = controller_manager
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="cloudsnap-cp-"))
        self.start_timeout = start_timeout
        self.kubeconfig = self.directory / "kubeconfig"
        self.server = ""
        self.start_seconds = 0.0
        # Of start_seconds, the time from a ready API server to a healthy controller-manager.
        self.controller_manager_seconds = 0.0
        self._processes: list[_Process] = []

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Pids of the running children (etcd first, the controller-manager last)."""
        return [proc.pid for proc in self._processes]

    @contextlib.contextmanager
    def api_server_paused(self) -> Iterator[None]:
        """The API server stopped (SIGSTOP) for the block, so that requests to it hang as to a
        server that stalls; it continues (SIGCONT) on the way out."""
        (server,) = [proc for proc in self._processes if proc.name == "kube-apiserver"]
        os.killpg(server.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(server.pid, signal.SIGCONT)

    def start(self) -> ControlPlane:
        """Bring the servers up and write the kubeconfig; retry on a port race.

        Whatever goes wrong (missing binaries included), nothing started is left behind.
        """
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        _install_signal_handlers()
        started = time.monotonic()
        try:
            binaries = ["etcd", self.apiserver]
            if self.controller_manager:
                binaries.append("kube-controller-manager")
            for binary in binaries:
                if not (self.bin_dir / binary).is_file():
                    raise ControlPlaneError(f"{self.bin_dir / binary} missing: run `make tools`")
            for attempt in range(1, START_ATTEMPTS + 1):
                self._clear_state()
                try:
                    self._start_once()
                    break
                except _PortInUseError:
                    if attempt == START_ATTEMPTS:
                        raise
                    self._stop_processes()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def wait_for_exit(self, interval: float) -> str:
        """Block while every server runs; return the name of the first one that exits."""
        while True:
            for proc in self._processes:
                if proc.popen.poll() is not None:
                    return proc.name
            time.sleep(interval)

    def stop(self) -> None:
        """Stop the servers (in reverse start order) and remove the directory if we created it."""
        self._stop_processes()
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_processes(self) -> None:
        for proc in reversed(self._processes):
            proc.stop()
        self._processes.clear()

    def _clear_state(self) -> None:
        """Start from nothing, even when reusing a directory the caller chose."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in _OWNED_NAMES:
            path = self.directory / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _start_once(self) -> None:
        keys = pki_mod.generate(self.directory / "pki")
        etcd_url = self._start_etcd()
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        apiserver = _Process(
            "kube-apiserver",
            [
                str(self.bin_dir / self.apiserver),
                "--advertise-address=127.0.0.1",
                # The endpoint reconciler refuses a loopback address for the `kubernetes`
                # Service's endpoints; nothing runs pods here, so nothing needs them.
                "--endpoint-reconciler-type=none",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={self.directory / 'apiserver-certs'}",
                f"--tls-cert-file={keys.serving_cert}",
                f"--tls-private-key-file={keys.serving_key}",
                f"--client-ca-file={keys.ca_cert}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={keys.sa_public_key}",
                f"--service-account-signing-key-file={keys.sa_private_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # The serviceaccount controller, which creates each namespace's default
                # ServiceAccount, is not run (nothing runs pods), so this plugin would refuse every
                # pod; envtest turns it off for the same reason.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ],
            self.directory / "kube-apiserver.log",
        )
        self._processes.append(apiserver)
        context = ssl.create_default_context(cafile=str(keys.ca_cert))
        context.load_cert_chain(str(keys.admin_cert), str(keys.admin_key))
        with httpx.Client(verify=context, timeout=5.0) as client:
            _wait_until(
                lambda: _answers_ok(client, f"{self.server}/readyz"),
                self.start_timeout,
                "kube-apiserver /readyz",
                self._processes,
            )
        self._write_kubeconfig(
            self.kubeconfig, keys, pki_mod.ADMIN_USER, keys.admin_cert, keys.admin_key
        )
        if self.controller_manager:
            ready = time.monotonic()
            self._start_controller_manager(keys, context)
            self.controller_manager_seconds = time.monotonic() - ready

    def _start_controller_manager(self, keys: pki_mod.Pki, context: ssl.SSLContext) -> None:
        """Start kube-controller-manager against the API server and wait until it is healthy.

        It authenticates as system:kube-controller-manager, and each controller gets a token of
        its own ServiceAccount in kube-system (signed with the API server's service-account key),
        so every controller holds only its bootstrap RBAC role, as in a kubeadm cluster. It
        serves /healthz with the API server's certificate (its SANs are the same loopback
        names), so the probe verifies it against the CA.
        """
        kubeconfig = self.directory / "controller-manager.kubeconfig"
        self._write_kubeconfig(
            kubeconfig,
            keys,
            pki_mod.CONTROLLER_MANAGER_USER,
            keys.controller_manager_cert,
            keys.controller_manager_key,
        )
        port = free_port()
        manager = _Process(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={keys.serving_cert}",
                f"--tls-private-key-file={keys.serving_key}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={keys.sa_private_key}",
                f"--root-ca-file={keys.ca_cert}",
                # One instance per control plane: nothing to elect.
                "--leader-elect=false",
                "--profiling=false",
            ],
            self.directory / "kube-controller-manager.log",
        )
        self._processes.append(manager)
        with httpx.Client(verify=context, timeout=5.0) as client:
            _wait_until(
                lambda: _runs_controllers(client, f"https://127.0.0.1:{port}/healthz?verbose"),
                self.start_timeout,
                "kube-controller-manager /healthz to list its controllers",
                self._processes,
            )

    def _start_etcd(self) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = _Process(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=cloudsnap",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=cloudsnap={peer_url}",
                # Test data is disposable: skipping fsync makes every write cheap.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.directory / "etcd.log",
        )
        self._processes.append(etcd)
        with httpx.Client(timeout=5.0) as client:
            _wait_until(
                lambda: _answers_ok(client, f"{client_url}/health"),
                self.start_timeout,
                "etcd /health",
                self._processes,
            )
        return client_url

    def _write_kubeconfig(
        self, path: Path, keys: pki_mod.Pki, user: str, cert: Path, key: Path
    ) -> None:
        """A kubeconfig for the API server (verified against the CA) as this client cert's user."""

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "cloudsnap-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(keys.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(cert),
                        "client-key-data": b64(key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "cloudsnap-test",
                    "context": {"cluster": "cloudsnap-test", "user": user},
                }
            ],
            "current-context": "cloudsnap-test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)


def _answers_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _runs_controllers(client: httpx.Client, url: str) -> bool:
    """Whether the controller-manager is healthy and has started every controller it was given:
    it adds a controller's check only once the controller is built, so an early /healthz "ok"
    does not yet mean the controllers run."""
    try:
        answer = client.get(url)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and all(f"[+]{name} ok" in answer.text for name in CONTROLLERS)
