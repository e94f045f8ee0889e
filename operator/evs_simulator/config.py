"""What a simulator instance is started with: credentials, seed disks, timings, limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from evs_simulator.faults import Operation
from evs_simulator.throttle import RateLimit

DEFAULT_ACCESS_KEY = "SIMULATORACCESSKEY01"
DEFAULT_SECRET_KEY = "simulator-secret-key-0123456789abcdef"  # noqa: S105 - a local test double
DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_AVAILABILITY_ZONES = ("cn-north-4a", "cn-north-4b", "cn-north-4c")


@dataclass(frozen=True)
class VolumeSeed:
    """A disk present from the start (and again after every reset)."""

    id: str
    size: int
    status: str = "available"

    @classmethod
    def parse(cls, text: str) -> VolumeSeed:
        """Read the CLI form ``ID:SIZE:STATUS`` (status optional)."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ValueError(f"volume must be ID:SIZE[:STATUS], got {text!r}")
        try:
            size = int(parts[1])
        except ValueError:
            raise ValueError(
                f"volume size must be a whole number of GB, got {parts[1]!r}"
            ) from None
        if size < 1:
            raise ValueError(f"volume size must be at least 1 GB, got {size}")
        return cls(parts[0], size, parts[2] if len(parts) == 3 else "available")


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of one simulator; secrets are kept out of the repr.

    ``volume_quota`` is the project's disk quota (every disk not yet gone counts, seeded ones
    included; ``None``: unlimited); disks can only be created in ``availability_zones``.
    """

    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = field(default=DEFAULT_SECRET_KEY, repr=False)
    project_id: str = DEFAULT_PROJECT_ID
    security_token: str | None = field(default=None, repr=False)
    auth_token: str | None = field(default=None, repr=False)
    volumes: tuple[VolumeSeed, ...] = ()
    create_seconds: float = 0.0
    delete_seconds: float = 0.0
    rollback_seconds: float = 0.0
    volume_create_seconds: float = 0.0
    volume_delete_seconds: float = 0.0
    availability_zones: tuple[str, ...] = DEFAULT_AVAILABILITY_ZONES
    volume_quota: int | None = None
    list_lag_seconds: float = 0.0
    rate_limits: Mapping[Operation, RateLimit] = field(default_factory=dict, hash=False)
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    access_log: bool = False
