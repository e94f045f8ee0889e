"""What went wrong, and which of DESIGN.md §2's three classes it falls in.

invalid   - our own request is wrong; only a spec change helps, so nothing is retried.
blocked   - something outside the resource must change (disk, quota, credentials, class); retried
            at a slow interval, and at once when the class or its Secret changes.
transient - the service or the network hiccupped; retried with capped exponential backoff.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cloudsnap.evs import EVSAPIError, EVSError


class Kind(enum.StrEnum):
    """The three error classes; their values are also the reconcile outcome metric labels."""

    INVALID = "invalid"
    BLOCKED = "blocked"
    TRANSIENT = "transient"


# Local codes: the reason lies with the cluster's configuration, not with EVS.
CLASS_NOT_FOUND = "ClassNotFound"
SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - an error code
INVALID_CREDENTIALS = "InvalidCredentials"
INVALID_CLASS = "InvalidClass"
INVALID_SPEC = "InvalidSpec"
SNAPSHOT_NOT_FOUND = "SnapshotNotFound"

AUTH_CODES = frozenset({"APIG.0301", "EVS.5401", "EVS.5403", "EVS.0001", "EVS.0002"})
_BLOCKED_CODES = AUTH_CODES | {"EVS.5413", "EVS.2019", "EVS.2043", "EVS.1047"}
# Cinder's wording for a disk that is attached, which EVS inherits (EVS-API.md, "Errors").
_IN_USE_HINTS = ("in-use", "must be available")


@dataclass(frozen=True)
class Failure:
    """A failed step as the status shows it: code, message, class; never a secret."""

    code: str
    message: str
    kind: Kind

    @property
    def retryable(self) -> bool:
        """Whether the operator retries on its own, soon (the status.error.retryable field)."""
        return self.kind is Kind.TRANSIENT

    def describe(self) -> str:
        """One line for the Synced condition and the Failed event."""
        return f"{self.code}: {self.message}"


class LocalFailure(Exception):
    """A failure found before any EVS call: a missing class, Secret or key."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def classify(exc: EVSError, operation: str) -> Failure:
    """Map an EVS client error to a Failure, per the table in DESIGN.md §2.

    A 404 on create means the disk is missing (blocked: someone may create it); a 404 elsewhere is
    handled by the caller as "the snapshot is gone" before it ever gets here.
    """
    if not isinstance(exc, EVSAPIError) or exc.retryable:
        code = exc.code or _transport_code(exc)
        return Failure(code, exc.message, Kind.TRANSIENT)
    status = exc.status_code or 0
    code = exc.code or f"HTTP.{status}"
    if code in _BLOCKED_CODES or status in (401, 403, 413):
        return Failure(code, exc.message, Kind.BLOCKED)
    if operation == "create" and status == 404:
        return Failure(code, exc.message, Kind.BLOCKED)
    if operation == "create" and any(hint in exc.message for hint in _IN_USE_HINTS):
        return Failure(code, exc.message, Kind.BLOCKED)
    return Failure(code, exc.message, Kind.INVALID)


def blame_class(failure: Failure, class_name: str, secret_name: str) -> Failure:
    """Name the class and its Secret in an authentication failure: that is where the fix lies."""
    if failure.code not in AUTH_CODES and not failure.code.startswith(("HTTP.401", "HTTP.403")):
        return failure
    note = f"CloudSnapshotClass {class_name}: check the credentials in Secret {secret_name}"
    return Failure(failure.code, f"{failure.message} ({note})", failure.kind)


def _transport_code(exc: EVSError) -> str:
    if exc.status_code is not None:
        return f"HTTP.{exc.status_code}"
    return type(exc).__name__.removeprefix("EVS").removesuffix("Error") or "Error"
