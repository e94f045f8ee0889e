"""Readers of a resource's body as the API server serves it (a JSON dict): its identity, its key
and its conditions, for the controllers and the Kubernetes adapters alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def uid_of(body: Mapping[str, Any]) -> str:
    """The object's UID ("" before the API server gave it one)."""
    return str(body.get("metadata", {}).get("uid", ""))


def version_of(body: Mapping[str, Any]) -> str:
    """The object's resourceVersion, opaque text ("" when absent)."""
    return str(body.get("metadata", {}).get("resourceVersion", ""))


def namespace_and_name(body: Mapping[str, Any]) -> tuple[str, str]:
    """The object's namespace and name ("" where absent)."""
    meta = body.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def object_key(body: Mapping[str, Any]) -> str:
    """ "namespace/name": how a namespaced object is named in keys, caches and log lines."""
    return "/".join(namespace_and_name(body))


def condition_in(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind``, or an empty dict where there is none yet."""
    conditions = (body.get("status") or {}).get("conditions") or ()
    return next((dict(c) for c in conditions if c.get("type") == kind), {})


@dataclass(frozen=True)
class Owner:
    """The resource an EVS snapshot or disk is made for: the provider tags what it makes with
    it (docs/ownership.md)."""

    uid: str
    namespace: str
    name: str
