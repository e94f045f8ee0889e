"""An in-memory stand-in for the Kubernetes side of the operator, for reconcile tests.

``FakeCluster`` answers the ClassReader/SecretReader protocols from dictionaries. ``World`` keeps
CloudSnapshot bodies and drives them with the real Reconciler and Scheduler, applying each Result
the way the kopf handlers do (finalizer first, then the status merge patch, then events), so the
tests observe the same sequence of states a cluster would see.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cloudsnap.api import API_VERSION, CLASS_KIND, DEFAULT_CLASS_ANNOTATION, SNAPSHOT_KIND
from cloudsnap.reconcile import Event, Reconciler, Result, Scheduler

FINALIZER = "evs.cloudsnap.io/snapshot"
SECRET_NAME = "evs-credentials"


class FakeCluster:
    """Classes and Secrets held in dictionaries."""

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, str]] = {}

    async def get_class(self, name: str) -> Mapping[str, Any] | None:
        return self.classes.get(name)

    async def list_classes(self) -> Sequence[Mapping[str, Any]]:
        return list(self.classes.values())

    async def get_secret(self, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(name)

    def add_class(
        self,
        name: str,
        *,
        endpoint: str,
        project_id: str,
        secret: str = SECRET_NAME,
        default: bool = True,
        created: str = "2026-01-01T00:00:00Z",
        **spec: Any,
    ) -> None:
        annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
        self.classes[name] = {
            "apiVersion": API_VERSION,
            "kind": CLASS_KIND,
            "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "spec": {
                "region": "sim-1",
                "projectID": project_id,
                "endpoint": endpoint,
                "credentialsSecretRef": {"name": secret},
                "rateLimit": {"requestsPerSecond": 1000, "burst": 1000},
                **spec,
            },
        }


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class World:
    """CloudSnapshot objects reconciled by a Scheduler, as the operator would."""

    def __init__(self, reconciler: Reconciler, namespace: str = "default") -> None:
        self.reconciler = reconciler
        self.namespace = namespace
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, Event]] = []
        self.results: list[tuple[str, Result]] = []
        self.scheduler: Scheduler[str] = Scheduler(self._work, concurrency=64)
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> World:
        self._runner = asyncio.create_task(self.scheduler.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._runner.cancel()
        await asyncio.gather(self._runner, return_exceptions=True)

    def apply(self, name: str, /, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": API_VERSION,
            "kind": SNAPSHOT_KIND,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": spec,
        }
        self.objects[name] = body
        self.scheduler.enqueue(name)
        return body

    def change_spec(self, name: str, /, **changes: Any) -> None:
        body = self.objects[name]
        merge(body["spec"], changes)
        body["metadata"]["generation"] += 1
        self.scheduler.enqueue(name)

    def delete(self, name: str) -> None:
        body = self.objects[name]
        if not body["metadata"].get("finalizers"):
            del self.objects[name]
            return
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
        self.scheduler.enqueue(name)

    async def step(self, name: str) -> Result:
        """One reconcile step, applied; raises KeyError if the object is gone."""
        result = await self.reconciler.reconcile(copy.deepcopy(self.objects[name]))
        self._apply(name, result)
        return result

    async def _work(self, name: str) -> float | None:
        if name not in self.objects:
            return None
        return (await self.step(name)).requeue_after

    def _apply(self, name: str, result: Result) -> None:
        body = self.objects[name]
        self.results.append((name, result))
        finalizers: list[str] = body["metadata"].setdefault("finalizers", [])
        if result.finalizer is True and FINALIZER not in finalizers:
            finalizers.append(FINALIZER)
        if result.status_patch:
            merge(body.setdefault("status", {}), result.status_patch)
        self.events.extend((name, event) for event in result.events)
        if result.finalizer is False and FINALIZER in finalizers:
            finalizers.remove(FINALIZER)
            if body["metadata"].get("deletionTimestamp") and not finalizers:
                del self.objects[name]

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        conditions = self.objects[name].get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)

    def is_ready(self, name: str) -> bool:
        cond = self.condition(name, "Ready")
        return cond is not None and cond["status"] == "True"

    def reasons(self, name: str) -> list[str]:
        return [event.reason for who, event in self.events if who == name]


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the event loop until it holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
