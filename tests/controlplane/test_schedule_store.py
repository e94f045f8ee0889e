"""The schedule step's Kubernetes reads and writes (kube.schedule_store) against the real API
server: what it answers for a slot's child made twice, a refused child, a child made with an
ownerReference by an earlier version, a room mark, and a deletion by UID."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
from hack.cluster import Cluster

from cloudsnap.api.constants import ROOM_ANNOTATION, SCHEDULE_LABEL, SCHEDULE_UID_LABEL
from cloudsnap.kube.schedule_store import KubeScheduleStore
from cloudsnap.runtime.writes import Refused
from tests.fixtures.watching import api_client

pytestmark = pytest.mark.usefixtures("cloudsnap_crds")
VOLUME = "5aa119a8-d25b-45a7-8d1b-88e127885635"


@pytest.fixture
def client(cluster: Cluster) -> kubernetes.client.ApiClient:
    return api_client(cluster)


@pytest.fixture
async def store(client: kubernetes.client.ApiClient) -> AsyncIterator[KubeScheduleStore]:
    kube_store = KubeScheduleStore(client)
    yield kube_store
    kube_store.close()


def child(namespace: str, name: str = "db-slot-1000", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshot",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SCHEDULE_LABEL: "db", SCHEDULE_UID_LABEL: "sched-uid", **labels},
            "annotations": {"evs.cloudsnap.io/slot": "2026-06-01T10:00:00Z"},
        },
        "spec": {"volumeID": VOLUME},
    }


async def test_a_slot_child_made_twice_is_the_one_already_stored(
    store: KubeScheduleStore, namespace: str
) -> None:
    """The API server answers AlreadyExists for the second create: the store reads and returns
    the stored child, which the schedule then recognises as its own."""
    first = await store.create_snapshot(namespace, child(namespace))
    again = await store.create_snapshot(namespace, child(namespace))
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["metadata"]["labels"][SCHEDULE_UID_LABEL] == "sched-uid"
    listed = await store.list_snapshots(namespace)
    assert [s["metadata"]["name"] for s in listed] == ["db-slot-1000"]


async def test_a_child_the_api_server_refuses_says_why(
    store: KubeScheduleStore, namespace: str
) -> None:
    bad = child(namespace, team="not a label value!")
    with pytest.raises(Refused, match="422") as refused:
        await store.create_snapshot(namespace, bad)
    assert "not a label value!" in str(refused.value)


async def test_detach_moves_an_owner_reference_to_the_uid_label(
    store: KubeScheduleStore, namespace: str, client: kubernetes.client.ApiClient
) -> None:
    """The schedule exists, so the garbage collector leaves the reference alone meanwhile."""
    owner = kubernetes.client.CoreV1Api(client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "stand-in-owner"}}
    )
    schedule = kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
        "evs.cloudsnap.io",
        "v1alpha1",
        namespace,
        "cloudsnapshotschedules",
        {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshotSchedule",
            "metadata": {"name": "db"},
            "spec": {
                "schedule": "@daily",
                "sources": {"volumeIDs": [VOLUME]},
                "retention": {"maxCount": 2},
            },
        },
    )
    schedule_uid = schedule["metadata"]["uid"]
    legacy = child(namespace)
    del legacy["metadata"]["labels"][SCHEDULE_UID_LABEL]
    legacy["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "stand-in-owner",
            "uid": owner.metadata.uid,
        },
        {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshotSchedule",
            "name": "db",
            "uid": schedule_uid,
            "controller": True,
        },
    ]
    made = await store.create_snapshot(namespace, legacy)
    await store.detach_snapshot(namespace, "db-slot-1000", made["metadata"]["uid"], schedule_uid)
    [stored] = await store.list_snapshots(namespace)
    assert stored["metadata"]["labels"][SCHEDULE_UID_LABEL] == schedule_uid
    assert [r["uid"] for r in stored["metadata"]["ownerReferences"]] == [owner.metadata.uid]


async def test_a_room_mark_is_one_annotation_of_the_child_of_that_uid(
    store: KubeScheduleStore, namespace: str
) -> None:
    made = await store.create_snapshot(namespace, child(namespace))
    mark = json.dumps({"uid": "u", "name": "n", "at": "2026-06-01T10:00:00Z"})
    await store.annotate_snapshot(
        namespace, "db-slot-1000", made["metadata"]["uid"], ROOM_ANNOTATION, mark
    )
    await store.annotate_snapshot(namespace, "db-slot-1000", "another-uid", ROOM_ANNOTATION, "x")
    [stored] = await store.list_snapshots(namespace)
    assert stored["metadata"]["annotations"][ROOM_ANNOTATION] == mark
    assert stored["metadata"]["annotations"]["evs.cloudsnap.io/slot"] == "2026-06-01T10:00:00Z"


async def test_a_deletion_names_the_uid_it_means(store: KubeScheduleStore, namespace: str) -> None:
    made = await store.create_snapshot(namespace, copy.deepcopy(child(namespace)))
    await store.delete_snapshot(namespace, "db-slot-1000", "a-previous-uid")
    assert len(await store.list_snapshots(namespace)) == 1
    await store.delete_snapshot(namespace, "db-slot-1000", made["metadata"]["uid"])
    assert await store.list_snapshots(namespace) == []
