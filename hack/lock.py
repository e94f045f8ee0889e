"""Resolve the two locks every install is made from, and read them back.

- ``requirements.lock``: the runtime closure of pyproject's ``dependencies``, which the image
  installs (``deploy/docker/install.sh``).
- ``requirements-dev.lock``: that closure plus the ``test`` and ``dev`` extras (the test tools,
  the build backend, pip and uv), which ``make venv`` installs. It is resolved with the runtime lock
  as constraints, so what the suite runs is exactly what the image ships.

Both pin every package with the hashes of all its published files (pip checks them on install) and
are universal (one file for every platform and Python from 3.11). A registry's new release changes
nothing until someone runs the refresh on purpose: ``make lock`` re-resolves after pyproject
changes and keeps every pin that still fits; ``make lock-upgrade`` moves every pin to the newest
release pyproject allows. Resolution is uv's (``uv pip compile``), pinned in the dev extra.

Run: ``python -m hack.lock [--upgrade]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = REPO_ROOT / "requirements.lock"
DEV_LOCK = REPO_ROOT / "requirements-dev.lock"
DEV_EXTRAS = ("test", "dev")
OLDEST_PYTHON = "3.11"


def _uv() -> str:
    """The uv of the running environment (the dev venv), else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("uv not found: run `make venv` first (the dev lock installs it)")
    return found


def _compile(output: Path, extras: tuple[str, ...], upgrade: bool) -> None:
    command = [
        _uv(),
        "pip",
        "compile",
        "pyproject.toml",
        *(f"--extra={extra}" for extra in extras),
        *(["--constraints", RUNTIME_LOCK.name] if extras else []),
        "--universal",
        f"--python-version={OLDEST_PYTHON}",
        "--generate-hashes",
        "--custom-compile-command=make lock",
        "--quiet",
        "--output-file",
        output.name,
        *(["--upgrade"] if upgrade else []),
    ]
    subprocess.run(command, cwd=REPO_ROOT, check=True)  # noqa: S603 - argv built here, no shell


def refresh(upgrade: bool) -> None:
    """Re-resolve the runtime lock, then the dev lock constrained by it."""
    _compile(RUNTIME_LOCK, (), upgrade)
    _compile(DEV_LOCK, DEV_EXTRAS, upgrade)


def lock_entries(path: Path) -> list[str]:
    """Each requirement of ``path`` as one line: continuation lines joined, comments dropped."""
    entries: list[str] = []
    continued = False
    for line in path.read_text().splitlines():
        text = "" if line.lstrip().startswith("#") else line.strip()
        if continued:
            entries[-1] += " " + text.removesuffix("\\").strip()
        elif text:
            entries.append(text.removesuffix("\\").strip())
        continued = text.endswith("\\")
    return entries


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> pinned version of each entry of ``path`` that applies here.

    Entries whose environment marker is false on this interpreter and platform (``colorama`` on
    Windows, say) are left out, so the result is what an install from the file holds.
    """
    pins: dict[str, str] = {}
    for entry in lock_entries(path):
        requirement = Requirement(entry.split(" --hash=", 1)[0])
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        (pin,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = pin.version
    return pins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upgrade", action="store_true", help="take the newest releases pyproject allows"
    )
    refresh(parser.parse_args().upgrade)


if __name__ == "__main__":
    main()
