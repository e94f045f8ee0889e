"""Readers of a resource's body: identity, key and conditions, as every layer reads them."""

from datetime import UTC, datetime

from cloudsnap.api.models import Condition, condition_of
from cloudsnap.api.objects import condition_in, object_key, uid_of, version_of

BODY = {
    "metadata": {"namespace": "db", "name": "nightly", "uid": "u-1", "resourceVersion": "42"},
    "status": {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "Pending"},
            {"type": "Synced", "status": "True", "reason": "Synced"},
        ]
    },
}


def test_identity_and_key_of_a_stored_object() -> None:
    assert (uid_of(BODY), version_of(BODY), object_key(BODY)) == ("u-1", "42", "db/nightly")


def test_an_object_not_yet_stored_has_empty_identity() -> None:
    body = {"metadata": {"name": "cluster-wide"}}
    assert (uid_of(body), version_of(body), object_key(body)) == ("", "", "/cluster-wide")


def test_condition_in_finds_the_kind_asked_for_and_copies_it() -> None:
    synced = condition_in(BODY, "Synced")
    assert synced["reason"] == "Synced"
    synced["reason"] = "changed"
    assert BODY["status"]["conditions"][1]["reason"] == "Synced"


def test_condition_in_is_empty_before_any_condition_was_written() -> None:
    assert condition_in(BODY, "Unknown") == {}
    assert condition_in({"status": None}, "Ready") == {}
    assert condition_in({}, "Ready") == {}


def test_condition_of_finds_the_kind_among_models() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ready = Condition(
        type="Ready", status="True", reason="Available", message="", last_transition_time=now
    )
    synced = Condition(
        type="Synced", status="True", reason="Synced", message="", last_transition_time=now
    )
    assert condition_of([ready, synced], "Synced") is synced
    assert condition_of([ready], "Synced") is None
