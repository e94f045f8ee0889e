"""The two conditions every kind carries for automation besides Ready and Synced, as the kstatus
conventions (sigs.k8s.io/cli-utils) define them: ``Reconciling`` while work toward the spec is
under way, ``Stalled`` when it cannot go on without a change. Each is present only while True, so
tools that judge resources by these conventions (Flux's health checks, kpt, cli-utils' status
poller) tell a resource in progress and one failed for good from a current one
(docs/lifecycle.md#conditions).

They are derived from what the status already says, in one place per kind: a step changes Ready,
Synced and the error, and the kstatus conditions follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from cloudsnap.api.constants import READY, SYNCED
from cloudsnap.api.models import CloudSnapshotStatus, Condition, StatusError, set_condition
from cloudsnap.api.restore import CloudSnapshotRestoreStatus
from cloudsnap.api.schedule import CloudSnapshotScheduleStatus

RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"

# Ready reasons of a CloudSnapshot that no step of the operator will change without a change of
# the spec or of the world: the EVS snapshot in error, gone, or another resource's.
_STUCK_READY_REASONS = frozenset({"Error", "NotFound", "AlreadyOwned"})


@dataclass(frozen=True)
class Progress:
    """Which of the two conditions is True, and why (the other is absent)."""

    type: Literal["Reconciling", "Stalled"]
    reason: str
    message: str


def snapshot_progress(status: CloudSnapshotStatus) -> Progress | None:
    """A CloudSnapshot's progress: Stalled on an error the operator does not retry soon (invalid
    or blocked) or an EVS snapshot that is in error, gone or owned by another resource;
    Reconciling while not Ready (creating, deleting, retrying) or retrying a transient error;
    neither once Ready and in sync."""
    ready = _find(status.conditions, READY)
    stuck = ready is not None and ready.status != "True" and ready.reason in _STUCK_READY_REASONS
    return _progress(status.conditions, status.error, stuck=stuck)


def restore_progress(status: CloudSnapshotRestoreStatus) -> Progress | None:
    """A restore's progress, as a CloudSnapshot's: Stalled on an error not retried soon or a
    disk that failed; Reconciling until Ready (creating, binding, deleting, retrying)."""
    return _progress(status.conditions, status.error, stuck=status.phase == "Failed")


def _progress(
    conditions: list[Condition], error: StatusError | None, *, stuck: bool
) -> Progress | None:
    """Stalled on an error not retried soon, or when ``stuck`` (Ready says why); Reconciling
    while not Ready or retrying; None once Ready and in sync."""
    ready = _find(conditions, READY)
    synced = _find(conditions, SYNCED)
    if error is not None and not error.retryable:
        reason = synced.reason if synced is not None and synced.status == "False" else "Error"
        return Progress(STALLED, reason, f"{error.code}: {error.message}")
    if stuck and ready is not None:
        return Progress(STALLED, ready.reason, ready.message)
    if ready is None or ready.status != "True":
        reason = ready.reason if ready is not None else "Pending"
        message = ready.message if ready is not None else "not yet looked at"
        return Progress(RECONCILING, reason, message)
    if error is not None:
        return Progress(RECONCILING, "Retrying", f"{error.code}: {error.message}")
    return None


def schedule_progress(status: CloudSnapshotScheduleStatus) -> Progress | None:
    """A schedule's progress: Stalled while its spec cannot run (Synced=False) or a source is
    blocked (a full disk, a refused child, a claim without a disk); otherwise neither. A schedule
    waiting for its first run is current: it does what its spec asks, and its next slot may be a
    day away."""
    synced = _find(status.conditions, SYNCED)
    if synced is not None and synced.status == "False":
        return Progress(STALLED, synced.reason, synced.message)
    ready = _find(status.conditions, READY)
    if ready is not None and ready.status == "False" and ready.reason == "Blocked":
        return Progress(STALLED, ready.reason, ready.message)
    return None


def with_progress(
    conditions: list[Condition],
    progress: Progress | None,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """``conditions`` with Reconciling and Stalled as ``progress`` says: the one it names True
    (its transition time kept while it stays True), the other removed."""
    kept = [c for c in conditions if c.type not in (RECONCILING, STALLED)]
    if progress is None:
        return kept
    return set_condition(
        kept,
        _find(conditions, progress.type),
        progress.type,
        "True",
        progress.reason,
        progress.message,
        now=now,
        generation=generation,
    )


def _find(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)
