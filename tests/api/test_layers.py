"""Dependencies point one way (docs/architecture.md): checked on the source, import by import.

    __main__ (wiring) -> kube, providers -> controllers -> runtime -> api, evs (and utc)

- ``api`` (the models) and ``evs`` (the HTTP client) know nothing else of the operator.
- ``runtime`` knows no kind: no controller, no cloud, no Kubernetes client; of its modules only
  ``runtime.watch`` imports kopf, the one module of the operator that does.
- A controller depends on the runtime and on interfaces, never on another controller, a provider
  or the Kubernetes adapters; what they share (``controllers.tenancy``) knows none of them;
  ``controllers.schedule.plan`` is pure arithmetic.
- ``providers`` implement the snapshot and restore controllers' ``external`` interfaces and reach
  nothing else of the controllers; ``kube`` implements the runtime's and controllers' protocols
  structurally and imports no controller.

The simulator ships in the same distribution and image as the operator: it adds no dependency
(aiohttp is already there for kopf and the metrics server) and under 100 KiB, and the operator
never imports it, which the first rule below keeps true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "operator"

_UPPER = ("cloudsnap.controllers", "cloudsnap.providers", "cloudsnap.kube", "cloudsnap.__main__")

# package -> modules it must never import (prefix match)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "cloudsnap": ("evs_simulator",),
    "evs_simulator": (*_UPPER, "cloudsnap.runtime", "kopf"),
    "cloudsnap.api": (*_UPPER, "cloudsnap.runtime", "cloudsnap.evs", "kubernetes", "kopf"),
    "cloudsnap.evs": (*_UPPER, "cloudsnap.runtime", "cloudsnap.api", "kubernetes", "kopf"),
    "cloudsnap.runtime": (*_UPPER, "cloudsnap.evs", "kubernetes", "httpx"),
    "cloudsnap.controllers": (
        "cloudsnap.providers",
        "cloudsnap.kube",
        "cloudsnap.evs",
        "cloudsnap.settings",
        "cloudsnap.runtime.watch",
        "kubernetes",
        "kopf",
        "httpx",
    ),
    "cloudsnap.controllers.snapshot": (
        "cloudsnap.controllers.schedule",
        "cloudsnap.controllers.restore",
    ),
    "cloudsnap.controllers.schedule": (
        "cloudsnap.controllers.snapshot",
        "cloudsnap.controllers.restore",
    ),
    "cloudsnap.controllers.restore": (
        "cloudsnap.controllers.snapshot",
        "cloudsnap.controllers.schedule",
    ),
    # The tenancy rules the controllers share know none of them.
    "cloudsnap.controllers.tenancy": (
        "cloudsnap.controllers.snapshot",
        "cloudsnap.controllers.schedule",
        "cloudsnap.controllers.restore",
    ),
    # Schedule arithmetic and retention are pure: nothing of the operator, no I/O.
    "cloudsnap.controllers.schedule.plan": (
        "cloudsnap.api",
        "cloudsnap.runtime",
        "cloudsnap.metrics",
        "cloudsnap.controllers.schedule.controller",
        "cloudsnap.controllers.schedule.store",
        "aiohttp",
    ),
    "cloudsnap.providers": (
        "cloudsnap.kube",
        "cloudsnap.controllers.schedule",
        "cloudsnap.controllers.snapshot.controller",
        "cloudsnap.controllers.snapshot.reconciler",
        "cloudsnap.controllers.snapshot.volumes",
        "cloudsnap.controllers.restore.controller",
        "cloudsnap.controllers.restore.decisions",
        "cloudsnap.controllers.restore.reconciler",
        "cloudsnap.controllers.restore.store",
        "cloudsnap.runtime.watch",
        "kubernetes",
        "kopf",
    ),
    # The client speaks to the Kubernetes API only: no operator machinery, no EVS ...
    "cloudsnap.client": (
        "cloudsnap.controllers",
        "cloudsnap.providers",
        "cloudsnap.kube",
        "cloudsnap.runtime",
        "cloudsnap.evs",
        "cloudsnap.__main__",
        "kopf",
    ),
    "cloudsnap.kube": (
        "cloudsnap.controllers",
        "cloudsnap.providers",
        "cloudsnap.evs",
        "cloudsnap.runtime.watch",
        "kopf",
    ),
}
# ... except `kubectl cloudsnap orphans`, which lists a class's EVS snapshots with the class's own
# credentials through the operator's EVS client: module -> what it may import despite its package.
EXCEPTED: dict[str, tuple[str, ...]] = {"cloudsnap.client.orphans": ("cloudsnap.evs",)}
# The one module allowed to import kopf (and, pinned there, its private modules).
KOPF_GATE = "cloudsnap.runtime.watch"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_of(root: Path, package: str) -> list[Path]:
    base = root.joinpath(*package.split("."))
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def breaches(root: Path, package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module_name(root, path)} imports {name}"
        for path in modules_of(root, package)
        for name in sorted(imports(path))
        if _under(name, forbidden)
        and not _under(name, EXCEPTED.get(module_name(root, path), ()))
        and not name.startswith(module_name(root, path))
    ]


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in packages)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_what_lies_below_it(package: str) -> None:
    assert breaches(SOURCE, package, FORBIDDEN[package]) == []


def test_only_the_watch_module_imports_kopf() -> None:
    importers = {
        module_name(SOURCE, path)
        for path in modules_of(SOURCE, "cloudsnap")
        if any(name == "kopf" or name.startswith("kopf.") for name in imports(path))
    }
    assert importers == {KOPF_GATE}


def test_every_operator_module_falls_under_a_rule() -> None:
    """A new top-level package of the operator is placed in the layers, not left unchecked."""
    ruled = {package.split(".")[1] for package in FORBIDDEN if package.count(".") >= 1}
    packages = {p.name for p in (SOURCE / "cloudsnap").iterdir() if (p / "__init__.py").exists()}
    assert packages <= ruled


def test_a_kube_module_importing_a_controller_is_a_breach(tmp_path: Path) -> None:
    """The check itself fails on the breach it exists for (and ignores a module's own package)."""
    kube = tmp_path / "cloudsnap" / "kube"
    kube.mkdir(parents=True)
    (kube / "store.py").write_text(
        "from cloudsnap.controllers.schedule.store import ScheduleStore\n"
        "from cloudsnap.kube.objects import api_message\n"
    )
    assert breaches(tmp_path, "cloudsnap.kube", FORBIDDEN["cloudsnap.kube"]) == [
        "cloudsnap.kube.store imports cloudsnap.controllers.schedule.store"
    ]


def test_only_the_orphans_module_of_the_client_reaches_evs(tmp_path: Path) -> None:
    """The exception is one module's, not its package's."""
    client = tmp_path / "cloudsnap" / "client"
    client.mkdir(parents=True)
    for name in ("orphans", "plugin"):
        (client / f"{name}.py").write_text("from cloudsnap.evs import EVSClient\n")
    assert breaches(tmp_path, "cloudsnap.client", FORBIDDEN["cloudsnap.client"]) == [
        "cloudsnap.client.plugin imports cloudsnap.evs"
    ]


def test_the_check_sees_each_import_form(tmp_path: Path) -> None:
    """A module reaching across the line in any import form is seen, relative ones ignored."""
    module = tmp_path / "m.py"
    module.write_text("import kopf\nfrom kubernetes.client import X\nfrom . import sibling\n")
    assert imports(module) == {"kopf", "kubernetes.client"}
