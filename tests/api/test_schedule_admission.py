"""Admission of CloudSnapshotSchedules against a real kube-apiserver: the CEL rules refuse bad
schedules with the field named, and a good one is stored with its defaults."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.cluster import Cluster

from tests.api.test_admission import API_VERSION, VOLUME_ID, apply, assert_refused, get

pytestmark = pytest.mark.usefixtures("cloudsnap_crds")

NAME = "db-every-6h"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def schedule(**overrides: Any) -> dict[str, Any]:
    """A valid schedule manifest, with top-level spec fields replaced (None removes one)."""
    spec: dict[str, Any] = {
        "schedule": "0 */6 * * *",
        "timeZone": "Europe/Berlin",
        "startingDeadlineSeconds": 3600,
        "jitterSeconds": 120,
        "sources": {
            "volumeIDs": [VOLUME_ID],
            "persistentVolumeClaimSelector": {"matchLabels": {"app": "postgres"}},
        },
        "retention": {"maxCount": 4, "maxAge": "168h", "minReady": 1},
        "snapshotTemplate": {
            "metadata": {"labels": {"team": "db"}},
            "spec": {"force": True, "metadata": {"team": "db"}, "description": "every 6 h"},
        },
    }
    for key, value in overrides.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return {
        "apiVersion": API_VERSION,
        "kind": "CloudSnapshotSchedule",
        "metadata": {"name": NAME},
        "spec": spec,
    }


def retention(**fields: Any) -> dict[str, Any]:
    return {"maxCount": 4, **fields}


INVALID = {
    "six-cron-fields": (schedule(schedule="0 0 */6 * * *"), ["spec.schedule", "five cron"]),
    "unknown-macro": (schedule(schedule="@every 1h"), ["spec.schedule", "five cron"]),
    "empty-time-zone": (schedule(timeZone=""), ["spec.timeZone"]),
    "no-source": (schedule(sources={}), ["spec.sources", "volumeIDs or persistent"]),
    "empty-volume-list": (schedule(sources={"volumeIDs": []}), ["volumeIDs or persistent"]),
    "bad-volume-id": (schedule(sources={"volumeIDs": ["vol-1"]}), ["spec.sources.volumeIDs"]),
    "upper-case-volume-id": (
        schedule(sources={"volumeIDs": [VOLUME_ID.upper()]}),
        ["spec.sources.volumeIDs", "should match"],
    ),
    "empty-selector": (
        schedule(sources={"persistentVolumeClaimSelector": {}}),
        ["spec.sources.persistentVolumeClaimSelector", "matchLabels or matchExpressions"],
    ),
    "in-without-values": (
        schedule(
            sources={
                "persistentVolumeClaimSelector": {
                    "matchExpressions": [{"key": "app", "operator": "In"}]
                }
            }
        ),
        ["matchExpressions", "need values"],
    ),
    "max-count-zero": (schedule(retention=retention(maxCount=0)), ["spec.retention.maxCount"]),
    "max-count-eight": (schedule(retention=retention(maxCount=8)), ["spec.retention.maxCount"]),
    "min-ready-above-max-count": (
        schedule(retention=retention(maxCount=2, minReady=3)),
        ["spec.retention.minReady", "must not exceed maxCount"],
    ),
    "days-are-no-duration": (
        schedule(retention=retention(maxAge="7d")),
        ["spec.retention.maxAge", "positive duration"],
    ),
    "zero-duration": (
        schedule(retention=retention(maxAge="0h")),
        ["spec.retention.maxAge", "positive duration"],
    ),
    "empty-duration": (
        schedule(retention=retention(maxAge="")),
        ["spec.retention.maxAge", "positive duration"],
    ),
    "jitter-beyond-deadline": (
        schedule(jitterSeconds=600, startingDeadlineSeconds=300),
        ["spec.jitterSeconds", "less than startingDeadlineSeconds"],
    ),
    "reserved-child-label": (
        schedule(snapshotTemplate={"metadata": {"labels": {"evs.cloudsnap.io/source": "x"}}}),
        ["spec.snapshotTemplate.metadata.labels", "set by the operator"],
    ),
    "template-metadata-system-key": (
        schedule(snapshotTemplate={"spec": {"metadata": {"__system__encrypted": "1"}}}),
        ["spec.snapshotTemplate.spec.metadata", "__system__"],
    ),
}


@pytest.mark.parametrize(("manifest", "fragments"), INVALID.values(), ids=INVALID.keys())
def test_invalid_schedule_is_refused(
    cluster: Cluster, namespace: str, manifest: dict[str, Any], fragments: list[str]
) -> None:
    assert_refused(apply(cluster, manifest, namespace), *fragments)


def test_valid_schedule_is_stored_with_defaults(cluster: Cluster, namespace: str) -> None:
    manifest = schedule(timeZone=None, jitterSeconds=None, startingDeadlineSeconds=None)
    manifest["spec"]["retention"] = {"maxCount": 3, "maxAge": "1h30m"}
    result = apply(cluster, manifest, namespace)
    assert result.returncode == 0, result.stderr
    spec = get(cluster, namespace, "csnapsched", NAME)["spec"]
    assert spec["timeZone"] == "UTC"
    assert spec["suspend"] is False
    assert spec["jitterSeconds"] == 0
    assert spec["retention"] == {"maxCount": 3, "maxAge": "1h30m", "minReady": 1}
    assert spec["deleteChildrenOnDelete"] is False


@pytest.mark.parametrize(
    "cron", ["@hourly", "@weekly", "*/15 9-17 * JAN-MAR mon-fri", "0 0 29 2 *", "5,35 * 1 * 0"]
)
def test_cron_shapes_are_accepted(cluster: Cluster, namespace: str, cron: str) -> None:
    manifest = copy.deepcopy(schedule(schedule=cron))
    result = apply(cluster, manifest, namespace)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("cloudsnapshotschedule*.yaml")))
def test_examples_are_accepted(cluster: Cluster, namespace: str, path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    del manifest["metadata"]["namespace"]  # into the test's own
    result = apply(cluster, manifest, namespace)
    assert result.returncode == 0, result.stderr


def test_columns_and_category(cluster: Cluster, namespace: str) -> None:
    assert apply(cluster, schedule(), namespace).returncode == 0
    table = cluster.kubectl("get", "csnapsched", "--namespace", namespace).stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "SCHEDULE", "SUSPEND", "LAST", "NEXT", "SOURCES"]
    listed = cluster.kubectl("get", "cloudsnap", "--namespace", namespace, "-o", "name").stdout
    assert f"cloudsnapshotschedule.evs.cloudsnap.io/{NAME}" in listed.splitlines()
