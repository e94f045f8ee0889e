"""A clock for the simulator's injectable ``clock`` parameters: time passes only when told."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """Monotonic seconds that a test sets or advances, so timing tests never sleep."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
