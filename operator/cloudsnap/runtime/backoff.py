"""Requeue timing: how soon a resource is looked at again, per outcome.

Transient failures back off exponentially with jitter so that a burst of 5xx/429 answers spreads
the retries of many resources out instead of hammering EVS in lock-step; blocked resources retry at
a slow fixed interval (with jitter) because only a change outside the resource can fix them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with proportional jitter, capped."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 120.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (0-based); never above ``cap``.

        The jitter is a fraction of the nominal delay in both directions, so the mean stays on the
        exponential curve while retries of resources that failed together drift apart.
        """
        nominal = min(self.cap, self.base * self.factor ** max(0, attempt))
        spread = nominal * self.jitter * (2.0 * rng.random() - 1.0)
        return max(0.0, min(self.cap, nominal + spread))


@dataclass(frozen=True)
class Timing:
    """Every interval the reconciler hands back to the scheduler, in seconds."""

    poll: float = 2.0
    poll_stretch: float = 0.1
    """A snapshot that has been creating for a while is polled every this fraction of the time
    so far, when that is longer than ``poll`` (and at most every fifth of ``resync``): large
    disks take minutes, and each is then seen available at most about 10 % late."""
    resync: float = 300.0
    blocked: float = 120.0
    jitter: float = 0.1
    backoff: Backoff = field(default_factory=Backoff)
    absence_grace: float = 60.0
    """A snapshot not listed is declared NotFound only if still absent this much later (and
    never in this first span of its life, when a list may not show it yet)."""
    create_doubt: float = 300.0
    """After a create went unanswered, EVS may still apply it this long; extra snapshots tagged
    with the resource are looked for (and deleted) until then, and a deletion waits it out."""
    step_deadline: float = 120.0
    """No reconcile step runs longer; a stuck call is cut and retried."""
    poll_failure_grace: float = 60.0
    """A failing batched look at a resource's snapshot (the class's list call) is retried
    without a status write or an Event until it has failed on every try for this long."""

    def jittered(self, seconds: float, rng: random.Random) -> float:
        """Spread a fixed interval so resources created together do not resync together."""
        return max(0.0, seconds * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))
