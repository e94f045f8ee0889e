"""How fast one class calls EVS: an adaptive rate per operation, under an optional ceiling.

EVS sits behind Huawei's API gateway, which throttles per access key and per API at limits nobody
publishes: a call over the limit is answered 429 `APIG.0308` and never reaches EVS. Any fixed rate
is either slower than the account allows or faster. So each class's EVS client paces every
operation (create, list, show, update, delete) at a rate that follows the gateway's answers, the
way TCP CUBIC (RFC 8312) follows a network's: it grows while the pace is what holds calls back, is
cut by a factor on a throttled answer (or a storm of server errors), then climbs back quickly to
the rate that was throttled, lingers near it, and only then probes beyond it. docs/evs.md argues
the choice. The class's `spec.rateLimit`, when set, is a token bucket over all of them: a ceiling
the adaptive rates never exceed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cloudsnap.evs.client import Answered

WaitObserver = Callable[[float], None]
"""Hears how long each acquire waited (the operator feeds a histogram with it)."""

RateObserver = Callable[[str, float], None]
"""Hears an operation's new rate, in calls per second, whenever it changes."""

THROTTLED = "429"
_WHOLE = 1.0 - 1e-9
# Enough for any cap from any start; more would only overflow.
_MAX_DOUBLINGS = 64.0
# Outcomes that, when they make up a storm, mean EVS is overloaded rather than one call unlucky.
_OVERLOADED = ("5", "timeout", "connection_error")


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
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
        return self._clock() - started


@dataclass(frozen=True)
class Adaptation:
    """How an adaptive rate moves. The defaults are argued in docs/evs.md."""

    initial: float = 20.0
    """Calls per second of a new class, before any answer."""
    doubling_seconds: float = 1.0
    """Until the first throttled answer, the rate doubles every this many seconds of being the
    limit (slow start): a class finds a generous gateway within seconds."""
    decrease: float = 0.8
    """A throttled answer cuts the rate to this fraction of the gateway's rate (CUBIC's beta)."""
    recovery_seconds: float = 10.0
    """Seconds of being the limit to climb back to the gateway's rate (CUBIC's K); as long
    again takes it 20 % above, probing for more."""
    floor: float = 0.5
    """The rate never falls below this (calls per second)."""
    cap: float = 1000.0
    """Nor grows above this, as no gateway lets one key go faster."""
    burst_seconds: float = 0.5
    """Calls saved up while idle, in seconds' worth of the current rate (at least one call)."""
    storm_window: int = 10
    storm_failures: int = 5
    """Server errors or timeouts in ``storm_failures`` of the last ``storm_window`` answers are a
    storm, and cut the rate as a throttled answer does; fewer are bad luck, retried as usual."""


class AdaptiveRate:
    """One operation's pace, adapted to the answers; pure arithmetic over an injected clock.

    The growth clock runs only on answers to calls that the pace held back: a class that asks
    for less than its rate does not drift upwards, so a burst after a quiet hour does not meet
    the gateway at a rate it never tried.
    """

    def __init__(
        self,
        adaptation: Adaptation,
        *,
        ceiling: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adaptation = adaptation
        self._ceiling = adaptation.cap if ceiling is None else min(ceiling, adaptation.cap)
        self._clock = clock
        self._start = min(adaptation.initial, self._ceiling)
        self.rate = self._start
        self._peak: float | None = None  # the rate last throttled (CUBIC's W_max)
        self._epoch = clock()  # when the rate was last cut
        self._grown = 0.0  # seconds of being the limit since then
        self._admitted = 0  # answers since then that were not throttled
        self._tokens = self._burst()
        self._stamp = self._epoch
        self._recent: deque[bool] = deque(maxlen=adaptation.storm_window)

    def _burst(self) -> float:
        return max(1.0, self.rate * self._adaptation.burst_seconds)

    def wait(self) -> float:
        """Seconds until a call may go at the current rate (0: now)."""
        now = self._clock()
        self._tokens = min(self._burst(), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        # A hair under a whole token is a whole one: the refill after waiting exactly the delay
        # computed here may round just short of it.
        return 0.0 if self._tokens >= _WHOLE else (1.0 - self._tokens) / self.rate

    def take(self) -> float:
        """Spend the call's token (after ``wait`` said 0); returns when it was sent."""
        self.wait()
        self._tokens = max(0.0, self._tokens - 1.0)
        return self._stamp

    def answered(self, sent: float, outcome: str, *, held: bool) -> bool:
        """Learn from the answer to a call sent at ``sent``; ``held``: the pace made it wait.

        Returns whether the rate changed. An answer to a call sent before the last cut says
        nothing about the rate since, so it cuts nothing more.
        """
        adaptation = self._adaptation
        overloaded = outcome.startswith(_OVERLOADED)
        self._recent.append(overloaded)
        storm = overloaded and sum(self._recent) >= adaptation.storm_failures
        if outcome == THROTTLED or storm:
            if sent < self._epoch:
                return False
            self._peak = self._limit_seen()
            self._epoch = self._clock()
            self._grown = 0.0
            self._admitted = 0
            self._recent.clear()
            return self._set(self._peak * adaptation.decrease)
        self._admitted += 1
        if not held or overloaded:
            return False
        self._grown += 1.0 / self.rate
        return self._set(self._grow())

    def _limit_seen(self) -> float:
        """The rate the gateway allowed, to aim the recovery at.

        A gateway's token bucket answers 429 only once its burst is spent, so at the first
        throttled answer the rate is above the limit by however long the burst lasted. Between
        two cuts, though, the bucket went from empty to empty: what it let through divided by the
        time between them is its rate. Never above the rate that was throttled, never below the
        cut of it (a quiet spell between the two cuts would make the estimate too low).
        """
        if self._peak is None:
            return self.rate
        elapsed = self._clock() - self._epoch
        if elapsed <= 0:
            return self.rate
        measured = self._admitted / elapsed
        return max(self.rate * self._adaptation.decrease, min(self.rate, measured))

    def _grow(self) -> float:
        adaptation = self._adaptation
        if self._peak is None:
            doublings = min(self._grown / adaptation.doubling_seconds, _MAX_DOUBLINGS)
            return self._start * math.pow(2.0, doublings)
        # CUBIC: W(t) = W_max + C (t - K)^3 with C chosen so that W(0) = beta * W_max.
        shape = (self._grown - adaptation.recovery_seconds) / adaptation.recovery_seconds
        return self._peak * (1.0 + (1.0 - adaptation.decrease) * shape**3)

    def _set(self, rate: float) -> bool:
        rate = max(self._adaptation.floor, min(self._ceiling, rate))
        changed = rate != self.rate
        self.rate = rate
        return changed


class RateControl:
    """A class's pace: an AdaptiveRate per EVS operation, under the class's optional ceiling.

    ``acquire(operation)`` is the EVS client's limiter: it waits the operation's turn (and the
    ceiling's), and returns the function the client tells the outcome to.
    """

    def __init__(
        self,
        adaptation: Adaptation | None = None,
        *,
        ceiling: TokenBucket | None = None,
        wait_observer: WaitObserver | None = None,
        rate_observer: RateObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adaptation = adaptation or Adaptation()
        self._ceiling = ceiling
        self._wait_observer = wait_observer
        self._rate_observer = rate_observer
        self._clock = clock
        self._rates: dict[str, AdaptiveRate] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def rate(self, operation: str) -> AdaptiveRate:
        """The operation's rate, made on its first use."""
        rate = self._rates.get(operation)
        if rate is None:
            ceiling = self._ceiling.rate if self._ceiling is not None else None
            rate = AdaptiveRate(self._adaptation, ceiling=ceiling, clock=self._clock)
            self._rates[operation] = rate
            self._locks[operation] = asyncio.Lock()
            self._publish(operation, rate)
        return rate

    async def acquire(self, operation: str) -> Answered:
        """Wait for the operation's turn, first come first served, then the ceiling's."""
        rate = self.rate(operation)
        started = self._clock()
        held = False
        async with self._locks[operation]:
            while (delay := rate.wait()) > 0:
                held = True
                await asyncio.sleep(delay)
            sent = rate.take()
        if self._ceiling is not None:
            await self._ceiling.acquire()
        if self._wait_observer is not None:
            self._wait_observer(self._clock() - started)

        def answered(outcome: str) -> None:
            if rate.answered(sent, outcome, held=held):
                self._publish(operation, rate)

        return answered

    def _publish(self, operation: str, rate: AdaptiveRate) -> None:
        if self._rate_observer is not None:
            self._rate_observer(operation, rate.rate)
