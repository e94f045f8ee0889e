"""The token bucket holds its rate after the burst."""

from __future__ import annotations

import time

import pytest

from cloudsnap.providers.evs.ratelimit import TokenBucket


async def test_token_bucket_holds_the_rate_after_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=5)
    started = time.monotonic()
    waits = [await bucket.acquire() for _ in range(25)]
    elapsed = time.monotonic() - started
    assert waits[:5] == pytest.approx([0.0] * 5, abs=0.005)
    assert elapsed >= 20 / 100.0 * 0.95  # 20 tokens beyond the burst at 100/s
    assert sum(waits) > 0.1
