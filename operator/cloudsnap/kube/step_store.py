"""What the schedule and restore controllers' Kubernetes stores share: their own kind's writes
and the CloudSnapshots' through KubeWriters, and the core and custom-object APIs."""

from __future__ import annotations

import kubernetes

from cloudsnap.kube.writer import KubeWriter


class KubeStepStore:
    """A store for the steps of one kind (``plural``): that kind's status, finalizers and
    Events go through its own KubeWriter (UID-tested JSON patches), CloudSnapshots through
    another; each has a thread pool of ``threads``."""

    def __init__(self, api: kubernetes.client.ApiClient, *, plural: str, threads: int) -> None:
        self._core = kubernetes.client.CoreV1Api(api)
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._own = KubeWriter(api, threads=threads, plural=plural)
        self._snapshots = KubeWriter(api, threads=threads)
        self.patch_status = self._own.patch_status
        self.set_finalizers = self._own.set_finalizers
        self.post_event = self._own.post_event

    def close(self) -> None:
        """Stop the thread pools."""
        self._own.close()
        self._snapshots.close()
