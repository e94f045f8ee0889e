"""A control plane that cannot start says why and leaves nothing behind (no binaries needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hack.cluster import ControlPlane, ControlPlaneError


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
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}")
        (bin_dir / name).chmod(0o755)
    plane = ControlPlane(bin_dir=bin_dir, start_timeout=30)

    with pytest.raises(ControlPlaneError, match="etcd exited with 3") as failure:
        plane.start()

    assert "fatal: data dir is corrupt" in str(failure.value)
    assert plane.pids == []
    assert not plane.directory.exists()
