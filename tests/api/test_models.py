"""The models parse raw Kubernetes bodies and dump status the way the API server wants them."""

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from cloudsnap.api.constants import DEFAULT_CLASS_ANNOTATION
from cloudsnap.api.models import (
    CloudSnapshot,
    CloudSnapshotClass,
    CloudSnapshotClassSpec,
    CloudSnapshotSpec,
    CloudSnapshotStatus,
    Condition,
    StatusError,
    effective_deletion_policy,
    recorded_deletion_policy,
)
from cloudsnap.api.schedule import ScheduleSources

VOLUME_ID = "5aa119a8-d25b-45a7-8d1b-88e127885635"
SNAPSHOT_ID = "ffa9bc5e-1172-4021-acaf-cdcd78a9584d"
CLASS_SPEC = {
    "region": "cn-north-4",
    "projectID": "0123456789abcdef0123456789abcdef",
    "credentialsSecretRef": {"name": "evs-credentials"},
}


def test_spec_defaults_from_a_minimal_body() -> None:
    spec = CloudSnapshotSpec.model_validate({"volumeID": VOLUME_ID})
    assert spec.volume_id == VOLUME_ID
    assert spec.force is None
    assert spec.forces_attached_disk() is False  # a volume ID: EVS's own default
    assert spec.metadata == {}
    assert spec.name is None
    assert spec.description is None
    assert spec.class_name is None
    assert spec.deletion_policy is None
    assert spec.snapshot_id is None


def test_a_claim_source_forces_unless_told_otherwise() -> None:
    claim = {"persistentVolumeClaimName": "postgres-data"}
    assert CloudSnapshotSpec.model_validate(claim).forces_attached_disk() is True
    told = CloudSnapshotSpec.model_validate({**claim, "force": False})
    assert told.forces_attached_disk() is False
    forced = CloudSnapshotSpec.model_validate({"volumeID": VOLUME_ID, "force": True})
    assert forced.forces_attached_disk() is True


def test_ids_stored_in_upper_case_are_read_as_evs_writes_them() -> None:
    """Resources stored before the CRD refused upper case keep working after an upgrade: the
    disk is asked for, and its snapshots recognised, by the lower-case ID EVS uses."""
    spec = CloudSnapshotSpec.model_validate({"volumeID": VOLUME_ID.upper()})
    assert spec.volume_id == VOLUME_ID
    adopting = CloudSnapshotSpec.model_validate({"snapshotID": SNAPSHOT_ID.upper()})
    assert adopting.snapshot_id == SNAPSHOT_ID
    sources = ScheduleSources.model_validate({"volumeIDs": [VOLUME_ID.upper()]})
    assert sources.volume_ids == [VOLUME_ID]


def test_spec_reads_every_camel_case_field() -> None:
    spec = CloudSnapshotSpec.model_validate(
        {
            "volumeID": VOLUME_ID,
            "name": "snap-001",
            "description": "Daily backup",
            "force": True,
            "metadata": {"team": "db"},
            "className": "default",
            "deletionPolicy": "Retain",
            "snapshotID": SNAPSHOT_ID,
        }
    )
    assert (spec.name, spec.description, spec.force) == ("snap-001", "Daily backup", True)
    assert spec.metadata == {"team": "db"}
    assert (spec.class_name, spec.deletion_policy) == ("default", "Retain")
    assert spec.snapshot_id == SNAPSHOT_ID


def test_spec_accepts_python_names_too() -> None:
    spec = CloudSnapshotSpec(volume_id=VOLUME_ID, class_name="gold")
    assert spec.model_dump(exclude_none=True) == {
        "volumeID": VOLUME_ID,
        "metadata": {},
        "className": "gold",
    }


def test_empty_snapshot_id_means_create_one() -> None:
    spec = CloudSnapshotSpec.model_validate({"volumeID": VOLUME_ID, "snapshotID": ""})
    assert spec.snapshot_id is None


@pytest.mark.parametrize(
    "body",
    [
        {"volumeID": "not-a-uuid"},
        {"snapshotID": "ffa9bc5e"},
        {"volumeID": VOLUME_ID, "deletionPolicy": "Keep"},
        {"volumeID": VOLUME_ID, "name": ""},
        {"volumeID": VOLUME_ID, "metadata": {"k": "v" * 256}},
    ],
)
def test_spec_refuses_what_the_schema_refuses(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CloudSnapshotSpec.model_validate(body)


def test_status_dump_is_what_a_status_patch_needs() -> None:
    moment = datetime(2013, 2, 25, 3, 56, 53, 81642)
    status = CloudSnapshotStatus(
        snapshot_id=SNAPSHOT_ID,
        phase="available",
        size=1,
        created_at=moment,
        observed_generation=2,
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Available",
                message="snapshot is available",
                last_transition_time=moment,
                observed_generation=2,
            )
        ],
    )
    assert status.model_dump(mode="json", by_alias=True, exclude_none=True) == {
        "snapshotID": SNAPSHOT_ID,
        "phase": "available",
        "size": 1,
        "createdAt": "2013-02-25T03:56:53.081642Z",
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": "snapshot is available",
                "lastTransitionTime": "2013-02-25T03:56:53.081642Z",
                "observedGeneration": 2,
            }
        ],
    }


def test_times_are_normalised_to_utc() -> None:
    """EVS sends zone-less UTC; Kubernetes' date-time format needs a zone."""
    plus_eight = timezone(timedelta(hours=8))
    error = StatusError(
        code="EVS.5404",
        message="volume not found",
        retryable=False,
        time=datetime(2026, 1, 1, 8, 0, tzinfo=plus_eight),
    )
    assert error.time == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    status = CloudSnapshotStatus.model_validate({"updatedAt": "2013-02-25T03:56:53.081642"})
    assert status.updated_at is not None
    assert status.updated_at.tzinfo is UTC


def test_status_error_round_trips_through_its_dump() -> None:
    body = {
        "phase": "error",
        "error": {
            "code": "EVS.5404",
            "message": "volume not found",
            "retryable": False,
            "time": "2026-01-01T00:00:00Z",
        },
    }
    status = CloudSnapshotStatus.model_validate(body)
    assert status.model_dump(mode="json", exclude_none=True) == {**body, "conditions": []}


def test_condition_reason_must_be_camel_case() -> None:
    with pytest.raises(ValidationError):
        Condition(
            type="Ready",
            status="False",
            reason="not found",
            message="",
            last_transition_time=datetime.now(UTC),
        )


def test_whole_resource_from_a_kubernetes_body() -> None:
    resource = CloudSnapshot.model_validate(
        {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshot",
            "metadata": {
                "name": "db-daily",
                "namespace": "prod",
                "uid": "0d7d2b6a-0000-4000-8000-000000000001",
                "generation": 3,
                "resourceVersion": "42",
            },
            "spec": {"volumeID": VOLUME_ID},
        }
    )
    assert (resource.metadata.namespace, resource.metadata.name) == ("prod", "db-daily")
    assert resource.metadata.generation == 3
    assert resource.status == CloudSnapshotStatus()


def test_class_defaults() -> None:
    spec = CloudSnapshotClassSpec.model_validate(CLASS_SPEC)
    assert spec.deletion_policy == "Delete"
    assert spec.insecure_skip_tls_verify is False
    assert spec.ca_bundle is None
    assert spec.rate_limit is None  # no ceiling: the pace follows EVS's throttling
    ceiling = CloudSnapshotClassSpec.model_validate(CLASS_SPEC | {"rateLimit": {}}).rate_limit
    assert ceiling is not None
    assert (ceiling.requests_per_second, ceiling.burst) == (20, 40)
    assert spec.credentials_secret_ref.name == "evs-credentials"


def test_class_endpoint_is_derived_from_the_region_unless_given() -> None:
    derived = CloudSnapshotClassSpec.model_validate(CLASS_SPEC)
    assert derived.evs_endpoint() == "https://evs.cn-north-4.myhuaweicloud.com"
    explicit = CloudSnapshotClassSpec.model_validate(
        {**CLASS_SPEC, "endpoint": "http://127.0.0.1:8080"}
    )
    assert explicit.evs_endpoint() == "http://127.0.0.1:8080"


def test_class_ca_bundle_is_decoded_from_base64() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    spec = CloudSnapshotClassSpec.model_validate(
        {**CLASS_SPEC, "caBundle": base64.b64encode(pem).decode()}
    )
    assert spec.ca_bundle == pem


def test_default_class_annotation() -> None:
    def with_annotations(annotations: dict[str, str]) -> CloudSnapshotClass:
        return CloudSnapshotClass.model_validate(
            {"metadata": {"name": "c", "annotations": annotations}, "spec": CLASS_SPEC}
        )

    assert with_annotations({DEFAULT_CLASS_ANNOTATION: "true"}).is_default()
    assert not with_annotations({DEFAULT_CLASS_ANNOTATION: "false"}).is_default()
    assert not with_annotations({}).is_default()


@pytest.mark.parametrize(
    ("own", "recorded", "adopted", "of_class", "expected"),
    [
        ("Retain", "Delete", False, "Delete", "Retain"),  # the spec wins over everything
        (None, "Retain", False, "Delete", "Retain"),  # recorded at creation: class edits no matter
        (None, "Retain", False, None, "Retain"),  # ... nor a deleted class
        (None, None, True, "Delete", "Retain"),  # adopted: kept unless told otherwise
        (None, None, False, "Retain", "Retain"),  # nothing recorded (older resource): the class
        (None, None, False, None, None),  # only a deleted class could have said
    ],
)
def test_deletion_policy_spec_then_recorded_then_class(
    own: str | None, recorded: str | None, adopted: bool, of_class: str | None, expected: str
) -> None:
    spec = CloudSnapshotSpec.model_validate({"volumeID": VOLUME_ID, "deletionPolicy": own})
    status = CloudSnapshotStatus.model_validate(
        {"deletionPolicy": recorded, "adopted": adopted or None}
    )
    class_spec = (
        None
        if of_class is None
        else CloudSnapshotClassSpec.model_validate({**CLASS_SPEC, "deletionPolicy": of_class})
    )
    assert effective_deletion_policy(spec, status, class_spec) == expected


@pytest.mark.parametrize(
    ("own", "adopted", "of_class", "expected"),
    [
        (None, False, "Retain", "Retain"),
        (None, True, "Delete", "Retain"),
        ("Delete", True, "Retain", "Delete"),
    ],
)
def test_recorded_policy_defaults_adopted_snapshots_to_retain(
    own: str | None, adopted: bool, of_class: str, expected: str
) -> None:
    spec = CloudSnapshotSpec.model_validate({"volumeID": VOLUME_ID, "deletionPolicy": own})
    class_spec = CloudSnapshotClassSpec.model_validate({**CLASS_SPEC, "deletionPolicy": of_class})
    assert recorded_deletion_policy(spec, class_spec, adopted=adopted) == expected
