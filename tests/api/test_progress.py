"""Reconciling and Stalled follow from Ready, Synced and the error, one rule per state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloudsnap.api.models import CloudSnapshotStatus, Condition, StatusError
from cloudsnap.api.progress import (
    RECONCILING,
    STALLED,
    Progress,
    schedule_progress,
    snapshot_progress,
    with_progress,
)
from cloudsnap.api.schedule import CloudSnapshotScheduleStatus

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def cond(kind: str, status: str, reason: str, message: str = "m") -> Condition:
    return Condition.model_validate(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": NOW,
        }
    )


def error(*, retryable: bool) -> StatusError:
    return StatusError.model_validate(
        {"code": "EVS.5400", "message": "bad", "retryable": retryable, "time": NOW}
    )


def snapshot(*conditions: Condition, err: StatusError | None = None) -> CloudSnapshotStatus:
    return CloudSnapshotStatus(conditions=list(conditions), error=err)


def test_a_snapshot_not_yet_ready_is_reconciling_with_readys_reason() -> None:
    assert snapshot_progress(snapshot()) == Progress(RECONCILING, "Pending", "not yet looked at")
    creating = snapshot(cond("Ready", "False", "Creating", "EVS is creating it"))
    assert snapshot_progress(creating) == Progress(RECONCILING, "Creating", "EVS is creating it")
    deleting = snapshot(cond("Ready", "False", "Deleting"))
    assert snapshot_progress(deleting) == Progress(RECONCILING, "Deleting", "m")


def test_a_transient_error_is_reconciling_and_an_error_not_retried_soon_stalls() -> None:
    retrying = snapshot(cond("Ready", "False", "Pending"), err=error(retryable=True))
    assert snapshot_progress(retrying) == Progress(RECONCILING, "Pending", "m")
    ready_retrying = snapshot(cond("Ready", "True", "Available"), err=error(retryable=True))
    assert snapshot_progress(ready_retrying) == Progress(RECONCILING, "Retrying", "EVS.5400: bad")
    blocked = snapshot(
        cond("Ready", "False", "Error"),
        cond("Synced", "False", "ClassNotFound"),
        err=error(retryable=False),
    )
    assert snapshot_progress(blocked) == Progress(STALLED, "ClassNotFound", "EVS.5400: bad")
    ready_blocked = snapshot(
        cond("Ready", "True", "Available"),
        cond("Synced", "False", "ReconcileError"),
        err=error(retryable=False),
    )
    assert snapshot_progress(ready_blocked) == Progress(STALLED, "ReconcileError", "EVS.5400: bad")


def test_a_snapshot_in_error_gone_or_owned_elsewhere_stalls() -> None:
    for reason in ("Error", "NotFound", "AlreadyOwned"):
        stuck = snapshot(cond("Ready", "False", reason, "why"))
        assert snapshot_progress(stuck) == Progress(STALLED, reason, "why")


def test_a_ready_snapshot_in_sync_is_neither() -> None:
    ready = snapshot(cond("Ready", "True", "Available"), cond("Synced", "True", "ReconcileSuccess"))
    assert snapshot_progress(ready) is None


def test_a_schedule_stalls_on_an_invalid_spec_or_a_blocked_source_and_is_otherwise_current() -> (
    None
):
    def status(*conditions: Condition) -> CloudSnapshotScheduleStatus:
        return CloudSnapshotScheduleStatus(conditions=list(conditions))

    invalid = status(cond("Synced", "False", "InvalidSpec", "spec.timeZone: unknown"))
    assert schedule_progress(invalid) == Progress(STALLED, "InvalidSpec", "spec.timeZone: unknown")
    blocked = status(
        cond("Ready", "False", "Blocked", "blocked: a"), cond("Synced", "True", "Synced")
    )
    assert schedule_progress(blocked) == Progress(STALLED, "Blocked", "blocked: a")
    waiting = status(cond("Ready", "False", "Waiting"), cond("Synced", "True", "Synced"))
    assert schedule_progress(waiting) is None
    assert schedule_progress(status()) is None


def test_with_progress_sets_one_removes_the_other_and_keeps_the_transition_time() -> None:
    earlier = NOW - timedelta(hours=1)
    conditions = [
        cond("Ready", "False", "Creating"),
        Condition.model_validate(
            {
                "type": STALLED,
                "status": "True",
                "reason": "Error",
                "message": "old",
                "lastTransitionTime": earlier,
            }
        ),
    ]
    reconciling = with_progress(conditions, Progress(RECONCILING, "Creating", "m"), NOW, 2)
    assert [(c.type, c.status) for c in reconciling] == [("Ready", "False"), (RECONCILING, "True")]
    assert reconciling[1].observed_generation == 2
    stalled = with_progress(conditions, Progress(STALLED, "Error", "new"), NOW, 2)
    assert [c.type for c in stalled] == ["Ready", STALLED]
    assert stalled[1].last_transition_time == earlier
    assert stalled[1].message == "new"
    assert [c.type for c in with_progress(conditions, None, NOW, 2)] == ["Ready"]
