"""The fence on the Kubernetes client of the writes."""

from __future__ import annotations

import kubernetes
import pytest
import urllib3

from cloudsnap.kube.client import FencedApiClient
from cloudsnap.runtime.writes import NotLeading


def test_the_writer_sends_no_write_once_the_replica_may_not_act() -> None:
    """The fence of the CloudSnapshot writes sits in the client, in the thread that sends them:
    a write handed to it before the Lease was lost is not sent after."""
    configuration = kubernetes.client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens: a sent request would fail there
    allowed = False
    api = kubernetes.client.CustomObjectsApi(FencedApiClient(configuration, lambda: allowed))
    with pytest.raises(NotLeading):
        api.patch_namespaced_custom_object_status(
            "evs.cloudsnap.io", "v1alpha1", "ns", "cloudsnapshots", "name", [{"op": "test"}]
        )
    allowed = True
    with pytest.raises(urllib3.exceptions.MaxRetryError):  # sent, to where nothing listens
        api.patch_namespaced_custom_object_status(
            "evs.cloudsnap.io", "v1alpha1", "ns", "cloudsnapshots", "name", [{"op": "test"}]
        )
