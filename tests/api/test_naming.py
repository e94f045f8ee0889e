"""The default EVS snapshot name: stable, within the 64 characters (and 255 UTF-8 bytes) EVS's
current pages allow, never a backup's prefix."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cloudsnap.api.models import CloudSnapshotSpec
from cloudsnap.api.naming import effective_snapshot_name
from cloudsnap.controllers.schedule.plan.runs import child_name

VOLUME_ID = "5aa119a8-d25b-45a7-8d1b-88e127885635"
UNNAMED = CloudSnapshotSpec(volume_id=VOLUME_ID)


def test_explicit_name_wins() -> None:
    spec = CloudSnapshotSpec(volume_id=VOLUME_ID, name="snap-001")
    assert effective_snapshot_name("prod", "db-daily", spec) == "snap-001"


def test_default_is_namespace_dash_name() -> None:
    assert effective_snapshot_name("prod", "db-daily", UNNAMED) == "prod-db-daily"


def test_exactly_64_characters_is_kept_whole() -> None:
    name = "n" * (64 - len("ns-"))
    assert effective_snapshot_name("ns", name, UNNAMED) == f"ns-{name}"


def test_longest_namespace_and_name_label_fit_64_characters_with_a_digest() -> None:
    """A namespace and a name of 63 characters each (DNS labels at their longest): 127
    characters joined, cut to 64 with the head, a digest of the whole and the tail."""
    namespace, name = "a" * 62 + "z", "b" * 62 + "y"
    result = effective_snapshot_name(namespace, name, UNNAMED)
    assert len(result) == 64
    assert result.startswith("a" * 32 + "-")
    assert result.endswith("-" + "b" * 21 + "y")
    other = effective_snapshot_name(namespace, name[:-1] + "x", UNNAMED)
    assert other != result
    assert other[:32] == result[:32]


def test_a_253_character_name_fits_too() -> None:
    result = effective_snapshot_name("a" * 63, "b" * 253, UNNAMED)
    assert len(result) == 64
    assert result == effective_snapshot_name("a" * 63, "b" * 253, UNNAMED)  # stable


def test_a_schedule_childs_default_name_keeps_its_slot() -> None:
    """A child's name is up to 63 characters, so "<namespace>-<child>" is up to 127; cut to
    64, it still ends in the slot the child was made for."""
    slot = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    child = child_name("db-every-6h-" + "x" * 60, "data-postgres-0", slot)
    result = effective_snapshot_name("team-" + "n" * 58, child, UNNAMED)
    assert len(f"team-{'n' * 58}-{child}") == 127
    assert len(result) == 64
    assert result.endswith("20260601-0600")


def test_multibyte_text_is_cut_by_characters_and_stays_within_255_bytes() -> None:
    result = effective_snapshot_name("ns", "€" * 100, UNNAMED)
    assert len(result) == 64
    assert len(result.encode()) <= 255


def test_reserved_backup_prefix_is_escaped() -> None:
    result = effective_snapshot_name("autobk_snapshot_x", "y", UNNAMED)
    assert not result.startswith("autobk_snapshot_")
    assert result.endswith("autobk_snapshot_x-y")


@given(namespace=st.text(min_size=1, max_size=80), name=st.text(min_size=1, max_size=300))
def test_default_always_fits_evs(namespace: str, name: str) -> None:
    result = effective_snapshot_name(namespace, name, UNNAMED)
    assert 0 < len(result.encode()) <= 255
    assert len(result) <= 64
    assert not result.startswith("autobk_snapshot_")
    assert result == effective_snapshot_name(namespace, name, UNNAMED)
