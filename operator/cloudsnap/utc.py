"""One UTC timestamp type for every model: EVS sends times without a zone, Kubernetes needs one."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def as_utc(value: datetime) -> datetime:
    """A zone-less time read as UTC; an aware one converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime field that always holds an aware UTC time."""


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as Kubernetes writes it (``Z`` or an offset) as an aware UTC time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC to the second with a ``Z``: how Kubernetes writes its timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
