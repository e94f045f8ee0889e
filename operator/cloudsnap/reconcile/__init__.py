"""The CloudSnapshot lifecycle as plain async code over the EVS client (DESIGN.md §2).

Knows nothing of kopf or the Kubernetes client: classes and Secrets come in through the
``ClassReader``/``SecretReader`` protocols, and each step returns a ``Result`` for the caller to
persist. ``Scheduler`` is the keyed delay queue that drives the steps.
"""

from cloudsnap.reconcile.accounts import Account, Accounts, ClassReader, SecretReader
from cloudsnap.reconcile.backoff import Backoff, Timing
from cloudsnap.reconcile.failures import Failure, Kind, LocalFailure, classify
from cloudsnap.reconcile.poller import BatchPoller
from cloudsnap.reconcile.ratelimit import TokenBucket
from cloudsnap.reconcile.reconciler import READY, SYNCED, Event, Reconciler, Result
from cloudsnap.reconcile.scheduler import Scheduler

__all__ = [
    "READY",
    "SYNCED",
    "Account",
    "Accounts",
    "Backoff",
    "BatchPoller",
    "ClassReader",
    "Event",
    "Failure",
    "Kind",
    "LocalFailure",
    "Reconciler",
    "Result",
    "Scheduler",
    "SecretReader",
    "Timing",
    "TokenBucket",
    "classify",
]
