"""Requeue timing: exponential backoff, its cap and its jitter."""

from __future__ import annotations

import random

from cloudsnap.runtime.backoff import Backoff


def test_backoff_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.0)
    rng = random.Random(1)
    assert [backoff.delay(n, rng) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_backoff_jitter_stays_within_its_band_and_spreads() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=120.0, jitter=0.25)
    rng = random.Random(3)
    samples = [backoff.delay(4, rng) for _ in range(500)]
    assert all(12.0 <= d <= 20.0 for d in samples)  # 16 s +/- 25 %
    assert max(samples) - min(samples) > 6.0  # resources failing together drift apart
    capped = [backoff.delay(30, rng) for _ in range(200)]
    assert all(90.0 <= d <= 120.0 for d in capped)
