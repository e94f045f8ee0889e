"""Render requirements.lock: the exact versions of the runtime dependency closure.

The image installs from this file, so what ships is what the test suite ran against. The closure is
read from the installed distribution metadata of the environment running this script (the project
venv), starting from the runtime requirements of the ``cloudsnap`` distribution; test extras are not
followed. Usage: ``python deploy/docker/lockfile.py > requirements.lock``.
"""

from __future__ import annotations

from importlib.metadata import distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = (
    "# Exact runtime dependency closure of cloudsnap, installed by the Dockerfile.\n"
    "# Rendered by `make lock` (deploy/docker/lockfile.py) from the project venv; do not edit.\n"
)


def _applies(requirement: Requirement) -> bool:
    # Only what a plain install (no extras) pulls in on this platform and interpreter.
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def runtime_closure(root: str = "cloudsnap") -> dict[str, str]:
    """Canonical name -> installed version of every runtime dependency of ``root``, transitively."""
    pending = [Requirement(text) for text in distribution(root).requires or []]
    pinned: dict[str, str] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if not _applies(requirement) or name in pinned:
            continue
        dist = distribution(requirement.name)
        pinned[name] = dist.version
        pending.extend(Requirement(text) for text in dist.requires or [])
    return pinned


def render() -> str:
    """The lock file's full text, deterministic (sorted by name)."""
    closure = runtime_closure()
    return HEADER + "".join(f"{name}=={closure[name]}\n" for name in sorted(closure))


if __name__ == "__main__":
    print(render(), end="")
