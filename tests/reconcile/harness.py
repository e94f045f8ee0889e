"""An in-memory stand-in for the Kubernetes side of the operator, for reconcile tests.

``FakeCluster`` answers the ClassReader/SecretReader/VolumeReader protocols from dictionaries.
``World`` is a small in-memory API server for CloudSnapshots (resource versions, generations,
finalizers, watch events) wired to the operator's real Controller, Scheduler and Reconciler; only
kopf's watch and event posting are replaced, so the tests see the sequence of states a cluster
would see.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cloudsnap.api import API_VERSION, CLASS_KIND, DEFAULT_CLASS_ANNOTATION, SNAPSHOT_KIND
from cloudsnap.handlers import Controller
from cloudsnap.kube import Conflict
from cloudsnap.reconcile import Event, Reconciler, Result

SECRET_NAME = "evs-credentials"


class FakeCluster:
    """Classes, Secrets, PersistentVolumeClaims and PersistentVolumes held in dictionaries."""

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}

    async def get_claim(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.claims.get((namespace, name))

    async def get_volume(self, name: str) -> Mapping[str, Any] | None:
        return self.volumes.get(name)

    def add_claim(self, namespace: str, name: str, *, bound_to: str | None = None) -> None:
        """A claim, Bound to volume ``bound_to`` as the PV binder leaves it, else Pending."""
        self.claims[(namespace, name)] = {
            "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}"},
            "spec": {"volumeName": bound_to} if bound_to else {},
            "status": {"phase": "Bound" if bound_to else "Pending"},
        }

    def add_volume(
        self,
        name: str,
        *,
        claim: tuple[str, str] | None = None,
        csi: Mapping[str, str] | None = None,
    ) -> None:
        """A volume, bound to ``claim`` (namespace, name) when given, with this CSI source."""
        spec: dict[str, Any] = {}
        if claim is not None:
            namespace, claim_name = claim
            spec["claimRef"] = {
                "namespace": namespace,
                "name": claim_name,
                "uid": f"uid-{claim_name}",
            }
        if csi is not None:
            spec["csi"] = dict(csi)
        else:
            spec["hostPath"] = {"path": "/data"}
        self.volumes[name] = {"metadata": {"name": name}, "spec": spec}

    def bind(self, namespace: str, claim: str, volume: str, csi: Mapping[str, str]) -> None:
        """The claim bound to a new volume with this CSI source, both ways."""
        self.add_volume(volume, claim=(namespace, claim), csi=csi)
        self.add_claim(namespace, claim, bound_to=volume)

    # Copies, as a watch cache hands out a new object for every change: tests edit these in
    # place, and readers may keep what they derived from an object by its identity.
    async def get_class(self, name: str) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.classes.get(name))

    async def list_classes(self) -> Sequence[Mapping[str, Any]]:
        return copy.deepcopy(list(self.classes.values()))

    async def get_secret(self, name: str) -> Mapping[str, str] | None:
        return copy.deepcopy(self.secrets.get(name))

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


class RecordingReconciler:
    """The real Reconciler, with every Result kept for the test to inspect."""

    def __init__(self, inner: Reconciler) -> None:
        self.inner = inner
        self.results: list[tuple[str, Result]] = []

    async def reconcile(self, body: Mapping[str, Any]) -> Result:
        result = await self.inner.reconcile(body)
        self.results.append((body["metadata"]["name"], result))
        return result

    def forget(self, uid: str) -> None:
        self.inner.forget(uid)

    def forget_all(self) -> None:
        self.inner.forget_all()

    def witness_birth(self, uid: str) -> None:
        self.inner.witness_birth(uid)

    def sweep_interval(self) -> float:
        return self.inner.sweep_interval()

    async def sweep(self) -> list[tuple[str, float]]:
        return await self.inner.sweep()

    @property
    def claims(self) -> Any:
        return self.inner.claims

    @claims.setter
    def claims(self, claims: Any) -> None:
        self.inner.claims = claims


class World:
    """An in-memory API server for CloudSnapshots, driven by the operator's real Controller.

    Writes bump resourceVersion and come back to the controller as watch events, as they would
    from a real API server; finalizer writes are refused on a stale resourceVersion.
    """

    def __init__(self, reconciler: Reconciler, namespace: str = "default") -> None:
        self.namespace = namespace
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, Event]] = []
        self.writes: list[tuple[str, str]] = []
        self.leading = True  # whether the operator holds the Lease (may act)
        self.recorder, self.controller = self._operator(reconciler)
        self._version = 0

    @property
    def results(self) -> list[tuple[str, Result]]:
        return self.recorder.results

    def restart(self, reconciler: Reconciler) -> None:
        """A new operator process: fresh memory, then the initial listing of every object."""
        self.recorder, self.controller = self._operator(reconciler)
        for body in self.objects.values():
            self.controller.observe(None, copy.deepcopy(body))

    def _operator(self, reconciler: Reconciler) -> tuple[RecordingReconciler, Controller]:
        """The operator's Controller around `reconciler`, writing to and posting Events in here."""
        recorder = RecordingReconciler(reconciler)
        controller = Controller(
            recorder,  # type: ignore[arg-type]
            self,
            max_workers=64,
            may_act=lambda: self.leading,
        )
        return recorder, controller

    async def __aenter__(self) -> World:
        self.controller.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.controller.stop()

    # -- what a user does --------------------------------------------------------------------

    def apply(self, name: str, /, *, finalizers: Sequence[str] = (), **spec: Any) -> dict[str, Any]:
        """Create the resource; ``finalizers`` as an earlier operator process may have left them."""
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
        if finalizers:
            body["metadata"]["finalizers"] = list(finalizers)
        self.objects[name] = body
        self._changed(name, "ADDED")
        return body

    def uid(self, name: str) -> str:
        return str(self.objects[name]["metadata"]["uid"])

    def replace(self, name: str, /, **spec: Any) -> None:
        """`kubectl replace` of a manifest: spec as given, no finalizers; status is kept. Like
        the API server, an object being deleted is gone once it has no finalizer left."""
        body = self.objects[name]
        body["metadata"]["finalizers"] = []
        if body["metadata"].get("deletionTimestamp"):
            del self.objects[name]
            self.controller.observe("DELETED", copy.deepcopy(body))
            return
        if spec and spec != body["spec"]:
            body["spec"] = spec
            body["metadata"]["generation"] += 1
        self._changed(name, "MODIFIED")

    def change_spec(self, name: str, /, **changes: Any) -> None:
        body = self.objects[name]
        merge(body["spec"], changes)
        body["metadata"]["generation"] += 1
        self._changed(name, "MODIFIED")

    def edit(self, name: str, /, change: Callable[[dict[str, Any]], None]) -> None:
        """Someone else's write that leaves the spec alone (labels, a status edit): ``change``
        applied to the stored object, its watch event delivered before this returns."""
        change(self.objects[name])
        self.controller.observe("MODIFIED", self._changed(name, "MODIFIED"))

    def delete(self, name: str) -> None:
        body = self.objects[name]
        if not body["metadata"].get("finalizers"):
            del self.objects[name]
            self.controller.observe("DELETED", copy.deepcopy(body))
            return
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
        self._changed(name, "MODIFIED")

    async def step(self, name: str) -> Result:
        """One reconcile step through the controller, as a resync would run it."""
        await self.controller.step(self.uid(name))
        return self.results[-1][1]

    # -- the Writer protocol -----------------------------------------------------------------

    async def patch_status(
        self, namespace: str, name: str, uid: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        body = self.objects.get(name)
        if body is None or body["metadata"]["uid"] != uid:
            return None
        body["status"] = copy.deepcopy(dict(status))
        self.writes.append((name, "status"))
        return self._changed(name, "MODIFIED")

    async def set_finalizers(
        self,
        namespace: str,
        name: str,
        uid: str,
        finalizers: Sequence[str],
        resource_version: str,
    ) -> dict[str, Any] | None:
        body = self.objects.get(name)
        if body is None or body["metadata"]["uid"] != uid:
            return None
        if body["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        body["metadata"]["finalizers"] = list(finalizers)
        self.writes.append((name, "finalizers"))
        if body["metadata"].get("deletionTimestamp") and not finalizers:
            del self.objects[name]
            self.controller.observe("DELETED", copy.deepcopy(body))
            return copy.deepcopy(body)
        return self._changed(name, "MODIFIED")

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        self.events.append((body["metadata"]["name"], event))

    def _changed(self, name: str, kind: str) -> dict[str, Any]:
        """Bump the version and deliver the watch event on the next loop iteration."""
        self._version += 1
        body = self.objects[name]
        body["metadata"]["resourceVersion"] = str(self._version)
        snapshot = copy.deepcopy(body)
        asyncio.get_running_loop().call_soon(self.controller.observe, kind, snapshot)
        return copy.deepcopy(body)

    # -- what a test reads -------------------------------------------------------------------

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        conditions = self.objects[name].get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)

    def is_ready(self, name: str) -> bool:
        cond = self.condition(name, "Ready")
        return cond is not None and cond["status"] == "True"

    def reasons(self, name: str) -> list[str]:
        return [event.reason for who, event in self.events if who == name]
