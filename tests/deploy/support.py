"""Helpers shared by tests/deploy: paths, the deploy/ scripts as modules, `helm template` parsed."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from hack.cluster import tool_env
from hack.tools.install import tools_bin

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "cloudsnap-operator"
HELM = tools_bin() / "helm"
DATA = Path(__file__).parent / "data"


def load_data(name: str) -> Any:
    """A test-case table of data/ (YAML), as parsed."""
    return yaml.safe_load((DATA / name).read_text())


def load_script(relative: str) -> ModuleType:
    """A deploy/ helper script (not part of any package) imported from its path."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The chart requires image.repository (no registry publishes the image): every rendering and
# install in the tests sets the placeholder deploy/manifests are rendered with.
IMAGE = f"image.repository={load_script('deploy/render_manifests.py').REPOSITORY}"


def helm(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm offline (its kubeconfig does not exist) with a private home."""
    env = tool_env(home / "no-kubeconfig", HELM.parent, home)
    result = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render_chart(home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with the test image and these options, not checked."""
    return helm(home, "template", "rel", str(CHART), "--set", IMAGE, *options, check=False)


def template(home: Path, *sets: str, namespace: str = "cloudsnap-system") -> list[dict[str, Any]]:
    """The chart rendered with `--set` overrides, as a list of objects (empty docs dropped)."""
    args = ["--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    result = render_chart(home, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of `kind` (and `name`)."""
    return [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
