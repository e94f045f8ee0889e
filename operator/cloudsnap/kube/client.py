"""The API client: from the pod's service account or KUBECONFIG, and a wait until the API server
serves the project's CRDs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import GROUP, SCHEDULE_PLURAL, SNAPSHOT_PLURAL, VERSION
from cloudsnap.runtime.writes import NotLeading

log = logging.getLogger(__name__)


def load_config() -> kubernetes.client.ApiClient:
    """An API client from the pod's service account, else from KUBECONFIG."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = 16
    return kubernetes.client.ApiClient(config)


async def wait_for_api(api: kubernetes.client.ApiClient, namespace: str | None) -> None:
    """Wait until the API server serves CloudSnapshots and CloudSnapshotSchedules (the CRDs
    established, their storage ready).

    Installed together with the operator, a CRD can still be initialising when the operator
    starts; kopf would log each refused listing as an ERROR. One INFO line instead.
    """
    custom = kubernetes.client.CustomObjectsApi(api)

    def probe() -> None:
        for plural in (SNAPSHOT_PLURAL, SCHEDULE_PLURAL):
            if namespace is None:
                custom.list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
            else:
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, limit=1)

    loop = asyncio.get_running_loop()
    told = False
    while True:
        try:
            await loop.run_in_executor(None, probe)
            return
        except ApiException as exc:
            if exc.status not in (404, 429, 503):
                return  # not a start-up race: kopf reports it in its own words
            if not told:
                log.info("waiting for the API server to serve the cloudsnap CRDs (%s)", exc.reason)
                told = True
        await asyncio.sleep(1.0)


class FencedApiClient(kubernetes.client.ApiClient):
    """The API client of the CloudSnapshot writes, fenced where the write leaves.

    The controller checks ``may_act`` before it hands a write to the writer's threads, but a
    write can wait there (a busy pool; the process paused by SIGSTOP, a VM freeze) until after
    the Lease has passed to a successor, and would then overwrite the successor's status with a
    stale one. So every write is checked again in the thread that sends it, right before it is
    sent. Reads are not fenced.
    """

    def __init__(self, configuration: Any, may_act: Callable[[], bool]) -> None:
        super().__init__(configuration)
        self._may_act = may_act

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in ("GET", "HEAD") and not self._may_act():
            raise NotLeading(f"{method} {url} not sent: this replica may not act now")
        return super().call_api(method, url, *args, **kwargs)
