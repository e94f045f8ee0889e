"""Which namespaces may use a class (docs/security.md): checked on every step before the
finalizer and before any EVS call, so a refused resource leaves nothing behind.

Namespace labels come in through the ``NamespaceReader`` protocol, which the operator answers from
a watch cache (``cloudsnap.kube.caches.NamespaceCache``) and the tests from a dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from cloudsnap.controllers.snapshot.external import Connection
from cloudsnap.runtime.failures import CLASS_NOT_ALLOWED, Failure, Kind, LocalFailure


class NamespaceReader(Protocol):
    """Namespaces' labels, as Kubernetes has them."""

    async def get_namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The namespace's labels, or None when there is no such namespace."""
        ...


async def admit(namespaces: NamespaceReader, conn: Connection, namespace: str) -> None:
    """Raise a blocked ClassNotAllowed failure, naming the class and the rule, when the class
    does not admit ``namespace``. Blocked: editing the class or the namespace's labels may admit
    it, and either retries the resource."""
    allowed = conn.class_spec.allowed_namespaces
    if allowed is None:
        return
    labels = None
    if namespace not in allowed.names and allowed.selector is not None:
        labels = await namespaces.get_namespace_labels(namespace)
    if allowed.admits(namespace, labels):
        return
    rule = []
    if allowed.names:
        rule.append(f"names {', '.join(allowed.names)}")
    if allowed.selector is not None:
        rule.append("a namespace selector")
    offered = " or ".join(rule) or "no namespace"
    message = (
        f"CloudSnapshotClass {conn.class_name} does not admit namespace {namespace}:"
        f" its spec.allowedNamespaces admits {offered}"
    )
    raise LocalFailure(Failure(CLASS_NOT_ALLOWED, message, Kind.BLOCKED))
