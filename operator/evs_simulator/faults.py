"""Seeded fault injection: the same seed and the same request sequence replay the same faults."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evs_simulator.errors import THROTTLED, Shape, SimError

Operation = Literal[
    "create",
    "show",
    "list",
    "update",
    "delete",
    "rollback",
    "create_volume",
    "show_job",
    "show_volume",
    "list_volumes",
    "delete_volume",
]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
# The creates whose request may be applied after the client gave up on it (``late_apply``).
LATE_APPLIED: tuple[Operation, ...] = ("create", "create_volume")
DEFAULT_CODES = {500: "EVS.5500", 503: "EVS.5503", 429: "APIG.0308"}
# The message of a refusal rule that chose none.
REFUSED = "The request was refused."


class FaultRule(BaseModel):
    """One rule of the admin API's ``PUT /_sim/faults``.

    ``error`` is a server-side failure or throttling (500, 503, 429, codes defaulted).
    ``refusal`` is EVS saying no to a request it understood: any 4xx ``status`` (400 by default)
    with the EVS ``code`` and ``message`` chosen, in EVS's error body (the gateway's for an
    ``APIG.`` code), nothing applied; for example a delete refused because the disk is replicated
    by SDRS (``EVS.2089``), which no state of the simulator produces by itself.
    ``late_apply`` is EVS applying a create (of a snapshot or of a disk) the client gave up on:
    the request is checked as a create would be (a refusal is answered as usual), then left
    unanswered, the connection cut at once (``then: "disconnect"``) or held until the client
    leaves (``then: "hang"``), and the create applied ``apply_after_seconds`` after the request
    arrived, checks included.
    """

    model_config = ConfigDict(extra="forbid")

    operation: Operation | Literal["*"] = "*"
    kind: Literal["error", "refusal", "latency", "hang", "lost_response", "late_apply"]
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    status: int | None = None
    code: str | None = Field(default=None, min_length=1)
    message: str | None = None
    latency_seconds: float = Field(default=0.0, ge=0.0)
    count: int | None = Field(default=None, ge=0)
    then: Literal["disconnect", "hang"] = "disconnect"
    apply_after_seconds: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _late_apply_is_for_creates(self) -> Self:
        if self.kind == "late_apply" and self.operation not in LATE_APPLIED:
            raise ValueError(
                f"late_apply is modelled for operations {', '.join(LATE_APPLIED)} only"
            )
        return self

    @model_validator(mode="after")
    def _status_fits_the_kind(self) -> Self:
        if self.kind == "refusal":
            if self.status is not None and not 400 <= self.status <= 499:
                raise ValueError("a refusal answers a 4xx status")
            if self.code is None:
                raise ValueError("a refusal needs the EVS code it answers with")
        elif self.status is not None and self.status not in DEFAULT_CODES:
            raise ValueError(f"an error answers one of {sorted(DEFAULT_CODES)}")
        return self

    def error(self) -> SimError:
        """The answer of an ``error`` or ``refusal`` rule; APIG codes come in the gateway's
        shape, the others in EVS's ``{"error": {...}}``."""
        if self.kind == "refusal":
            assert self.code is not None  # _status_fits_the_kind requires it
            status, code = self.status or 400, self.code
            message = self.message or REFUSED
        else:
            status = self.status or 500
            code = self.code or DEFAULT_CODES[status]
            default = THROTTLED if status == 429 else "Internal error, please try again later."
            message = self.message or default
        shape: Shape = "gateway" if code.startswith("APIG.") else "error"
        return SimError(status, code, message, shape)


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
