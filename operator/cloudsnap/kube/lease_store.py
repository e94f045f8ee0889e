"""The coordination.k8s.io/v1 Lease behind leader election (``runtime.leader.LeaseStore``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.kube.objects import unless_missing
from cloudsnap.runtime.leader import LeaseConflict, LeaseRecord


class KubeLeaseStore:
    """The Lease through the official client (in a thread pool, like the other writes).

    Each request gives up after ``timeout`` seconds: the elector bounds a try by the renew
    deadline, but a thread stuck on a dead connection would stay behind it, one per try. Answers
    are read as plain JSON, not the client's models: a renewal every two seconds, for the
    operator's whole life, is most of what an idle operator does.
    """

    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, name: str, *, timeout: float
    ) -> None:
        self._api = kubernetes.client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self._timeout = timeout

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def get(self) -> LeaseRecord | None:
        lease = await self._run(
            lambda: unless_missing(
                lambda: self._api.read_namespaced_lease(
                    self._name,
                    self._namespace,
                    _request_timeout=self._timeout,
                    _preload_content=False,
                )
            )
        )
        return None if lease is None else _record(lease)

    async def create(self, holder: str, duration: int) -> LeaseRecord:
        body = {
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": _spec(holder, duration, 0, acquired=True),
        }
        try:
            lease = await self._run(
                lambda: self._api.create_namespaced_lease(
                    self._namespace,
                    body,  # type: ignore[arg-type]
                    _request_timeout=self._timeout,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict from None
            raise
        return _record(lease)

    async def update(
        self, old: LeaseRecord, holder: str, duration: int, transitions: int
    ) -> LeaseRecord:
        # The UID makes the API server refuse (409) a write to a Lease deleted meanwhile, which
        # it would otherwise create anew: a renewal must never be what re-creates the Lease.
        body = {
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "resourceVersion": old.resource_version,
                "uid": old.uid,
            },
            "spec": _spec(holder, duration, transitions, acquired=holder != old.holder),
        }
        try:
            lease = await self._run(
                lambda: self._api.replace_namespaced_lease(
                    self._name,
                    self._namespace,
                    body,  # type: ignore[arg-type]
                    _request_timeout=self._timeout,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                raise LeaseConflict from None
            raise
        return _record(lease)


def _spec(holder: str, duration: int, transitions: int, *, acquired: bool) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec: dict[str, Any] = {
        "holderIdentity": holder,
        "leaseDurationSeconds": duration,
        "leaseTransitions": transitions,
        "renewTime": now,
    }
    if acquired:
        spec["acquireTime"] = now
    return spec


def _record(response: Any) -> LeaseRecord:
    """The LeaseRecord in an answer read with ``_preload_content=False``."""
    try:
        lease = json.loads(response.data)
    finally:
        response.release_conn()
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration=int(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(lease["metadata"]["resourceVersion"]),
        uid=str(lease["metadata"]["uid"]),
    )
