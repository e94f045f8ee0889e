"""NamespaceCache on the real API server: it answers a namespace's labels, and reports a
namespace as changed only when its labels change (what may admit a refused resource)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hack.cluster import Cluster

from cloudsnap.kube.caches import NamespaceCache
from tests.fixtures.watching import api_client
from tests.waiting import eventually


@pytest.fixture
async def cache(cluster: Cluster) -> AsyncIterator[NamespaceCache]:
    namespaces = NamespaceCache(api_client(cluster))
    namespaces.start()
    yield namespaces
    namespaces.stop()


async def test_labels_are_read_and_only_their_changes_reported(
    cluster: Cluster, namespace: str, cache: NamespaceCache
) -> None:
    await eventually(lambda: cache.synced, timeout=30, what="the first listing")
    changed: list[str] = []
    cache.on_change = changed.append

    cluster.kubectl("label", "namespace", namespace, "team=a")

    async def labelled() -> bool:
        return (await cache.get_namespace_labels(namespace) or {}).get("team") == "a"

    await eventually(labelled, timeout=30, what="the new label in the cache")
    assert ours(changed, namespace) == [namespace]

    # An annotation leaves the labels as they were: no report. Events come in order, so once the
    # label set after it is in the cache, the annotation's event has been seen and passed over.
    cluster.kubectl("annotate", "namespace", namespace, "note=x")
    cluster.kubectl("label", "namespace", namespace, "tier=prod")

    async def relabelled() -> bool:
        return (await cache.get_namespace_labels(namespace) or {}).get("tier") == "prod"

    await eventually(relabelled, timeout=30, what="the second label in the cache")
    assert ours(changed, namespace) == [namespace, namespace]
    assert await cache.get_namespace_labels("no-such-namespace") is None

    # Namespaces that come and go are no change to report: nothing refused can be in them yet,
    # and a cluster makes and removes them all day (each report retries every blocked resource).
    other = f"{namespace}-x"
    cluster.kubectl("create", "namespace", other)
    try:

        async def seen() -> bool:
            return await cache.get_namespace_labels(other) is not None

        await eventually(seen, timeout=30, what="the new namespace in the cache")
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false")
    assert ours(changed, other) == []


def ours(changed: list[str], namespace: str) -> list[str]:
    """The reports of this test's namespace (others' come and go meanwhile)."""
    return [name for name in changed if name == namespace]
