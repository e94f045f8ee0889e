"""The CloudSnapshot lifecycle as plain async code (docs/architecture.md).

Knows nothing of kopf or the Kubernetes client: classes and Secrets come in through the
``ClassReader``/``SecretReader`` protocols, the cloud through a ``Connector`` (``EVSConnector`` for
EVS), and each step returns a ``Result`` for the caller to persist. ``Scheduler`` is the keyed
delay queue that drives the steps.
"""

from cloudsnap.reconcile.accounts import Account, Accounts, ClassReader, SecretReader
from cloudsnap.reconcile.backoff import Backoff, Timing
from cloudsnap.reconcile.evs_external import EVSConnector, classify
from cloudsnap.reconcile.external import Connection, Connector, ExternalClient
from cloudsnap.reconcile.failures import Cause, ExternalError, Failure, Kind, LocalFailure
from cloudsnap.reconcile.poller import BatchPoller
from cloudsnap.reconcile.ratelimit import TokenBucket
from cloudsnap.reconcile.reconciler import (
    READY,
    SYNCED,
    Claims,
    Event,
    Outcome,
    Reconciler,
    Result,
)
from cloudsnap.reconcile.scheduler import Scheduler

__all__ = [
    "READY",
    "SYNCED",
    "Account",
    "Accounts",
    "Backoff",
    "BatchPoller",
    "Cause",
    "Claims",
    "ClassReader",
    "Connection",
    "Connector",
    "EVSConnector",
    "Event",
    "ExternalClient",
    "ExternalError",
    "Failure",
    "Kind",
    "LocalFailure",
    "Outcome",
    "Reconciler",
    "Result",
    "Scheduler",
    "SecretReader",
    "Timing",
    "TokenBucket",
    "classify",
]
