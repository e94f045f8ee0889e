"""Admission against a real kube-apiserver: the CRD schema and its CEL rules refuse bad manifests
with a message naming the field, and accept good ones, exactly as `kubectl apply` shows a user; the
examples are admitted and `kubectl explain` shows each kind's field descriptions."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.cluster import Cluster

VOLUME_ID = "5aa119a8-d25b-45a7-8d1b-88e127885635"
OTHER_VOLUME_ID = "7b1c0e8e-3f0a-4d59-9a49-1f6f3c3b5f21"
SNAPSHOT_ID = "ffa9bc5e-1172-4021-acaf-cdcd78a9584d"
OTHER_SNAPSHOT_ID = "0b7e2f64-94a3-4c43-9d47-5c0bde5b1a10"
API_VERSION = "evs.cloudsnap.io/v1alpha1"
NAME = "db-daily"
CLAIM = "postgres-data"
SOURCE_REQUIRED = (
    "one of spec.volumeID, spec.persistentVolumeClaimName or spec.snapshotID is required"
)
ONE_SOURCE_ONLY = (
    "only one of spec.volumeID, spec.persistentVolumeClaimName and spec.snapshotID may be set"
)

pytestmark = pytest.mark.usefixtures("cloudsnap_crds")


def snapshot(**spec: Any) -> dict[str, Any]:
    """A CloudSnapshot manifest named NAME with the given spec."""
    return {
        "apiVersion": API_VERSION,
        "kind": "CloudSnapshot",
        "metadata": {"name": NAME},
        "spec": spec,
    }


def snapshot_class(name: str, **spec: Any) -> dict[str, Any]:
    """A CloudSnapshotClass manifest; the required fields filled in unless overridden."""
    body = {
        "region": "cn-north-4",
        "projectID": "0123456789abcdef0123456789abcdef",
        "credentialsSecretRef": {"name": "evs-credentials"},
        **spec,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "CloudSnapshotClass",
        "metadata": {"name": name},
        "spec": {key: value for key, value in body.items() if value is not None},
    }


def apply(
    cluster: Cluster, manifest: dict[str, Any], namespace: str | None = None, *flags: str
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` the manifest as a user would; the caller checks the outcome."""
    where = ["--namespace", namespace] if namespace else []
    return cluster.kubectl(
        "apply",
        *where,
        *flags,
        "-f",
        "-",
        input=yaml.safe_dump(manifest, allow_unicode=True),
        check=False,
    )


def get(cluster: Cluster, namespace: str | None, *resource: str) -> dict[str, Any]:
    """The stored object, as JSON."""
    where = ["--namespace", namespace] if namespace else []
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", *where, *resource, "-o", "json").stdout
    )
    return result


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """kubectl failed and its message holds every fragment (the field path, the reason)."""
    assert result.returncode != 0, f"accepted, expected refusal:\n{result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


# A 2-byte character 128 times: 256 bytes in UTF-8 but only 128 characters, so only the byte
# rule (not maxLength) can refuse it.
TWO_BYTE_256 = "é" * 128


INVALID_ON_CREATE = {
    "bad-uuid-volume-id": (
        snapshot(volumeID="vol-1234"),
        ["spec.volumeID", "should match"],
    ),
    "bad-uuid-snapshot-id": (
        snapshot(snapshotID="ffa9bc5e-1172-4021-acaf"),
        ["spec.snapshotID", "should match"],
    ),
    "name-256-utf8-bytes": (
        snapshot(volumeID=VOLUME_ID, name=TWO_BYTE_256),
        ["spec.name", "at most 255 bytes"],
    ),
    "name-reserved-backup-prefix": (
        snapshot(volumeID=VOLUME_ID, name="autobk_snapshot_daily"),
        ["spec.name", "autobk_snapshot_"],
    ),
    "description-256-utf8-bytes": (
        snapshot(volumeID=VOLUME_ID, description=TWO_BYTE_256),
        ["spec.description", "at most 255 bytes"],
    ),
    "metadata-system-key": (
        snapshot(volumeID=VOLUME_ID, metadata={"__system__encrypted": "1"}),
        ["spec.metadata", "__system__"],
    ),
    "metadata-identity-key": (
        snapshot(volumeID=VOLUME_ID, metadata={"cloudsnap.io/owner-uid": "x"}),
        ["spec.metadata", "cloudsnap.io/"],
    ),
    "metadata-too-many-entries": (
        snapshot(volumeID=VOLUME_ID, metadata={f"k{i}": "v" for i in range(51)}),
        ["spec.metadata", "50"],
    ),
    "metadata-value-too-long": (
        snapshot(volumeID=VOLUME_ID, metadata={"team": "v" * 256}),
        ["spec.metadata.team", "255"],
    ),
    "bad-deletion-policy": (
        snapshot(volumeID=VOLUME_ID, deletionPolicy="Keep"),
        ["spec.deletionPolicy", "Unsupported value", '"Delete"', '"Retain"'],
    ),
    "no-source": (
        snapshot(name="orphan"),
        ["spec", SOURCE_REQUIRED],
    ),
    "empty-snapshot-id-alone": (
        snapshot(snapshotID=""),
        [SOURCE_REQUIRED],
    ),
    "volume-and-claim": (
        snapshot(volumeID=VOLUME_ID, persistentVolumeClaimName=CLAIM),
        ["spec", ONE_SOURCE_ONLY],
    ),
    "claim-and-snapshot": (
        snapshot(persistentVolumeClaimName=CLAIM, snapshotID=SNAPSHOT_ID),
        [ONE_SOURCE_ONLY],
    ),
    "volume-and-snapshot": (
        snapshot(volumeID=VOLUME_ID, snapshotID=SNAPSHOT_ID),
        [ONE_SOURCE_ONLY],
    ),
    "bad-claim-name": (
        snapshot(persistentVolumeClaimName="Data_1"),
        ["spec.persistentVolumeClaimName", "should match"],
    ),
    # EVS writes its IDs in lower case and finds nothing by an upper-case one.
    "upper-case-volume-id": (
        snapshot(volumeID=VOLUME_ID.upper()),
        ["spec.volumeID", "should match"],
    ),
    "upper-case-snapshot-id": (
        snapshot(snapshotID=SNAPSHOT_ID.upper()),
        ["spec.snapshotID", "should match"],
    ),
    "force-not-boolean": (
        snapshot(volumeID=VOLUME_ID, force="yes"),
        ["spec.force", "boolean"],
    ),
    "bad-class-name": (
        snapshot(volumeID=VOLUME_ID, className="Gold_Class"),
        ["spec.className", "should match"],
    ),
}


@pytest.mark.parametrize(
    ("manifest", "fragments"), INVALID_ON_CREATE.values(), ids=INVALID_ON_CREATE.keys()
)
def test_invalid_manifest_is_refused(
    cluster: Cluster, namespace: str, manifest: dict[str, Any], fragments: list[str]
) -> None:
    assert_refused(apply(cluster, manifest, namespace), *fragments)
    listed = cluster.kubectl("get", "csnap", "--namespace", namespace, "-o", "name").stdout
    assert listed == ""


def test_unknown_field_is_refused_with_strict_validation(cluster: Cluster, namespace: str) -> None:
    typo = snapshot(volumeId=VOLUME_ID)
    assert_refused(
        apply(cluster, typo, namespace, "--validate=strict"), 'unknown field "spec.volumeId"'
    )


CREATED = {"volumeID": VOLUME_ID, "force": False, "metadata": {"team": "db"}, "className": "gold"}
FIXED_AT_CREATION = {
    "volume-id-changed": ({"volumeID": OTHER_VOLUME_ID}, "spec.volumeID"),
    "volume-id-removed": ({"volumeID": None, "snapshotID": SNAPSHOT_ID}, "spec.volumeID"),
    "snapshot-id-added-later": ({"snapshotID": SNAPSHOT_ID}, "spec.snapshotID"),
    "metadata-changed": ({"metadata": {"team": "web"}}, "spec.metadata"),
    "metadata-removed": ({"metadata": None}, "spec.metadata"),
    "class-name-changed": ({"className": "silver"}, "spec.className"),
    "class-name-removed": ({"className": None}, "spec.className"),
}


@pytest.mark.parametrize(
    ("change", "field"), FIXED_AT_CREATION.values(), ids=FIXED_AT_CREATION.keys()
)
def test_immutable_field_change_is_refused(
    cluster: Cluster, namespace: str, change: dict[str, Any], field: str
) -> None:
    assert apply(cluster, snapshot(**CREATED), namespace).returncode == 0
    spec = {key: value for key, value in {**CREATED, **change}.items() if value is not None}
    assert_refused(apply(cluster, snapshot(**spec), namespace), field, "immutable")
    assert get(cluster, namespace, "csnap", NAME)["spec"]["volumeID"] == VOLUME_ID


def test_snapshot_id_change_is_refused(cluster: Cluster, namespace: str) -> None:
    assert apply(cluster, snapshot(snapshotID=SNAPSHOT_ID), namespace).returncode == 0
    for spec in ({"snapshotID": OTHER_SNAPSHOT_ID}, {"snapshotID": "", "volumeID": VOLUME_ID}):
        assert_refused(apply(cluster, snapshot(**spec), namespace), "spec.snapshotID", "immutable")
    assert get(cluster, namespace, "csnap", NAME)["spec"]["snapshotID"] == SNAPSHOT_ID


def test_claim_name_change_is_refused(cluster: Cluster, namespace: str) -> None:
    assert apply(cluster, snapshot(persistentVolumeClaimName=CLAIM), namespace).returncode == 0
    for spec in ({"persistentVolumeClaimName": "other"}, {"volumeID": VOLUME_ID}):
        assert_refused(
            apply(cluster, snapshot(**spec), namespace),
            "spec.persistentVolumeClaimName",
            "immutable",
        )
    assert get(cluster, namespace, "csnap", NAME)["spec"]["persistentVolumeClaimName"] == CLAIM


def test_force_is_updatable_so_a_refused_in_use_disk_can_be_let_through(
    cluster: Cluster, namespace: str
) -> None:
    assert apply(cluster, snapshot(**CREATED), namespace).returncode == 0
    changed = apply(cluster, snapshot(**{**CREATED, "force": True}), namespace)
    assert changed.returncode == 0, changed.stderr
    assert get(cluster, namespace, "csnap", NAME)["spec"]["force"] is True


def test_name_and_description_stay_updatable(cluster: Cluster, namespace: str) -> None:
    assert apply(cluster, snapshot(**CREATED, name="a", description="b"), namespace).returncode == 0
    changed = apply(cluster, snapshot(**CREATED, name="renamed", description="new"), namespace)
    assert changed.returncode == 0, changed.stderr
    spec = get(cluster, namespace, "csnap", NAME)["spec"]
    assert (spec["name"], spec["description"]) == ("renamed", "new")


def test_valid_manifests_are_accepted_with_defaults(cluster: Cluster, namespace: str) -> None:
    """Byte limits count bytes: 255 bytes of 2-byte characters plus one ASCII is fine."""
    accepted = {
        "minimal": {"volumeID": VOLUME_ID},
        "adopt": {"snapshotID": SNAPSHOT_ID},
        "claim": {"persistentVolumeClaimName": CLAIM},
        "claim-and-documented-empty-snapshot-id": {
            "persistentVolumeClaimName": CLAIM,
            "snapshotID": "",
        },
        "documented-empty-snapshot-id": {"volumeID": VOLUME_ID, "snapshotID": ""},
        "full": {
            "volumeID": VOLUME_ID,
            "name": "é" * 127 + "a",
            "description": "ü" * 127 + "b",
            "force": True,
            "metadata": {f"k{i}": "v" * 255 for i in range(50)},
            "className": "default",
            "deletionPolicy": "Retain",
        },
        "null-description": {"volumeID": VOLUME_ID, "description": None},
    }
    for name, spec in accepted.items():
        manifest = snapshot(**spec)
        manifest["metadata"]["name"] = name
        result = apply(cluster, manifest, namespace)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    minimal = get(cluster, namespace, "csnap", "minimal")["spec"]
    # No force default in the schema: an omitted force is decided by the source (a claim
    # forces, a volume ID does not), and a stored object says which the user chose.
    assert minimal == {"volumeID": VOLUME_ID}
    assert "description" not in get(cluster, namespace, "csnap", "null-description")["spec"]
    assert get(cluster, namespace, "csnap", "full")["spec"]["name"] == "é" * 127 + "a"


@pytest.mark.parametrize(
    ("example", "created"),
    [
        ("cloudsnapshot-pvc.yaml", "cloudsnapshot.evs.cloudsnap.io/postgres-data-daily"),
        ("cloudsnapshotrestore.yaml", "cloudsnapshotrestore.evs.cloudsnap.io/demo-restore"),
    ],
)
def test_the_example_is_admitted(cluster: Cluster, example: str, created: str) -> None:
    """The example's objects (for the claim one: its PersistentVolume, claim and CloudSnapshot)
    are valid as written."""
    path = Path(__file__).resolve().parents[2] / "examples" / example
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    assert f"{created} created (server dry run)" in result.stdout


def test_class_admission_and_defaults(cluster: Cluster) -> None:
    name = "admission-defaults"
    result = apply(cluster, snapshot_class(name))
    assert result.returncode == 0, result.stderr
    try:
        spec = get(cluster, None, "csnapclass", name)["spec"]
        assert spec["deletionPolicy"] == "Delete"
        assert spec["insecureSkipTLSVerify"] is False
        assert "rateLimit" not in spec  # no ceiling unless asked for
        for bad, fragments in (
            ({"deletionPolicy": "Keep"}, ["spec.deletionPolicy", "Unsupported value"]),
            ({"credentialsSecretRef": None}, ["spec.credentialsSecretRef", "Required value"]),
            ({"projectID": "a/b"}, ["spec.projectID", "should match"]),
            ({"endpoint": "evs.example"}, ["spec.endpoint", "should match"]),
            ({"rateLimit": {"requestsPerSecond": 0}}, ["spec.rateLimit.requestsPerSecond"]),
            (
                {"caBundle": "LS0tLS1CRUdJTg==", "insecureSkipTLSVerify": True},
                ["spec.insecureSkipTLSVerify", "cannot be used together"],
            ),
        ):
            assert_refused(apply(cluster, snapshot_class(f"{name}-bad", **bad)), *fragments)
    finally:
        cluster.kubectl("delete", "csnapclass", name, "--ignore-not-found")


@pytest.mark.parametrize(
    ("field", "fragment"),
    [
        (
            "csnap.spec.volumeID",
            "ID (UUID, lower case as EVS writes it) of the EVS disk to snapshot",
        ),
        ("csnap.status.conditions", "kubectl wait --for=condition=Ready"),
        ("csnapclass.spec.rateLimit.burst", "Requests that may be made at once"),
        ("csnaprestore.spec.snapshotName", "Name of a CloudSnapshot in this namespace to restore"),
        ("csnaprestore.spec.newVolume.size", "at least the snapshot's"),
        ("csnaprestore.spec.newVolume.claim.name", "never touched"),
    ],
)
def test_explain_describes_the_fields(cluster: Cluster, field: str, fragment: str) -> None:
    """`kubectl explain` shows the field's description (its line wrapping undone)."""
    assert fragment in " ".join(cluster.kubectl("explain", field).stdout.split())


def patch_status(
    cluster: Cluster, namespace: str, patch: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """Merge-patch NAME's status subresource, as the operator does."""
    return cluster.kubectl(
        "patch",
        "csnap",
        NAME,
        "--namespace",
        namespace,
        "--subresource=status",
        "--type=merge",
        "--patch",
        json.dumps(patch),
        check=False,
    )


def _ready_status() -> dict[str, Any]:
    return {
        "status": {
            "snapshotID": SNAPSHOT_ID,
            "volumeID": VOLUME_ID,
            "phase": "available",
            "size": 10,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Available",
                    "message": "snapshot is available",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }


def test_printer_columns_and_wait(cluster: Cluster, namespace: str) -> None:
    assert apply(cluster, snapshot(volumeID=VOLUME_ID), namespace).returncode == 0
    assert patch_status(cluster, namespace, _ready_status()).returncode == 0
    by_claim = snapshot(persistentVolumeClaimName=CLAIM)
    by_claim["metadata"]["name"] = "z-by-claim"  # listed after NAME
    assert apply(cluster, by_claim, namespace).returncode == 0
    cluster.kubectl(
        "wait", "--for=condition=Ready", f"csnap/{NAME}", "--namespace", namespace, "--timeout=30s"
    )
    wide = cluster.kubectl("get", "csnap", "--namespace", namespace, "-o", "wide").stdout
    header, row, claim_row = wide.splitlines()
    narrow_columns = ["NAME", "READY", "PHASE", "SNAPSHOT-ID", "SIZE", "SOURCE", "AGE"]
    assert header.split() == [*narrow_columns, "VOLUME"]
    values = row.split()
    assert values[:6] == [NAME, "True", "available", SNAPSHOT_ID, "10", VOLUME_ID]
    assert values[-1] == VOLUME_ID
    # No status yet: its columns are blank, so the claim is the first value after the name.
    assert claim_row.split()[:2] == ["z-by-claim", CLAIM]
    narrow = cluster.kubectl("get", "csnap", "--namespace", namespace).stdout
    assert narrow.splitlines()[0].split() == narrow_columns


def test_status_is_a_subresource_with_its_own_schema(cluster: Cluster, namespace: str) -> None:
    manifest = snapshot(volumeID=VOLUME_ID)
    assert apply(cluster, manifest, namespace).returncode == 0
    with_status = copy.deepcopy(manifest) | _ready_status()
    cluster.kubectl("replace", "--namespace", namespace, "-f", "-", input=json.dumps(with_status))
    assert "status" not in get(cluster, namespace, "csnap", NAME)
    bad = _ready_status()
    bad["status"]["conditions"][0]["status"] = "Yes"
    assert_refused(
        patch_status(cluster, namespace, bad), "status.conditions[0].status", "Unsupported value"
    )


def test_class_columns_and_the_category(cluster: Cluster, namespace: str) -> None:
    name = "admission-default-column"
    manifest = snapshot_class(name)
    manifest["metadata"]["annotations"] = {"evs.cloudsnap.io/is-default-class": "true"}
    assert apply(cluster, manifest).returncode == 0
    assert apply(cluster, snapshot(volumeID=VOLUME_ID), namespace).returncode == 0
    try:
        listed = cluster.kubectl("get", "cloudsnap", "--namespace", namespace, "-o", "name")
        assert {
            f"cloudsnapshot.evs.cloudsnap.io/{NAME}",
            f"cloudsnapshotclass.evs.cloudsnap.io/{name}",
        } <= set(listed.stdout.splitlines())
        table = cluster.kubectl("get", "csnapclass", name).stdout.splitlines()
        assert table[0].split() == [
            "NAME",
            "REGION",
            "PROJECT-ID",
            "DELETION-POLICY",
            "DEFAULT",
            "AGE",
        ]
        assert table[1].split()[:5] == [
            name,
            "cn-north-4",
            "0123456789abcdef0123456789abcdef",
            "Delete",
            "true",
        ]
    finally:
        cluster.kubectl("delete", "csnapclass", name, "--ignore-not-found")
