"""The harness stops everything it started, however its owner ends.

Each test starts a control plane of its own (not the session's), ends it one way or another and
then checks that no etcd, kube-apiserver or kube-controller-manager pid it had survives and its
temp dir is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hack.cluster import Cluster, ControlPlane, tool_env
from hack.sandbox import wait_until
from hack.tools.install import REPO_ROOT

pytestmark = pytest.mark.e2e

START_TIMEOUT = 180.0
KUBECONFIG_LINE = re.compile(r"^kubeconfig: (.+)$", re.MULTILINE)


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> dict[int, str]:
    """Direct children of pid, with their command names, from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = name
    return found


def test_control_plane_stops_when_its_block_raises(tmp_path: Path) -> None:
    plane = ControlPlane(start_timeout=START_TIMEOUT)
    pids: list[int] = []

    def use_then_fail() -> None:
        with plane:
            pids.extend(plane.pids)
            env = tool_env(plane.kubeconfig, plane.bin_dir, tmp_path)
            assert Cluster(plane.kubeconfig, env).kubectl("get", "--raw", "/readyz").stdout == "ok"
            assert all(alive(pid) for pid in pids)
            raise RuntimeError("test failed")

    with pytest.raises(RuntimeError, match="test failed"):
        use_then_fail()

    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)
    assert not plane.directory.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_up_command_leaves_nothing_behind(signum: signal.Signals, tmp_path: Path) -> None:
    """`python -m hack.cluster up` cleans up on Ctrl-C and SIGTERM; on SIGKILL the kernel does."""
    out = tmp_path / "up.out"
    with out.open("w") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "hack.cluster", "up"],
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: KUBECONFIG_LINE.search(out.read_text()) or up.poll() is not None,
            timeout=START_TIMEOUT,
            what="the kubeconfig line",
        )
        match = KUBECONFIG_LINE.search(out.read_text())
        assert match, out.read_text()
        kubeconfig = Path(match.group(1))
        servers = children(up.pid)
        # /proc shows at most 15 characters of a command name.
        assert sorted(servers.values()) == ["etcd", "kube-apiserver", "kube-controller"]
        cluster = Cluster(kubeconfig, tool_env(kubeconfig, tmp_path, tmp_path))
        assert cluster.kubectl("get", "namespace", "default", "-o", "name").stdout.strip() == (
            "namespace/default"
        )

        os.kill(up.pid, signum)
        code = up.wait(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    assert code == (0 if signum == signal.SIGINT else -signum)
    wait_until(
        lambda: not any(alive(pid) for pid in servers),
        timeout=30,
        what=f"{servers} to exit",
    )
    if signum == signal.SIGKILL:
        shutil.rmtree(kubeconfig.parent)  # nobody was left to remove it
    else:
        assert not kubeconfig.parent.exists()
