"""Per-class request rate limit: an async token bucket.

Each class's EVS client awaits ``acquire`` before every HTTP request (its ``limiter``), so creates,
retries and polling all draw from the same bucket without the reconcile code having to ask.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WaitObserver = Callable[[float], None]
"""Hears how long each acquire waited (the operator feeds a histogram with it)."""


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        observer: WaitObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._observer = observer
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns the seconds waited.

        Waiters queue on a lock so tokens are handed out first come, first served.
        """
        started = self._clock()
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1.0
        waited = self._clock() - started
        if self._observer is not None:
            self._observer(waited)
        return waited
