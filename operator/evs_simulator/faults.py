"""Seeded fault injection: the same seed and the same request sequence replay the same faults."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evs_simulator.errors import THROTTLED, Shape, SimError

Operation = Literal["create", "show", "list", "update", "delete", "rollback"]
OPERATIONS: tuple[Operation, ...] = ("create", "show", "list", "update", "delete", "rollback")
DEFAULT_CODES = {500: "EVS.5500", 503: "EVS.5503", 429: "APIG.0308"}


class FaultRule(BaseModel):
    """One rule of the admin API's ``PUT /_sim/faults``.

    ``late_apply`` is EVS applying a create the client gave up on: the request is checked as a
    create would be (a refusal is answered as usual), then left unanswered, the connection cut at
    once (``then: "disconnect"``) or held until the client leaves (``then: "hang"``), and the
    create applied ``apply_after_seconds`` after the request arrived, checks included.
    """

    model_config = ConfigDict(extra="forbid")

    operation: Literal["create", "show", "list", "update", "delete", "rollback", "*"] = "*"
    kind: Literal["error", "latency", "hang", "lost_response", "late_apply"]
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    status: Literal[500, 503, 429] = 500
    code: str | None = None
    latency_seconds: float = Field(default=0.0, ge=0.0)
    count: int | None = Field(default=None, ge=0)
    then: Literal["disconnect", "hang"] = "disconnect"
    apply_after_seconds: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _late_apply_is_for_creates(self) -> Self:
        if self.kind == "late_apply" and self.operation != "create":
            raise ValueError("late_apply is modelled for operation 'create' only")
        return self

    def error(self) -> SimError:
        """The answer of an ``error`` rule; APIG codes come in the gateway's shape."""
        code = self.code or DEFAULT_CODES[self.status]
        shape: Shape = "gateway" if code.startswith("APIG.") else "error"
        message = THROTTLED if self.status == 429 else "Internal error, please try again later."
        return SimError(self.status, code, message, shape)


class FaultPlan(BaseModel):
    """The admin API's fault body: a seed and the rules."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    rules: list[FaultRule] = []


@dataclass(frozen=True)
class Decision:
    """What to do to one request: wait this long, then maybe one disruptive fault."""

    latency: float = 0.0
    fault: FaultRule | None = None


class Faults:
    """Draws, per request, which rules fire; ``count`` caps how often a rule may fire."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._left: list[int | None] = []
        self._rng = random.Random(0)  # noqa: S311 - seeded on purpose, so faults replay

    def set(self, plan: FaultPlan) -> None:
        self._rules = list(plan.rules)
        self._left = [rule.count for rule in plan.rules]
        self._rng = random.Random(plan.seed)  # noqa: S311 - seeded on purpose, so faults replay

    def clear(self) -> None:
        self.set(FaultPlan())

    def decide(self, operation: str) -> Decision:
        """Latency rules add up; the first rule of another kind that fires wins."""
        latency = 0.0
        for index, rule in enumerate(self._rules):
            if rule.operation not in ("*", operation) or self._left[index] == 0:
                continue
            if self._rng.random() >= rule.rate:
                continue
            left = self._left[index]
            if left is not None:
                self._left[index] = left - 1
            if rule.kind == "latency":
                latency += rule.latency_seconds
                continue
            return Decision(latency, rule)
        return Decision(latency)
