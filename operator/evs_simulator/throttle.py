"""The API gateway's throttling: a token bucket per caller and operation.

A bucket holds up to ``burst`` tokens and refills continuously at ``rate`` per second; a call takes
one token or, with none left, is answered 429 APIG.0308 and never reaches EVS. Buckets refill
lazily when the next call comes, against an injectable monotonic clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evs_simulator.faults import OPERATIONS, Operation


def _default_burst(fields: dict[str, Any]) -> int:
    rate = fields.get("rate")
    return max(1, math.ceil(rate)) if isinstance(rate, float) else 1


class RateLimit(BaseModel):
    """One operation's limit: calls per second, and how many may come at once.

    The burst defaults to the rate rounded up, at least 1: a full second's worth of calls.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0, allow_inf_nan=False)
    burst: int = Field(default_factory=_default_burst, ge=1)


def parse_rate_limits(text: str) -> dict[Operation, RateLimit]:
    """Read the CLI form ``OPERATION=RATE[/BURST],...``; errors name the item at fault."""
    limits: dict[Operation, RateLimit] = {}
    for item in text.split(","):
        operation, equals, value = item.strip().partition("=")
        if not equals:
            raise ValueError(f"expected OPERATION=RATE[/BURST], got {item!r}")
        if operation not in OPERATIONS:
            raise ValueError(
                f"unknown operation {operation!r} in {item!r}; one of {', '.join(OPERATIONS)}"
            )
        if operation in limits:
            raise ValueError(f"{operation} is limited twice")
        rate, slash, burst = value.partition("/")
        fields = {"rate": rate, "burst": burst} if slash else {"rate": rate}
        try:
            limits[operation] = RateLimit.model_validate(fields)
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise ValueError(f"{item!r}: {problem['loc'][0]}: {problem['msg']}") from None
    return limits


@dataclass
class Bucket:
    """The tokens one caller had left for one operation at ``stamp``."""

    limit: RateLimit
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        """Refill for the time passed, then spend a token if a whole one is there."""
        refilled = self.tokens + (now - self.stamp) * self.limit.rate
        self.tokens = min(float(self.limit.burst), refilled)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Throttle:
    """The limits in force (an operation without one is unlimited) and the buckets they fill."""

    def __init__(
        self, limits: Mapping[Operation, RateLimit], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.limits: dict[Operation, RateLimit] = {}
        self._buckets: dict[tuple[str, Operation], Bucket] = {}
        self.set(limits)

    def set(self, limits: Mapping[Operation, RateLimit]) -> None:
        """Put new limits in force; every bucket starts full again."""
        self.limits = dict(limits)
        self._buckets = {}

    def take(self, caller: str, operation: Operation) -> RateLimit | None:
        """Spend a token of ``caller``'s bucket for ``operation``; the limit hit if none is left."""
        limit = self.limits.get(operation)
        if limit is None:
            return None
        now = self.clock()
        bucket = self._buckets.get((caller, operation))
        if bucket is None:
            bucket = self._buckets[caller, operation] = Bucket(limit, float(limit.burst), now)
        return None if bucket.take(now) else limit
