"""Run kubectl and helm against one cluster, whichever way it was provided.

Tests talk to the harness's own control plane or to a cluster the developer points at with a
kubeconfig (kind, k3d); both look the same from here: a kubeconfig plus an environment whose PATH
finds the pinned tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hack.cluster.controlplane import ControlPlane

COMMAND_TIMEOUT_SECONDS = 120.0


_SECRET_FLAGS = ("--from-literal=", "--token=", "--password=", "--client-key=")


def _redact(arg: str) -> str:
    """Hide the value of flags that can carry a credential; the rest stays readable."""
    for flag in _SECRET_FLAGS:
        if arg.startswith(flag):
            return f"{flag}<redacted>"
    return arg


class CommandError(subprocess.CalledProcessError):
    """A kubectl/helm call failed; its message shows stderr but never a credential flag."""

    def __str__(self) -> str:
        shown = " ".join(_redact(str(arg)) for arg in self.cmd)
        return (
            f"`{shown}` exited with {self.returncode}\nstderr: {self.stderr}\nstdout: {self.output}"
        )


def tool_env(kubeconfig: Path, bin_dir: Path, home: Path) -> dict[str, str]:
    """os.environ plus KUBECONFIG, PATH with the tools and the venv, and a private helm home.

    helm keeps caches and repository config under $HOME by default; giving it a directory of its
    own keeps test runs from reading or writing the developer's helm state.
    """
    env = dict(os.environ)
    venv_bin = Path(sys.executable).parent
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(venv_bin), env.get("PATH", "")])
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(home / "helm" / sub)
    return env


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster: its kubeconfig and an environment for kubectl and helm; ``plane``,
    the local control plane when the cluster is one (None for an external cluster)."""

    kubeconfig: Path
    env: dict[str, str]
    plane: ControlPlane | None = None

    def run(
        self, tool: str, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run tool (found on the cluster's PATH) with this cluster's environment."""
        executable = shutil.which(tool, path=self.env["PATH"])
        if executable is None:
            raise FileNotFoundError(f"{tool} not found on {self.env['PATH']}")
        result = subprocess.run(  # noqa: S603 - argv built here, no shell
            [executable, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl against this cluster; raises CommandError on failure when check is set."""
        return self.run("kubectl", *args, input=input, check=check)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """helm against this cluster; raises CommandError on failure when check is set."""
        return self.run("helm", *args, input=input, check=check)
