"""The compatibility tests' cluster: the oldest supported kube-apiserver (hack.tools.install's
KUBE_OLDEST_VERSION) on etcd, with no controller-manager.

This directory overrides `cluster` and `cloudsnap_crds`, so the tests here, and the shared
fixtures they pull in (`namespace`, `start_stack`), run against that second, older API server,
while the rest of the suite keeps the pinned release. It is always a control plane of its own
(its own directory, etcd data and loopback ports), even when CLOUDSNAP_TEST_KUBECONFIG points the
rest of the suite at another cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hack.cluster import Cluster, ControlPlane, tool_env
from hack.tools.install import OLDEST_APISERVER

from tests.fixtures.crds import install_crds


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and the oldest supported kube-apiserver; nothing here needs the controller-manager
    (no claim binding, and namespaces left terminating go with the control plane)."""
    home = tmp_path_factory.mktemp("oldest-cluster-home")
    with ControlPlane(apiserver=OLDEST_APISERVER, controller_manager=False) as plane:
        yield Cluster(plane.kubeconfig, tool_env(plane.kubeconfig, plane.bin_dir, home), plane)


@pytest.fixture(scope="package")
def cloudsnap_crds(cluster: Cluster) -> list[str]:
    """The CRDs installed and Established on the oldest API server (a fixture of its own: the
    suite's session-wide one is bound to the suite's cluster)."""
    return install_crds(cluster)
