"""Who called what, and who was throttled: the counts of EVS requests the admin API reports."""

from __future__ import annotations

from evs_simulator.faults import OPERATIONS


class CallLog:
    """Requests per operation, in total and per caller's ``User-Agent`` (``""`` if it sent none).

    Every request that reaches an EVS route counts, refused and faulted ones included, so a test
    can tell which of several clients sharing one simulator made the calls. ``throttled`` counts
    the calls among them that the gateway answered 429 instead of passing on.
    """

    def __init__(self) -> None:
        self.received: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self.by_agent: dict[str, dict[str, int]] = {}
        self.throttled: dict[str, int] = dict.fromkeys(OPERATIONS, 0)

    def record(self, operation: str, agent: str) -> None:
        self.received[operation] += 1
        self.by_agent.setdefault(agent, dict.fromkeys(OPERATIONS, 0))[operation] += 1
