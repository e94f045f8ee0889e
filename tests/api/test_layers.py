"""Dependencies point one way (docs/architecture.md): checked on the source, import by import.

The simulator ships in the same distribution and image as the operator: it adds no dependency
(aiohttp is already there for kopf and the metrics server) and under 100 KiB, and the operator
never imports it, which the first rule below keeps true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "operator"

# package -> modules it must never import (prefix match)
FORBIDDEN = {
    "cloudsnap": ("evs_simulator",),
    "evs_simulator": ("cloudsnap.reconcile", "cloudsnap.handlers", "cloudsnap.kube", "kopf"),
    "cloudsnap.api": ("cloudsnap.evs", "cloudsnap.reconcile", "cloudsnap.handlers", "kopf"),
    "cloudsnap.evs": ("cloudsnap.api", "cloudsnap.reconcile", "kubernetes", "kopf"),
    "cloudsnap.reconcile": ("cloudsnap.handlers", "cloudsnap.kube", "kubernetes", "kopf"),
    # Schedule arithmetic and retention are pure: no I/O layer, no other operator layer.
    "cloudsnap.schedule": (
        "cloudsnap.api",
        "cloudsnap.evs",
        "cloudsnap.reconcile",
        "cloudsnap.handlers",
        "cloudsnap.kube",
        "cloudsnap.schedules",
        "kubernetes",
        "kopf",
        "httpx",
        "aiohttp",
    ),
    # The schedule controller reaches Kubernetes only through its ScheduleStore protocol.
    "cloudsnap.schedules": ("cloudsnap.kube", "cloudsnap.evs", "kubernetes", "kopf"),
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_of(package: str) -> list[Path]:
    root = SOURCE.joinpath(*package.split("."))
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_what_lies_below_it(package: str) -> None:
    breaches = [
        f"{path.relative_to(SOURCE)} imports {name}"
        for path in modules_of(package)
        for name in imports(path)
        if any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN[package])
    ]
    assert not breaches


def test_the_check_sees_each_import_form(tmp_path: Path) -> None:
    """A module reaching across the line in any import form is seen, relative ones ignored."""
    module = tmp_path / "m.py"
    module.write_text("import kopf\nfrom kubernetes.client import X\nfrom . import sibling\n")
    assert imports(module) == {"kopf", "kubernetes.client"}
