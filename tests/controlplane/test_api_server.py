"""The local control plane is a real Kubernetes API server: schemas, CEL, /status, RBAC, apply.

Each test checks a behaviour that only a real kube-apiserver (not a mock) has, so a fake server
or a misconfigured one (RBAC off, no admin identity) fails here first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hack.cluster import Cluster
from hack.tools.install import KUBE_VERSION

from tests.controlplane.widgets import CEL_MESSAGE, widget
from tests.fixtures.cluster import KUBECONFIG_ENV


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    """`kubectl get ... -o json`, parsed."""
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


def test_server_reports_the_pinned_version(cluster: Cluster) -> None:
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]

    expected = "v1." if os.environ.get(KUBECONFIG_ENV) else KUBE_VERSION
    assert server["gitVersion"].startswith(expected)


def test_unknown_fields_are_refused_strictly_and_pruned_otherwise(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    manifest = widget(namespace, "w1", 2, colour="blue")

    strict = cluster.kubectl("create", "-f", "-", input=manifest, check=False)
    cluster.kubectl("create", "--validate=ignore", "-f", "-", input=manifest)

    assert strict.returncode != 0
    assert 'unknown field "spec.colour"' in strict.stderr
    stored = get_json(cluster, "widget", "w1", "-n", namespace)
    assert stored["spec"] == {"replicas": 2, "maxReplicas": 3}
    assert stored["metadata"]["generation"] == 1


def test_status_changes_only_through_the_status_subresource(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    cluster.kubectl("create", "-f", "-", input=widget(namespace, "w2", 1))

    cluster.kubectl(
        "patch", "widget", "w2", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", '{"status": {"phase": "Ready"}}',
    )  # fmt: skip
    cluster.kubectl(
        "patch", "widget", "w2", "-n", namespace, "--type=merge",
        "-p", '{"status": {"phase": "Hijacked"}}',
    )  # fmt: skip

    stored = get_json(cluster, "widget", "w2", "-n", namespace)
    assert stored["status"] == {"phase": "Ready"}
    assert stored["metadata"]["generation"] == 1  # status writes do not bump the generation


def test_cel_rule_refuses_a_bad_object_with_its_message(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    result = cluster.kubectl(
        "create", "-f", "-", input=widget(namespace, "too-many", 9), check=False
    )

    assert result.returncode != 0
    assert CEL_MESSAGE in result.stderr
    missing = cluster.kubectl("get", "widget", "too-many", "-n", namespace, check=False)
    assert "NotFound" in missing.stderr


def test_openapi_schema_refuses_a_negative_count(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    result = cluster.kubectl("create", "-f", "-", input=widget(namespace, "neg", -1), check=False)

    assert result.returncode != 0
    assert "spec.replicas" in result.stderr
    assert "should be greater than or equal to 0" in result.stderr


def test_rbac_allows_what_the_role_grants_and_denies_the_rest(
    cluster: Cluster, namespace: str
) -> None:
    sa = f"system:serviceaccount:{namespace}:reader"
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "configmap-reader", "-n", namespace,
        "--verb=get,list", "--resource=configmaps",
    )  # fmt: skip
    cluster.kubectl(
        "create", "rolebinding", "reader", "-n", namespace,
        "--role=configmap-reader", f"--serviceaccount={namespace}:reader",
    )  # fmt: skip
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=a=1")

    allowed = cluster.kubectl("get", "configmap", "settings", "-n", namespace, f"--as={sa}")
    denied_write = cluster.kubectl(
        "create", "configmap", "other", "-n", namespace, f"--as={sa}", check=False
    )
    denied_read = cluster.kubectl("get", "secrets", "-n", namespace, f"--as={sa}", check=False)

    assert "settings" in allowed.stdout
    assert denied_write.returncode != 0
    assert "configmaps is forbidden" in denied_write.stderr
    assert 'cannot create resource "configmaps"' in denied_write.stderr
    assert denied_read.returncode != 0
    assert 'cannot list resource "secrets"' in denied_read.stderr


def test_kubectl_apply_creates_then_leaves_alone_then_updates(
    cluster: Cluster, namespace: str
) -> None:
    def manifest(value: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "applied", "namespace": namespace},
                "data": {"key": value},
            }
        )

    first = cluster.kubectl("apply", "-f", "-", input=manifest("one"))
    again = cluster.kubectl("apply", "-f", "-", input=manifest("one"))
    changed = cluster.kubectl("apply", "-f", "-", input=manifest("two"))

    assert "configmap/applied created" in first.stdout
    assert "configmap/applied unchanged" in again.stdout
    assert "configmap/applied configured" in changed.stdout
    assert get_json(cluster, "configmap", "applied", "-n", namespace)["data"] == {"key": "two"}


def write_chart(root: Path) -> Path:
    """A throwaway chart: one ConfigMap, and an optional object the server must refuse."""
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\ninvalid: false\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-greeting\n"
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "templates" / "invalid.yaml").write_text(
        "{{- if .Values.invalid }}\n"
        "apiVersion: v1\n"
        "kind: Service\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-svc\n"
        "spec:\n"
        "  ports:\n"
        "    - port: 700000\n"
        "{{- end }}\n"
    )
    return chart


@pytest.mark.parametrize(
    ("values", "accepted", "expected"),
    [
        ("greeting=hi", True, "configmap/demo-greeting created (server dry run)"),
        ("invalid=true", False, "spec.ports[0].port"),
    ],
)
def test_helm_template_piped_to_server_side_dry_run(
    cluster: Cluster, namespace: str, tmp_path: Path, values: str, accepted: bool, expected: str
) -> None:
    """The server validates what helm renders (and refuses a bad port), persisting nothing."""
    chart = write_chart(tmp_path)

    rendered = cluster.helm("template", "demo", str(chart), "--set", values).stdout
    applied = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
    )

    assert "name: demo-greeting" in rendered
    assert (applied.returncode == 0) is accepted, applied.stderr
    assert expected in applied.stdout + applied.stderr
    persisted = cluster.kubectl("get", "configmap", "demo-greeting", "-n", namespace, check=False)
    assert "NotFound" in persisted.stderr
