"""The container image without a Docker engine: lint, pins, and a replay of its install steps."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import distribution, distributions
from pathlib import Path

import yaml
from hack.lock import DEV_LOCK, RUNTIME_LOCK, lock_entries, read_lock
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
VALUES = ROOT / "deploy/helm/cloudsnap-operator/values.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"
# name==version, an optional environment marker, then one sha256 per published file.
HASH_PINNED = re.compile(r"[A-Za-z0-9._-]+==\S+( ; [^-]+)?( --hash=sha256:[0-9a-f]{64})+")


def _instructions(name: str) -> list[str]:
    return [
        line.split(None, 1)[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.split(None, 1)[:1] == [name]
    ]


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install kopf\n")
    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_base_image_is_pinned_and_user_is_numeric_non_root() -> None:
    bases = [line.split()[0] for line in _instructions("FROM")]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm|[^@\s]+@sha256:[0-9a-f]{64}", base)
    (user,) = _instructions("USER")
    uid, gid = user.split(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) > 0
    assert int(gid) > 0
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["cloudsnap-operator", "run"]


def test_chart_runs_as_the_image_user() -> None:
    (user,) = _instructions("USER")
    values = yaml.safe_load(VALUES.read_text())
    for context in (values["podSecurityContext"], values["securityContext"]):
        assert f"{context['runAsUser']}:{context['runAsGroup']}" == user


def _runtime_closure(root: str = "cloudsnap") -> dict[str, str]:
    """Canonical name -> installed version of every runtime dependency of ``root``, transitively."""
    pending = [Requirement(text) for text in distribution(root).requires or []]
    pinned: dict[str, str] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        applies = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        if not applies or name in pinned:
            continue
        dist = distribution(requirement.name)
        pinned[name] = dist.version
        pending.extend(Requirement(text) for text in dist.requires or [])
    return pinned


def test_every_lock_entry_is_hash_pinned() -> None:
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        entries = lock_entries(lock)
        assert len(entries) >= len(read_lock(lock)) > 0
        for entry in entries:
            assert HASH_PINNED.fullmatch(entry), f"{lock.name}: not hash-pinned: {entry[:100]}"


def test_the_suite_runs_in_exactly_the_dev_lock() -> None:
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in distributions()
        if canonicalize_name(dist.metadata["Name"]) != "cloudsnap"
    }
    assert installed == read_lock(DEV_LOCK), "run `make venv` (the venv is not the lock)"


def test_the_image_lock_is_the_tested_runtime_closure() -> None:
    dev = read_lock(DEV_LOCK)
    runtime = read_lock(RUNTIME_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime, "the suite runs other versions"
    assert runtime == _runtime_closure(), "stale: run `make lock`"


def test_locks_satisfy_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    for lock, texts in (
        (RUNTIME_LOCK, project["dependencies"]),
        (
            DEV_LOCK,
            [
                *project["dependencies"],
                *extras["test"],
                *extras["dev"],
                *pyproject["build-system"]["requires"],
            ],
        ),
    ):
        pins = read_lock(lock)
        for text in texts:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{name} is required but not in {lock.name}: run `make lock`"
            assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {text}"
    build_and_test = {
        canonicalize_name(Requirement(text).name) for text in [*extras["test"], *extras["dev"]]
    }
    assert not build_and_test & read_lock(RUNTIME_LOCK).keys(), "test tools must not ship"


def _build_context(tmp_path: Path) -> Path:
    """The files the Dockerfile COPYs, laid out as in the build stage's /src."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("requirements.lock", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "operator",
        src / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    return src


def test_image_install_steps_replayed_in_a_fresh_venv(tmp_path: Path) -> None:
    src = _build_context(tmp_path)
    venv = tmp_path / "venv"
    install = str(ROOT / "deploy/docker/install.sh")
    env = {**os.environ, "PYTHON": str(Path(sys.base_prefix) / "bin" / "python3")}
    env.pop("VIRTUAL_ENV", None)
    for step, source in (("deps", src / RUNTIME_LOCK.name), ("app", src)):
        result = subprocess.run(
            [install, step, str(venv), str(source)],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    installed = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "freeze", "--exclude", "cloudsnap"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    frozen = {
        canonicalize_name(name): version
        for name, version in (line.split("==") for line in installed.splitlines())
    }
    assert frozen == read_lock(RUNTIME_LOCK), "the image holds exactly the lock, no more, no less"

    for args in (["--help"], ["run", "--help"]):
        result = subprocess.run(
            [str(venv / "bin/cloudsnap-operator"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "usage" in result.stdout.lower()
