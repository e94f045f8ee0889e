"""Errors the simulator answers, each in the body shape the real service uses for it.

EVS itself answers ``{"error": {...}}`` or the same object keyed by a type (``itemNotFound``,
``badRequest``); the API gateway in front of it answers ``{"error_code", "error_msg",
"request_id"}``. Clients must cope with all three, so the simulator produces all three.
"""

from __future__ import annotations

from typing import Any, Literal

Shape = Literal["error", "itemNotFound", "badRequest", "gateway"]
THROTTLED = "The throttling threshold has been reached: policy user over ratelimit"


class SimError(Exception):
    """An EVS failure answer: HTTP status, EVS code, message and the body shape to use."""

    def __init__(self, status: int, code: str, message: str, shape: Shape = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.shape = shape

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body; the gateway shape also carries the request id."""
        if self.shape == "gateway":
            return {"error_code": self.code, "error_msg": self.message, "request_id": request_id}
        return {self.shape: {"message": self.message, "code": self.code}}


def bad_request(code: str, message: str) -> SimError:
    """A 400 in EVS's plain ``error`` shape."""
    return SimError(400, code, message)


def not_found(kind: str, item_id: str) -> SimError:
    """EVS.5404 in the ``itemNotFound`` keyed shape, as EVS answers for a missing item."""
    return SimError(404, "EVS.5404", f"{kind} {item_id} could not be found.", "itemNotFound")


def unauthorized(reason: str) -> SimError:
    """The gateway's APIG.0301: the request never reached EVS."""
    return SimError(
        401, "APIG.0301", f"Incorrect IAM authentication information: {reason}", "gateway"
    )


def throttled(rate: float) -> SimError:
    """The gateway's 429 APIG.0308 for a caller over ``rate`` calls per second."""
    return SimError(429, "APIG.0308", f"{THROTTLED},limit:{rate:g},time:1 second", "gateway")


def invalid_volume(volume_id: str, status: str, wanted: str) -> SimError:
    """Cinder's refusal of a disk in the wrong status (no EVS code is documented for it)."""
    return SimError(
        400,
        "EVS.5400",
        f"Invalid volume: Volume {volume_id} status must be {wanted}, "
        f"but current status is: {status}.",
        "badRequest",
    )
