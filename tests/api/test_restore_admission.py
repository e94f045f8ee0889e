"""Admission of CloudSnapshotRestores against a real kube-apiserver: the CEL rules refuse a
restore without exactly one source, a class without a snapshot ID and a changed target, and a good
one is stored with its defaults (its `kubectl explain` and its example are checked with the other
kinds' in test_admission.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hack.cluster import Cluster

from tests.api.test_admission import API_VERSION, apply, assert_refused, get

pytestmark = pytest.mark.usefixtures("cloudsnap_crds")

NAME = "db-restore"
SNAPSHOT_ID = "7b1e3c2a-5d4f-4e6a-9b8c-0d1e2f3a4b5c"


def restore(**spec: Any) -> dict[str, Any]:
    """A restore manifest with these spec fields (None leaves one out)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "CloudSnapshotRestore",
        "metadata": {"name": NAME},
        "spec": {key: value for key, value in spec.items() if value is not None},
    }


INVALID = {
    "no-source": (restore(newVolume={}), ["exactly one of spec.snapshotName and spec.snapshotID"]),
    "two-sources": (
        restore(snapshotName="db", snapshotID=SNAPSHOT_ID, newVolume={}),
        ["exactly one of spec.snapshotName and spec.snapshotID"],
    ),
    "class-with-snapshot-name": (
        restore(snapshotName="db", className="default", newVolume={}),
        ["spec.className", "goes with spec.snapshotID"],
    ),
    "no-target": (restore(snapshotName="db"), ["exactly one of spec.newVolume and spec.rollback"]),
    "two-targets": (
        restore(snapshotName="db", newVolume={}, rollback={}),
        ["exactly one of spec.newVolume and spec.rollback"],
    ),
    "upper-case-id": (
        restore(snapshotID=SNAPSHOT_ID.upper(), newVolume={}),
        ["spec.snapshotID", "should match"],
    ),
    "zero-size": (restore(snapshotName="db", newVolume={"size": 0}), ["spec.newVolume.size"]),
    "reserved-metadata": (
        restore(snapshotName="db", newVolume={"metadata": {"cloudsnap.io/owner-uid": "x"}}),
        ["spec.newVolume.metadata", "cloudsnap.io/"],
    ),
    "bad-claim-name": (
        restore(snapshotName="db", newVolume={"claim": {"name": "Data_1"}}),
        ["spec.newVolume.claim.name"],
    ),
    "bad-policy": (
        restore(snapshotName="db", newVolume={}, deletionPolicy="Keep"),
        ["spec.deletionPolicy"],
    ),
}


@pytest.mark.parametrize(("manifest", "fragments"), INVALID.values(), ids=INVALID.keys())
def test_invalid_restore_is_refused(
    cluster: Cluster, namespace: str, manifest: dict[str, Any], fragments: list[str]
) -> None:
    assert_refused(apply(cluster, manifest, namespace), *fragments)


def test_valid_restore_is_stored_with_defaults_and_its_target_is_fixed(
    cluster: Cluster, namespace: str
) -> None:
    manifest = restore(snapshotName="db", newVolume={"claim": {"name": "data"}})
    result = apply(cluster, manifest, namespace)
    assert result.returncode == 0, result.stderr
    spec = get(cluster, namespace, "csnaprestore", NAME)["spec"]
    assert spec["deletionPolicy"] == "Retain"
    assert spec["newVolume"]["claim"] == {
        "name": "data",
        "storageClassName": "",
        "accessModes": ["ReadWriteOnce"],
    }
    changed = restore(snapshotName="db", newVolume={"size": 20, "claim": {"name": "data"}})
    assert_refused(apply(cluster, changed, namespace), "spec.newVolume", "immutable")
    other_source = restore(snapshotName="other", newVolume={"claim": {"name": "data"}})
    assert_refused(apply(cluster, other_source, namespace), "spec.snapshotName", "immutable")
    to_rollback = restore(snapshotName="db", rollback={})
    assert_refused(apply(cluster, to_rollback, namespace), "spec.newVolume", "immutable")
    deleting = restore(snapshotName="db", newVolume={"claim": {"name": "data"}})
    deleting["spec"]["deletionPolicy"] = "Delete"
    result = apply(cluster, deleting, namespace)
    assert result.returncode == 0, result.stderr
