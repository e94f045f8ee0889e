"""On the oldest supported kube-apiserver: the CRDs become Established, every example applies (the
invalid one is refused), and the operator takes a CloudSnapshot through its life against the
simulator: created and Ready, then deleted with its EVS snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path

from hack.cluster import Cluster
from hack.tools.install import KUBE_OLDEST_VERSION

from tests.e2e.test_scenarios import (
    test_create_becomes_ready,
    test_delete_with_policy_delete_removes_snapshot,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVALID_EXAMPLE = EXAMPLES / "invalid-reserved-name.yaml"
# The namespace examples/cloudsnapshotclass.yaml puts its Secret in.
OPERATOR_NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "cloudsnap-system"},
}

__all__ = ["test_create_becomes_ready", "test_delete_with_policy_delete_removes_snapshot"]


def test_the_server_is_the_oldest_supported_release(cluster: Cluster) -> None:
    version = cluster.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{KUBE_OLDEST_VERSION}"' in version


def test_the_crds_are_established(cluster: Cluster, cloudsnap_crds: list[str]) -> None:
    waited = cluster.kubectl("wait", "--for=condition=Established", "--timeout=0s", *cloudsnap_crds)
    assert waited.stdout.count("condition met") == len(cloudsnap_crds) == 4


def test_the_examples_apply(cluster: Cluster, cloudsnap_crds: list[str]) -> None:
    """As written, into the namespaces they name (this control plane is the compatibility
    tests' own)."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(OPERATOR_NAMESPACE))
    for path in sorted(EXAMPLES.glob("*.yaml")):
        applied = cluster.kubectl("apply", "-f", str(path), check=False)
        if path == INVALID_EXAMPLE:
            assert applied.returncode != 0, f"{path.name} was accepted"
            assert "autobk_snapshot_" in applied.stderr
        else:
            assert applied.returncode == 0, f"{path.name}: {applied.stderr}"
