"""The control plane runs kube-controller-manager: claims bind, garbage is collected by
ownerReference, and deleted namespaces go away, as in any real cluster.

Without it a PersistentVolumeClaim stays Pending whatever volume it names, an object whose owner
is deleted lives on, and a deleted namespace stays Terminating; each test below fails that way.
"""

from __future__ import annotations

import json
from typing import Any

from hack.cluster import Cluster

from tests.controlplane.widgets import widget
from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.waiting import eventually

# The garbage collector finds the kinds of CRDs installed after it started on its periodic
# discovery (every 30 s), so a custom-resource child may wait that long before it is collected.
GC_DISCOVERY_SECONDS = 30.0
NAMESPACE_DELETION_SECONDS = 60.0
BINDING_SECONDS = 30.0


def apply(cluster: Cluster, *manifests: dict[str, Any]) -> None:
    """`kubectl apply` the manifests as one list."""
    cluster.kubectl("apply", "-f", "-", input=manifest_list(*manifests))


def exists(cluster: Cluster, *args: str) -> bool:
    """Whether `kubectl get ARGS` finds the object."""
    return bool(cluster.kubectl("get", *args, "-o", "name", "--ignore-not-found").stdout.strip())


def config_map(namespace: str, name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ConfigMap manifest, owned by `owner` (a stored object) when given."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


async def test_objects_whose_owner_is_deleted_are_collected(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    apply(cluster, config_map(namespace, "owner"), config_map(namespace, "bystander"))
    owner = json.loads(cluster.kubectl("get", "cm", "owner", "-n", namespace, "-o", "json").stdout)
    child_widget = json.loads(widget(namespace, "child", 1))
    child_widget["metadata"]["ownerReferences"] = config_map(namespace, "", owner)["metadata"][
        "ownerReferences"
    ]
    apply(cluster, config_map(namespace, "child", owner), child_widget)

    cluster.kubectl("delete", "cm", "owner", "-n", namespace)

    await eventually(
        lambda: not exists(cluster, "cm", "child", "-n", namespace),
        timeout=GC_DISCOVERY_SECONDS,
        what="the owned ConfigMap to be collected",
    )
    await eventually(
        lambda: not exists(cluster, "widget", "child", "-n", namespace),
        timeout=2 * GC_DISCOVERY_SECONDS,
        what="the owned Widget (a custom resource) to be collected",
    )
    assert exists(cluster, "cm", "bystander", "-n", namespace)


async def test_a_deleted_namespace_goes_away_with_its_content(
    cluster: Cluster, widget_crd: str
) -> None:
    name = "doomed-namespace"
    cluster.kubectl("create", "namespace", name)
    apply(cluster, config_map(name, "settings"), json.loads(widget(name, "w", 1)))

    cluster.kubectl("delete", "namespace", name, "--wait=false")

    await eventually(
        lambda: not exists(cluster, "namespace", name),
        timeout=NAMESPACE_DELETION_SECONDS,
        what=f"namespace {name} to be gone, not Terminating",
    )


async def test_a_claim_binds_to_the_volume_it_names_and_is_released_on_delete(
    cluster: Cluster, namespace: str
) -> None:
    volume = f"pv-{namespace}"
    apply(cluster, everest_volume(volume, "disk-1"), volume_claim(namespace, "data", volume))
    try:

        def phase(*args: str) -> str:
            return cluster.kubectl("get", *args, "-o", "jsonpath={.status.phase}").stdout

        await eventually(
            lambda: phase("pvc", "data", "-n", namespace) == "Bound",
            timeout=BINDING_SECONDS,
            what="the claim to be bound by the PV binder",
        )
        claim_ref = json.loads(
            cluster.kubectl("get", "pv", volume, "-o", "jsonpath={.spec.claimRef}").stdout
        )
        assert (claim_ref["namespace"], claim_ref["name"]) == (namespace, "data")
        assert phase("pv", volume) == "Bound"

        # The protection finalizer is lifted by its controller: the claim does not stay
        # Terminating, and its Retain volume is Released.
        cluster.kubectl("delete", "pvc", "data", "-n", namespace, "--wait=false")
        await eventually(
            lambda: not exists(cluster, "pvc", "data", "-n", namespace),
            timeout=BINDING_SECONDS,
            what="the deleted claim to be gone",
        )
        await eventually(
            lambda: phase("pv", volume) == "Released",
            timeout=BINDING_SECONDS,
            what="the volume to be Released",
        )
    finally:
        cluster.kubectl("delete", "pv", volume, "--wait=false", "--ignore-not-found")
