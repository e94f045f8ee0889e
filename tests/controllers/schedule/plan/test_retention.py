"""Retention as a pure function: examples for each rule, and properties over any set of
snapshots of a source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cloudsnap.controllers.schedule.plan.retention import (
    Decision,
    Phase,
    Policy,
    Reason,
    Snapshot,
    decide,
)

NOW = datetime(2026, 6, 10, tzinfo=UTC)
LIMIT = 7


def snap(
    name: str,
    hours_ago: float,
    phase: Phase = Phase.READY,
    *,
    ours: bool = True,
    waiting: bool = False,
    frees: bool = True,
) -> Snapshot:
    return Snapshot(name, phase, NOW - timedelta(hours=hours_ago), ours, waiting, frees)


def run(
    snapshots: list[Snapshot],
    max_count: int = 3,
    min_ready: int = 1,
    max_age: timedelta | None = None,
    create_pending: bool = False,
) -> Decision:
    return decide(
        snapshots,
        Policy(max_count, min_ready, max_age),
        now=NOW,
        create_pending=create_pending,
        disk_limit=LIMIT,
    )


def test_only_ready_children_count_toward_max_count() -> None:
    snapshots = [snap(f"r{i}", i) for i in range(5)] + [
        snap("creating", 0.1, Phase.CREATING),
        snap("failed", 10, Phase.FAILED),
    ]
    decision = run(snapshots, max_count=3)
    assert decision.delete == (
        ("failed", Reason.FAILED),
        ("r4", Reason.COUNT),
        ("r3", Reason.COUNT),
    )


def test_max_age_stops_at_the_newest_min_ready() -> None:
    snapshots = [snap(f"r{i}", 100 + i) for i in range(3)]
    decision = run(snapshots, max_count=3, min_ready=1, max_age=timedelta(hours=24))
    assert decision.delete == (("r2", Reason.AGE), ("r1", Reason.AGE))
    assert run(snapshots, min_ready=3, max_age=timedelta(hours=24)).delete == ()


def test_a_failed_child_stays_until_a_newer_one_is_ready() -> None:
    assert run([snap("failed", 1, Phase.FAILED), snap("old", 5)]).delete == ()
    assert run([snap("failed", 5, Phase.FAILED), snap("new", 1)]).delete == (
        ("failed", Reason.FAILED),
    )


def test_a_child_that_found_no_disk_goes_once_any_newer_child_exists() -> None:
    """A claim that stays unbound keeps one waiting child, not one per run."""
    waiting = snap("waiting", 2, Phase.UNRESOLVED)
    assert run([waiting, snap("other", 1, Phase.UNRESOLVED, ours=False)]).delete == ()
    for newer in (Phase.UNRESOLVED, Phase.PENDING):
        assert run([waiting, snap("newer", 1, newer)]).delete == (("waiting", Reason.FAILED),)
    # It holds no place on a disk: a full disk frees one place for the create, not two.
    others = [snap(f"manual{i}", i, ours=False) for i in range(5)]
    newest = snap("newest", 0.1, Phase.UNRESOLVED)
    children = [snap("c1", 0.5), snap("c2", 1), newest]
    assert run([*others, *children], create_pending=True).delete == (("c2", Reason.DISK_LIMIT),)


def test_others_on_the_disk_are_never_deleted_but_take_room() -> None:
    others = [snap(f"manual{i}", i, ours=False) for i in range(5)]
    children = [snap("c1", 0.5), snap("c2", 10)]
    decision = run(others + children, max_count=3, min_ready=1, create_pending=True)
    assert decision.delete == (("c2", Reason.DISK_LIMIT),)
    assert not decision.blocked


def test_a_full_disk_with_nothing_to_spare_blocks_the_source() -> None:
    others = [snap(f"manual{i}", i, ours=False) for i in range(6)]
    decision = run([*others, snap("c1", 0.5)], min_ready=1, create_pending=True)
    assert decision == Decision(delete=(), blocked=True)
    # A child already refused for want of room asks for room as a pending create does.
    waiting = snap("c2", 0, Phase.PENDING, waiting=True)
    assert run([*others, snap("c1", 0.5), waiting]).blocked


def test_a_snapshot_being_deleted_makes_room_without_a_second_deletion() -> None:
    children = [snap(f"c{i}", i) for i in range(6)] + [snap("going", 9, Phase.DELETING)]
    decision = run(children, max_count=7, create_pending=True)
    assert decision == Decision(delete=(), blocked=False)


def test_a_child_evs_refused_for_room_frees_a_place_even_if_the_disk_looks_roomy() -> None:
    """Snapshots made outside the cluster fill the disk: EVS's refusal is believed."""
    children = [snap(f"c{i}", i) for i in range(1, 4)]
    refused = snap("new", 0, Phase.PENDING, waiting=True)
    assert run([*children, refused]).delete == (("c3", Reason.DISK_LIMIT),)
    # Once the oldest is on its way out, the refused child waits for it: no second deletion.
    going = [snap("c3", 3, Phase.DELETING), *children[:2], refused]
    assert run(going) == Decision(delete=(), blocked=False)


def test_a_retain_child_is_never_deleted_for_room() -> None:
    """Its EVS snapshot would stay: the next child that frees a place goes, or none."""
    retain = [snap(f"keep{i}", 5 + i, frees=False) for i in range(3)]
    delete = [snap("c1", 1), snap("c2", 2)]
    refused = snap("new", 0, Phase.PENDING, waiting=True)
    assert run([*retain, *delete, refused], max_count=7).delete == (("c2", Reason.DISK_LIMIT),)
    assert run([*retain, delete[0], refused], max_count=7) == Decision(delete=(), blocked=True)
    # Rotated out by count it still goes (its policy keeps its snapshot), but fills the disk.
    full = [snap(f"k{i}", i, frees=False) for i in range(7)]
    decision = run(full, max_count=2, create_pending=True)
    assert {reason for _, reason in decision.delete} == {Reason.COUNT}
    assert decision.blocked


def test_the_disk_limit_frees_the_oldest_child_before_a_create() -> None:
    children = [snap(f"c{i}", i) for i in range(7)]
    decision = run(children, max_count=7, min_ready=2, create_pending=True)
    assert decision.delete == (("c6", Reason.DISK_LIMIT),)
    assert run(children, max_count=7, min_ready=7, create_pending=True).blocked


phases = st.sampled_from(list(Phase))
snapshot_sets = st.lists(
    st.builds(
        Snapshot,
        name=st.uuids().map(str),
        phase=phases,
        created=st.integers(0, 48).map(lambda h: NOW - timedelta(hours=h)),
        ours=st.booleans(),
        waiting_for_room=st.booleans(),
        frees_place=st.booleans(),
    ),
    max_size=14,
    unique_by=lambda s: s.name,
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    max_count = draw(st.integers(1, LIMIT))
    min_ready = draw(st.integers(0, max_count))
    hours = draw(st.none() | st.integers(1, 24 * 30))
    return Policy(max_count, min_ready, None if hours is None else timedelta(hours=hours))


@given(snapshots=snapshot_sets, policy=policies(), create_pending=st.booleans())
def test_retention_properties(
    snapshots: list[Snapshot], policy: Policy, create_pending: bool
) -> None:
    decision = decide(snapshots, policy, now=NOW, create_pending=create_pending, disk_limit=LIMIT)
    deleted = {name for name, _ in decision.delete}
    by_name = {s.name: s for s in snapshots}
    assert len(deleted) == len(decision.delete)
    ready = [s for s in snapshots if s.ours and s.phase is Phase.READY]
    for name in deleted:
        snapshot = by_name[name]
        assert snapshot.ours, "a non-child deleted"
        deletable = (Phase.READY, Phase.FAILED, Phase.UNRESOLVED)
        assert snapshot.phase in deletable, f"{snapshot.phase} deleted"
        if snapshot.phase is Phase.READY:
            newer = sum(1 for s in ready if (s.created, s.name) > (snapshot.created, snapshot.name))
            assert newer >= policy.min_ready, "one of the newest minReady Ready deleted"
    # A place is made only by a deletion that frees one, and one per refusal (or pending create).
    for_room = [by_name[name] for name, reason in decision.delete if reason is Reason.DISK_LIMIT]
    assert all(s.frees_place for s in for_room), "a child deleted for room that frees none"
    refusals = sum(1 for s in snapshots if s.ours and s.waiting_for_room)
    assert len(for_room) <= refusals + create_pending
    # A create the decision lets through fits on the disk, as far as the snapshots known show.
    if create_pending and not refusals and not decision.blocked:
        leaving = {name for name in deleted if by_name[name].frees_place}
        staying = [s for s in snapshots if s.stays_on_disk and s.name not in leaving]
        assert len(staying) + 1 <= LIMIT, "a create onto a full disk"
    # Once done, no more than maxCount Ready children remain.
    assert len([s for s in ready if s.name not in deleted]) <= policy.max_count
    # And what is left needs no second round of count, age or failed deletions.
    remaining = [s for s in snapshots if s.name not in deleted]
    again = decide(remaining, policy, now=NOW, create_pending=False, disk_limit=LIMIT)
    assert all(reason is Reason.DISK_LIMIT for _, reason in again.delete)
