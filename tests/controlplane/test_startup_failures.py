"""Failures say why and leave nothing behind: start-up errors, failed commands (no binaries)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hack.cluster import Cluster, CommandError, ControlPlane, ControlPlaneError, tool_env


def test_missing_binaries_point_at_make_tools_and_leave_no_directory(tmp_path: Path) -> None:
    plane = ControlPlane(bin_dir=tmp_path / "empty")

    with pytest.raises(ControlPlaneError, match="run `make tools`"):
        plane.start()

    assert not plane.directory.exists()


def test_a_server_that_dies_at_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (
        ("etcd", "echo 'fatal: data dir is corrupt' >&2\nexit 3\n"),
        ("kube-apiserver", "exit 0\n"),
        ("kube-controller-manager", "exit 0\n"),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}")
        (bin_dir / name).chmod(0o755)
    plane = ControlPlane(bin_dir=bin_dir, start_timeout=30)

    with pytest.raises(ControlPlaneError, match="etcd exited with 3") as failure:
        plane.start()

    assert "fatal: data dir is corrupt" in str(failure.value)
    assert plane.pids == []
    assert not plane.directory.exists()


def test_a_failed_command_shows_stderr_but_not_a_literal_secret(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    cluster = Cluster(kubeconfig, tool_env(kubeconfig, tmp_path, tmp_path))

    with pytest.raises(CommandError) as failure:
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=secretKey=SK-hidden",
            "--no-such-flag",
        )  # fails before any connection is attempted

    message = str(failure.value)
    assert "--from-literal=<redacted>" in message
    assert "SK-hidden" not in message
    assert failure.value.stderr in message
    assert "unknown flag: --no-such-flag" in failure.value.stderr
