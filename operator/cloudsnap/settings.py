"""Operator settings: every flag of `cloudsnap-operator run` also comes from CLOUDSNAP_<FLAG>.

Flags win over the environment, the environment over the defaults. List values in the
environment are JSON (CLOUDSNAP_NAMESPACE='["a","b"]'), as the Helm chart writes them.
"""

from __future__ import annotations

import argparse
import secrets
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloudsnap.api.constants import DEFAULT_OPERATOR_NAMESPACE
from cloudsnap.runtime.backoff import Backoff, Timing
from cloudsnap.runtime.leader import LeaseTiming

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _default_identity() -> str:
    """The pod name (the hostname), made unique so a restarted pod is a new candidate."""
    return f"{socket.gethostname()}_{secrets.token_hex(3)}"


def _own_namespace() -> str:
    """In a pod, the namespace it runs in; elsewhere the chart's default namespace."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_OPERATOR_NAMESPACE
    except OSError:
        return DEFAULT_OPERATOR_NAMESPACE


class Settings(BaseSettings):
    """How the operator runs: what it watches, how often it looks, how it logs."""

    model_config = SettingsConfigDict(env_prefix="CLOUDSNAP_", extra="ignore")

    namespace: list[str] = Field(default_factory=list)
    """Namespaces to watch for CloudSnapshots; empty with all_namespaces means the cluster."""
    all_namespaces: bool = False
    """Watch every namespace (cluster-wide)."""
    operator_namespace: str = Field(default_factory=_own_namespace)
    """Where the credentials Secrets live (the only namespace whose Secrets are read)."""
    metrics_port: int = Field(8080, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz; 0 turns the server off."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the probes and Prometheus come from outside the pod
    log_format: LogFormat = "text"
    log_level: LogLevel = "INFO"
    resync_seconds: float = Field(300.0, gt=0)
    """How often a Ready snapshot is looked at again (drift detection)."""
    poll_seconds: float = Field(2.0, gt=0)
    """How often a snapshot being created or deleted is looked at (batched per class)."""
    blocked_retry_seconds: float = Field(120.0, gt=0)
    """Retry interval of resources blocked by something outside them (disk, quota, credentials)."""
    backoff_base_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(120.0, gt=0)
    absence_grace_seconds: float = Field(60.0, gt=0)
    """A snapshot not listed is declared NotFound only if still absent this much later."""
    create_doubt_seconds: float = Field(300.0, gt=0)
    """How long after an unanswered create EVS may still apply it (extras are looked for)."""
    step_deadline_seconds: float = Field(120.0, gt=0)
    """The longest one reconcile step may run before it is cut and retried."""
    poll_failure_grace_seconds: float = Field(60.0, gt=0)
    """A failing batched poll reaches a resource's status and Events only after this long."""
    watchdog_seconds: float = Field(600.0, gt=0)
    """/healthz fails when due work has made no progress for this long."""
    leader_election: bool = True
    """Reconcile only while holding the Lease (needed with more than one replica)."""
    lease_name: str = "cloudsnap-operator"
    """Name of the Lease, in the operator's namespace; one per install."""
    lease_duration_seconds: float = Field(15.0, gt=0)
    renew_deadline_seconds: float = Field(10.0, gt=0)
    retry_period_seconds: float = Field(2.0, gt=0)
    identity: str = Field(default_factory=lambda: _default_identity())
    """This replica's name in the Lease and in the User-Agent of its EVS calls."""
    max_workers: int = Field(64, ge=1)
    """Resources reconciled at the same time (coroutines, not threads)."""
    evs_timeout_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _scope(self) -> Settings:
        if self.all_namespaces and self.namespace:
            raise ValueError("choose --namespace or --all-namespaces, not both")
        if not self.all_namespaces and not self.namespace:
            raise ValueError("choose the namespaces to watch: --namespace NS or --all-namespaces")
        return self

    def lease_timing(self) -> LeaseTiming:
        """The leader election intervals these settings describe."""
        return LeaseTiming(
            lease_duration=self.lease_duration_seconds,
            renew_deadline=self.renew_deadline_seconds,
            retry_period=self.retry_period_seconds,
        )

    def timing(self) -> Timing:
        """The reconcile intervals these settings describe."""
        return Timing(
            poll=self.poll_seconds,
            resync=self.resync_seconds,
            blocked=self.blocked_retry_seconds,
            backoff=Backoff(base=self.backoff_base_seconds, cap=self.backoff_max_seconds),
            absence_grace=self.absence_grace_seconds,
            create_doubt=self.create_doubt_seconds,
            step_deadline=self.step_deadline_seconds,
            poll_failure_grace=self.poll_failure_grace_seconds,
        )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The `run` flags; each one left out falls back to its CLOUDSNAP_ variable, then default."""
    add = parser.add_argument
    add("--namespace", action="append", metavar="NS", help="watch this namespace (repeatable)")
    add("--all-namespaces", action="store_true", default=None, help="watch every namespace")
    add("--operator-namespace", metavar="NS", help="namespace of the credentials Secrets")
    add("--metrics-port", type=int, metavar="P", help="port of /metrics, /healthz, /readyz")
    add("--log-format", choices=["text", "json"])
    add("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    add("--resync-seconds", type=float, metavar="S", help="drift check interval of Ready ones")
    add("--poll-seconds", type=float, metavar="S", help="poll interval while creating/deleting")
    add("--blocked-retry-seconds", type=float, metavar="S", help="retry interval when blocked")
    add("--backoff-base-seconds", type=float, metavar="S", help="first transient retry delay")
    add("--backoff-max-seconds", type=float, metavar="S", help="longest transient retry delay")
    add("--absence-grace-seconds", type=float, metavar="S", help="confirm a missing snapshot")
    add("--create-doubt-seconds", type=float, metavar="S", help="late-create window")
    add("--step-deadline-seconds", type=float, metavar="S", help="longest reconcile step")
    add(
        "--poll-failure-grace-seconds",
        type=float,
        metavar="S",
        help="a failing batched poll is reported on a resource after this long",
    )
    add("--watchdog-seconds", type=float, metavar="S", help="stalled work fails /healthz")
    add(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reconcile only while holding the Lease (default on)",
    )
    add("--lease-name", metavar="NAME", help="the Lease, in the operator namespace")
    add("--lease-duration-seconds", type=float, metavar="S", help="Lease duration")
    add("--renew-deadline-seconds", type=float, metavar="S", help="leader stops if not renewed")
    add("--retry-period-seconds", type=float, metavar="S", help="Lease acquire/renew interval")
    add("--identity", metavar="ID", help="this replica's name (default: hostname + suffix)")
    add("--max-workers", type=int, metavar="N", help="resources reconciled concurrently")
    add("--evs-timeout-seconds", type=float, metavar="S", help="timeout of one EVS request")


def from_arguments(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags over the environment."""
    given: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key in Settings.model_fields
    }
    return Settings(**given)
