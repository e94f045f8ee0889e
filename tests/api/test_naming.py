"""The default EVS snapshot name: stable, at most 255 UTF-8 bytes, never a backup's prefix."""

from hypothesis import given
from hypothesis import strategies as st

from cloudsnap.api import CloudSnapshotSpec, effective_snapshot_name

VOLUME_ID = "5aa119a8-d25b-45a7-8d1b-88e127885635"
UNNAMED = CloudSnapshotSpec(volume_id=VOLUME_ID)


def test_explicit_name_wins() -> None:
    spec = CloudSnapshotSpec(volume_id=VOLUME_ID, name="snap-001")
    assert effective_snapshot_name("prod", "db-daily", spec) == "snap-001"


def test_default_is_namespace_dash_name() -> None:
    assert effective_snapshot_name("prod", "db-daily", UNNAMED) == "prod-db-daily"


def test_exactly_255_bytes_is_kept_whole() -> None:
    name = "n" * (255 - len("ns-"))
    assert effective_snapshot_name("ns", name, UNNAMED) == f"ns-{name}"


def test_long_default_is_cut_with_a_digest() -> None:
    namespace, name = "a" * 63, "b" * 253
    result = effective_snapshot_name(namespace, name, UNNAMED)
    assert len(result.encode()) == 255
    assert result.startswith(f"{namespace}-bbb")
    other = effective_snapshot_name(namespace, name[:-1] + "c", UNNAMED)
    assert other != result
    assert other[:-9] == result[:-9]


def test_cut_falls_on_a_utf8_character_boundary() -> None:
    """A 3-byte character straddling the limit is dropped whole, never split."""
    name = "x" * 241 + "€" * 10
    result = effective_snapshot_name("ns", name, UNNAMED)
    assert len(result.encode()) == 253
    assert result[:-9] == "ns-" + "x" * 241


def test_reserved_backup_prefix_is_escaped() -> None:
    result = effective_snapshot_name("autobk_snapshot_x", "y", UNNAMED)
    assert not result.startswith("autobk_snapshot_")
    assert result.endswith("autobk_snapshot_x-y")


@given(namespace=st.text(min_size=1, max_size=80), name=st.text(min_size=1, max_size=300))
def test_default_always_fits_evs(namespace: str, name: str) -> None:
    result = effective_snapshot_name(namespace, name, UNNAMED)
    assert 0 < len(result.encode()) <= 255
    assert not result.startswith("autobk_snapshot_")
    assert result == effective_snapshot_name(namespace, name, UNNAMED)
