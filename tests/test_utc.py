"""Kubernetes timestamps in and out: RFC 3339, UTC, ``Z``."""

from datetime import UTC, datetime, timedelta, timezone

from cloudsnap.utc import parse_time, rfc3339


def test_parse_time_reads_z_and_offsets_as_utc() -> None:
    moment = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert parse_time("2026-03-29T01:30:00Z") == moment
    parsed = parse_time("2026-03-29T03:30:00+02:00")
    assert (parsed, parsed.tzinfo) == (moment, UTC)


def test_rfc3339_writes_utc_to_the_second_with_z() -> None:
    berlin = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 3, 29, 3, 30, 5, 999999, tzinfo=berlin)) == "2026-03-29T01:30:05Z"


def test_a_written_time_reads_back_the_same() -> None:
    moment = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_time(rfc3339(moment)) == moment
