"""The chart's ValidatingAdmissionPolicies on the real API server: a CloudSnapshot or schedule a
class's allowedNamespaces, volumeIDs or adoption would refuse is refused at `kubectl apply`, with
the rule named; what the class allows, and the operator's own later writes, go through.

No operator runs: what is checked is what the API server admits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hack.cluster import Cluster

from tests.deploy.support import CHART, IMAGE
from tests.waiting import eventually

DISK = "0b7a2f5e-5f7e-4a43-9d3c-6a1e6c2d9f10"
SNAPSHOT = "6f1d2c3b-8a9e-4b7c-9d0e-1f2a3b4c5d6e"


@pytest.fixture(scope="module")
def policies(cluster: Cluster, cloudsnap_crds: object) -> Iterator[str]:
    """The chart installed (its policies with it) in a namespace of its own; its name."""
    namespace = f"adm-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    release = f"a{uuid.uuid4().hex[:8]}"
    cluster.helm(
        "install", release, str(CHART), "--namespace", namespace, "--skip-crds", "--set", IMAGE
    )
    yield namespace
    cluster.helm("uninstall", release, "--namespace", namespace)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


@pytest.fixture
def make_class(cluster: Cluster, policies: str) -> Iterator[Any]:
    """Create a named (never default) class with these extra spec fields; deleted afterwards."""
    made: list[str] = []

    def make(**spec: Any) -> str:
        name = f"adm-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshotClass",
            "metadata": {"name": name},
            "spec": {
                "region": "cn-north-4",
                "projectID": "p1",
                "credentialsSecretRef": {"name": "evs"},
                **spec,
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.kubectl("delete", "cloudsnapshotclass", name, "--ignore-not-found")


@pytest.fixture
def labelled(cluster: Cluster, namespace: str) -> str:
    """The test's namespace, labelled as a tenant of team a."""
    cluster.kubectl("label", "namespace", namespace, "team=a")
    return namespace


def apply(cluster: Cluster, namespace: str, kind: str, spec: dict[str, Any]) -> tuple[bool, str]:
    """Whether the API server admitted the object, and its answer."""
    body = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": f"o{uuid.uuid4().hex[:8]}", "namespace": namespace},
        "spec": spec,
    }
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    return result.returncode == 0, result.stdout + result.stderr


async def refused(cluster: Cluster, namespace: str, kind: str, spec: dict[str, Any]) -> str:
    """Wait for the refusal (a new policy or class takes the API server a moment); its message."""

    def answer() -> str | None:
        admitted, output = apply(cluster, namespace, kind, spec)
        if admitted:
            return None
        assert "ValidatingAdmissionPolicy" in output, output  # not refused for another reason
        return output

    return str(await eventually(answer, timeout=30, what=f"{kind} {spec} refused"))


def schedule(class_name: str, **sources: Any) -> dict[str, Any]:
    return {
        "schedule": "@daily",
        "sources": sources,
        "retention": {"maxCount": 3},
        "snapshotTemplate": {"spec": {"className": class_name}},
    }


async def test_a_class_not_offered_to_the_namespace_is_refused_at_admission(
    cluster: Cluster, make_class: Any, labelled: str
) -> None:
    closed = make_class(allowedNamespaces={"names": ["elsewhere"]})
    message = await refused(
        cluster, labelled, "CloudSnapshot", {"className": closed, "volumeID": DISK}
    )
    assert f"CloudSnapshotClass {closed} does not admit namespace {labelled}" in message
    assert "ClassNotAllowed" in message
    message = await refused(
        cluster, labelled, "CloudSnapshotSchedule", schedule(closed, volumeIDs=[DISK])
    )
    assert f"does not admit namespace {labelled}" in message

    # Admitted by label (matchLabels and an expression), and by name: each class refuses raw IDs
    # too, so its refusal for that rule alone shows the class is in force and admits us.
    for rule in (
        {"selector": {"matchLabels": {"team": "a"}}},
        {"selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}},
        {"names": [labelled]},
    ):
        open_to_us = make_class(allowedNamespaces=rule, volumeIDs="Denied")
        message = await refused(
            cluster, labelled, "CloudSnapshot", {"className": open_to_us, "volumeID": DISK}
        )
        assert "allows no raw volume IDs" in message, rule
        assert "does not admit" not in message, rule
    refusing = make_class(
        allowedNamespaces={
            "selector": {
                "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]
            }
        }
    )
    await refused(cluster, labelled, "CloudSnapshot", {"className": refusing, "volumeID": DISK})


async def test_sources_the_class_does_not_allow_are_refused_at_admission(
    cluster: Cluster, make_class: Any, namespace: str
) -> None:
    claims_only = make_class(volumeIDs="Denied", adoption="Denied")
    message = await refused(
        cluster, namespace, "CloudSnapshot", {"className": claims_only, "volumeID": DISK}
    )
    assert f"CloudSnapshotClass {claims_only} allows no raw volume IDs" in message
    message = await refused(
        cluster, namespace, "CloudSnapshotSchedule", schedule(claims_only, volumeIDs=[DISK])
    )
    assert "allows no raw volume IDs" in message
    message = await refused(
        cluster, namespace, "CloudSnapshot", {"className": claims_only, "snapshotID": SNAPSHOT}
    )
    assert "allows no adoption" in message
    admitted, output = apply(
        cluster,
        namespace,
        "CloudSnapshot",
        {"className": claims_only, "persistentVolumeClaimName": "data"},
    )
    assert admitted, output

    keep_only = make_class(adoption="Retain")
    message = await refused(
        cluster,
        namespace,
        "CloudSnapshot",
        {"className": keep_only, "snapshotID": SNAPSHOT, "deletionPolicy": "Delete"},
    )
    assert "lets adopted snapshots be kept only" in message
    admitted, output = apply(
        cluster, namespace, "CloudSnapshot", {"className": keep_only, "snapshotID": SNAPSHOT}
    )
    assert admitted, output


async def test_objects_made_before_a_class_was_narrowed_can_still_be_written(
    cluster: Cluster, make_class: Any, namespace: str
) -> None:
    """The operator's finalizer writes (and a user's label) on an existing object pass; only a
    new request for deletion power on an adopted snapshot is refused."""
    name = make_class()
    body = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshot",
        "metadata": {"name": "kept", "namespace": namespace},
        "spec": {"className": name, "snapshotID": SNAPSHOT},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    narrowed = {"allowedNamespaces": {"names": ["elsewhere"]}, "adoption": "Retain"}
    cluster.kubectl(
        "patch", "cloudsnapshotclass", name, "--type=merge", "-p", json.dumps({"spec": narrowed})
    )
    await refused(cluster, namespace, "CloudSnapshot", {"className": name, "volumeID": DISK})

    finalizer = {"metadata": {"finalizers": ["evs.cloudsnap.io/snapshot-protection"]}}
    for patch in (finalizer, {"metadata": {"finalizers": None}}):
        cluster.kubectl(
            "patch",
            "cloudsnapshot",
            "kept",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
    delete_power = {"spec": {"deletionPolicy": "Delete"}}
    result = cluster.kubectl(
        "patch", "cloudsnapshot", "kept", "-n", namespace, "--type=merge",
        "-p", json.dumps(delete_power), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "lets adopted snapshots be kept only" in result.stderr


async def test_restores_by_snapshot_id_follow_their_class_at_admission(
    cluster: Cluster, make_class: Any, labelled: str
) -> None:
    """A restore by spec.snapshotID names its class (or the default): the class must admit the
    namespace and allow raw IDs. A restore of a CloudSnapshot uses the class recorded in its
    status, which a policy cannot read: it passes, and the operator checks it."""
    closed = make_class(allowedNamespaces={"names": ["elsewhere"]})
    by_id = {"className": closed, "snapshotID": SNAPSHOT, "newVolume": {}}
    message = await refused(cluster, labelled, "CloudSnapshotRestore", by_id)
    assert f"CloudSnapshotClass {closed} does not admit namespace {labelled}" in message
    assert "ClassNotAllowed" in message
    admitted, output = apply(
        cluster, labelled, "CloudSnapshotRestore", {"snapshotName": "db", "newVolume": {}}
    )
    assert admitted, output

    ids_denied = make_class(
        allowedNamespaces={"selector": {"matchLabels": {"team": "a"}}}, volumeIDs="Denied"
    )
    for target in ({"newVolume": {}}, {"rollback": {}}):
        spec = {"className": ids_denied, "snapshotID": SNAPSHOT, **target}
        message = await refused(cluster, labelled, "CloudSnapshotRestore", spec)
        assert f"CloudSnapshotClass {ids_denied} allows no raw IDs" in message, target
        assert "SourceNotAllowed" in message
        assert "does not admit" not in message, "admitted by its label"

    ours = make_class(allowedNamespaces={"names": [labelled]})
    admitted, output = apply(
        cluster,
        labelled,
        "CloudSnapshotRestore",
        {"className": ours, "snapshotID": SNAPSHOT, "newVolume": {}},
    )
    assert admitted, output
