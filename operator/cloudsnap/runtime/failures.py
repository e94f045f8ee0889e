"""What went wrong, and which of the three error classes it falls in (docs/lifecycle.md).

invalid   - our own request is wrong; only a spec change helps, so nothing is retried.
blocked   - something outside the resource must change (disk, quota, credentials, class); retried
            at a slow interval, and at once when the class or its Secret changes.
transient - the service or the network hiccupped; retried with capped exponential backoff.

Provider error codes stay in the external client that maps them (``providers.evs.connector``);
the controllers see only a Failure: its class, a ``Cause`` where they must act on it, the
provider's code and request ID for people to read.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from cloudsnap.api.models import CONDITION_REASON_PATTERN, StatusError

_REASON = re.compile(CONDITION_REASON_PATTERN)


class Kind(enum.StrEnum):
    """The three error classes; their values are also the reconcile outcome metric labels."""

    INVALID = "invalid"
    BLOCKED = "blocked"
    TRANSIENT = "transient"


class Cause(enum.Enum):
    """The few causes the generic loop acts on, whatever the provider's code for them."""

    NOT_FOUND = "not found"  # the snapshot (or, on create, the disk) does not exist
    QUOTA = "quota"  # the disk has as many snapshots as the provider allows
    THROTTLED = "throttled"  # refused before it reached the service: it certainly did nothing
    NOT_SENT = "not sent"  # never left this process (it may not act now): it did nothing
    # The service would not change the snapshot in the state it (or its disk) is in: in use,
    # changing status. That state changes without us, so the change is worth sending again.
    REFUSED = "refused"
    # The disk is attached to a server and the create did not ask to snapshot it anyway.
    DISK_IN_USE = "disk in use"


# Local codes: the reason lies with the cluster's configuration or with ownership, not the cloud.
CLASS_NOT_FOUND = "ClassNotFound"
SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - an error code
INVALID_CREDENTIALS = "InvalidCredentials"
INVALID_CLASS = "InvalidClass"
INVALID_SPEC = "InvalidSpec"
SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
ALREADY_OWNED = "AlreadyOwned"
ACCOUNT_CHANGED = "AccountChanged"
# The class does not admit the resource's namespace (spec.allowedNamespaces).
CLASS_NOT_ALLOWED = "ClassNotAllowed"
# The class does not let the resource name this source (spec.volumeIDs, spec.adoption), or the
# disk belongs to another namespace's claim.
SOURCE_NOT_ALLOWED = "SourceNotAllowed"
CACHE_NOT_SYNCED = "CacheNotSynced"
# A spec.persistentVolumeClaimName that leads to no EVS disk (controllers/snapshot/volumes.py).
CLAIM_NOT_FOUND = "ClaimNotFound"
CLAIM_NOT_BOUND = "ClaimNotBound"
UNSUPPORTED_VOLUME = "UnsupportedVolume"
# A create refused because the disk is attached and spec.force is false: the spec's to change.
DISK_IN_USE = "DiskInUse"
STEP_DEADLINE = "StepDeadlineExceeded"
NOT_LEADING = "NotLeading"  # a call held back: this replica does not hold the Lease now


@dataclass(frozen=True)
class Failure:
    """A failed step as the status shows it: code, message, class; never a secret."""

    code: str
    message: str
    kind: Kind
    request_id: str | None = None
    cause: Cause | None = None

    @property
    def retryable(self) -> bool:
        """Whether the operator retries on its own, soon (the status.error.retryable field)."""
        return self.kind is Kind.TRANSIENT

    @property
    def may_have_happened(self) -> bool:
        """Whether the failed call may still have taken effect: its answer never came (a
        refusal, a throttled call and one that never left did nothing)."""
        return self.kind is Kind.TRANSIENT and self.cause not in (Cause.THROTTLED, Cause.NOT_SENT)

    @property
    def reason(self) -> str:
        """The Synced condition's reason: a local code as it is (ClassNotFound, AlreadyOwned,
        ...), else the generic ReconcileError (provider codes such as EVS.5413 are no valid
        reason)."""
        return self.code if _REASON.match(self.code) else "ReconcileError"

    def describe(self) -> str:
        """One line for the Synced condition and the Failed event, with the request ID."""
        text = f"{self.code}: {self.message}"
        return f"{text} (request {self.request_id})" if self.request_id else text

    def status_error(self, now: datetime) -> StatusError:
        """The status.error field of this failure, seen first and last ``now``."""
        return StatusError(
            code=self.code,
            message=self.message,
            retryable=self.retryable,
            request_id=self.request_id,
            first_seen=now,
            time=now,
        )


class LocalFailure(Exception):
    """A failure found before any cloud call: a missing class, Secret or key, an unsynced cache."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


class ExternalError(Exception):
    """A cloud call failed; ``failure`` says how, in the generic loop's terms."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure
