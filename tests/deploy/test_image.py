"""The container image without a Docker engine: lint, pins, and a replay of its install steps."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import ROOT, load_script

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
VALUES = ROOT / "deploy/helm/cloudsnap-operator/values.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


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


def test_lock_is_current() -> None:
    assert LOCK.read_text() == load_script("deploy/docker/lockfile.py").render(), (
        "stale: run `make lock`"
    )


def test_lock_satisfies_every_runtime_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a runtime dependency but not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {text}"
    test_only = {
        canonicalize_name(Requirement(t).name) for t in project["optional-dependencies"]["test"]
    }
    assert not test_only & pins.keys(), "test tools must not ship in the image"


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
    for step, source in (("deps", src / "requirements.lock"), ("app", src)):
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
    assert frozen == _locked(), "the image holds exactly the lock, nothing more or less"

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
