"""The Helm chart without a cluster: lint, rendering, values schema, CRDs and plain manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.tools.install import KUBE_OLDEST_VERSION, KUBE_VERSION

from cloudsnap.settings import Settings
from tests.deploy.support import (
    CHART,
    HELM,
    IMAGE,
    ROOT,
    find,
    helm,
    load_data,
    load_script,
    render_chart,
    template,
)

render_manifests = load_script("deploy/render_manifests.py")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "helm-home"


OPERATOR_ROLE = "rel-cloudsnap-operator"  # the release is called rel


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_chart_crds_are_byte_identical_to_the_generated_ones() -> None:
    generated = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert shipped == generated, "stale chart CRDs: run `make chart-crds`"


def test_helm_lint_is_clean(home: Path) -> None:
    result = helm(home, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_default_rendering_is_the_expected_set_of_objects(home: Path) -> None:
    kinds = sorted(obj["kind"] for obj in template(home))
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
    ]


def test_deployment_is_locked_down(home: Path) -> None:
    objects = template(home)
    (deployment,) = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(objects)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert isinstance(security["runAsUser"], int)
    assert isinstance(security["runAsGroup"], int)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    for bound in ("requests", "limits"):
        assert {"cpu", "memory", "ephemeral-storage"} <= container["resources"][bound].keys()
    assert container["imagePullPolicy"] == "Always"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == find(objects, "ServiceAccount")[0]["metadata"]["name"]


def test_values_become_cloudsnap_settings(home: Path) -> None:
    container = _container(
        template(
            home,
            "operator.logFormat=text",
            "operator.logLevel=DEBUG",
            "operator.resyncSeconds=60",
            "operator.metricsPort=9090",
        )
    )
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["CLOUDSNAP_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["CLOUDSNAP_ALL_NAMESPACES"] == "true"
    assert env["CLOUDSNAP_LOG_FORMAT"] == "text"
    assert env["CLOUDSNAP_LOG_LEVEL"] == "DEBUG"
    assert env["CLOUDSNAP_RESYNC_SECONDS"] == "60"
    assert env["CLOUDSNAP_METRICS_PORT"] == "9090"
    assert container["ports"][0]["containerPort"] == 9090


@pytest.mark.parametrize("sets", [(), ("operator.watchNamespaces={team-a,team-b}",)])
def test_the_operator_accepts_the_rendered_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch, sets: tuple[str, ...]
) -> None:
    env = {e["name"]: e["value"] for e in _container(template(home, *sets))["env"] if "value" in e}
    for name, value in env.items():
        assert name.removeprefix("CLOUDSNAP_").lower() in Settings.model_fields, name
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLOUDSNAP_OPERATOR_NAMESPACE", "cloudsnap-system")
    settings = Settings()
    assert settings.log_format == "json"
    assert settings.metrics_port == 8080
    assert settings.all_namespaces is not bool(settings.namespace)


def test_admission_policies_are_optional(home: Path) -> None:
    objects = template(home)
    policies = find(objects, "ValidatingAdmissionPolicy")
    assert {p["spec"]["paramKind"]["kind"] for p in policies} == {"CloudSnapshotClass"}
    bindings = find(objects, "ValidatingAdmissionPolicyBinding")
    assert {b["spec"]["policyName"] for b in bindings} == {p["metadata"]["name"] for p in policies}
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings)
    disabled = template(home, "admissionPolicy.enabled=false")
    assert find(disabled, "ValidatingAdmissionPolicy") == []
    assert find(disabled, "ValidatingAdmissionPolicyBinding") == []


def test_user_roles_aggregate_into_view_edit_and_admin(home: Path) -> None:
    roles = {role["metadata"]["name"]: role for role in find(template(home), "ClusterRole")}
    view, edit = roles[f"{OPERATOR_ROLE}-view"], roles[f"{OPERATOR_ROLE}-edit"]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {key for key in view["metadata"]["labels"] if key.startswith(aggregate)} == {
        f"{aggregate}view",
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert {key for key in edit["metadata"]["labels"] if key.startswith(aggregate)} == {
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert [rule["verbs"] for rule in view["rules"]] == [["get", "list", "watch"]]
    (read,) = view["rules"]
    kinds = ["cloudsnapshots", "cloudsnapshotschedules", "cloudsnapshotrestores"]
    assert set(read["resources"]) == {*kinds, *(f"{kind}/status" for kind in kinds)} | {
        "cloudsnapshotclasses"
    }
    # Users write CloudSnapshots, schedules and restores, never classes nor status.
    (write,) = edit["rules"]
    assert write["resources"] == kinds
    assert find(template(home, "rbac.userRoles=false"), "ClusterRole") == [roles[OPERATOR_ROLE]]


def test_cluster_role_holds_no_write_on_classes_and_no_secrets(home: Path) -> None:
    (role,) = find(template(home), "ClusterRole", OPERATOR_ROLE)
    for rule in role["rules"]:
        if "delete" in rule["verbs"]:
            assert rule["resources"] in (
                ["cloudsnapshots"],  # a schedule's own children
                ["persistentvolumeclaims"],  # a restore's own claim
                ["persistentvolumes"],  # a restore's own volume
            ), rule
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        if rule["resources"] == ["cloudsnapshotclasses"]:
            assert rule["verbs"] == ["list", "watch"]
    # Namespaces are only listed, for the labels a class's allowedNamespaces selector reads.
    assert [r["verbs"] for r in role["rules"] if "namespaces" in r["resources"]] == [
        ["list", "watch"]
    ]
    # Claims and volumes are listed by the watch caches of the claim source and a schedule's claim
    # selector, and read, made and deleted one by one by a restore: two rules each, no update.
    for resource in ("persistentvolumeclaims", "persistentvolumes"):
        assert [r["verbs"] for r in role["rules"] if resource in r["resources"]] == [
            ["list", "watch"],
            ["get", "create", "delete"],
        ], resource
    # Pods are only listed, in a claim's namespace, by a rollback blocked on an attached disk.
    assert [r["verbs"] for r in role["rules"] if "pods" in r["resources"]] == [["list"]]
    roles = {role["metadata"]["name"]: role for role in find(template(home), "Role")}
    assert set(roles) == {
        "rel-cloudsnap-operator-secrets",
        "rel-cloudsnap-operator-leader-election",
    }
    secrets_role = roles["rel-cloudsnap-operator-secrets"]
    assert secrets_role["metadata"]["namespace"] == "cloudsnap-system"
    assert secrets_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}
    ]


def test_leader_election_may_renew_only_its_own_lease(home: Path) -> None:
    roles = {role["metadata"]["name"]: role for role in find(template(home), "Role")}
    election = roles["rel-cloudsnap-operator-leader-election"]
    assert election["metadata"]["namespace"] == "cloudsnap-system"
    assert election["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rel-cloudsnap-operator"],
            "verbs": ["get", "update"],
        },
    ]
    off = template(home, "replicaCount=1", "leaderElection.enabled=false")
    assert [r["metadata"]["name"] for r in find(off, "Role")] == ["rel-cloudsnap-operator-secrets"]


def test_watch_namespaces_grant_per_namespace_roles_only(home: Path) -> None:
    objects = template(home, "operator.watchNamespaces={team-a,team-b}")
    (cluster_role,) = find(objects, "ClusterRole", OPERATOR_ROLE)
    cluster_resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert "cloudsnapshots" not in cluster_resources
    assert "persistentvolumeclaims" not in cluster_resources
    assert {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["list", "watch"]} in (
        cluster_role["rules"]
    )
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]} in (
        cluster_role["rules"]
    )
    roles = {obj["metadata"]["namespace"]: obj for obj in find(objects, "Role")}
    assert roles.keys() == {"cloudsnap-system", "team-a", "team-b"}
    assert {r for rule in roles["team-a"]["rules"] for r in rule["resources"]} == {
        "cloudsnapshots",
        "cloudsnapshots/status",
        "cloudsnapshotschedules",
        "cloudsnapshotschedules/status",
        "cloudsnapshotrestores",
        "cloudsnapshotrestores/status",
        "events",
        "persistentvolumeclaims",
        "pods",
    }
    bindings = {obj["metadata"]["namespace"] for obj in find(objects, "RoleBinding")}
    assert bindings == {"cloudsnap-system", "team-a", "team-b"}
    env = {e["name"]: e.get("value") for e in _container(objects)["env"]}
    assert env["CLOUDSNAP_NAMESPACE"] == '["team-a","team-b"]'
    assert "CLOUDSNAP_ALL_NAMESPACES" not in env


ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
SELECTOR = {"app.kubernetes.io/name": "cloudsnap-operator", "app.kubernetes.io/instance": "rel"}


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    return dict(deployment)


def _pod_spec(home: Path, *sets: str) -> dict[str, Any]:
    """The operator's pod spec as the chart renders it with these `--set` overrides."""
    return dict(_deployment(template(home, *sets))["spec"]["template"]["spec"])


@pytest.mark.parametrize(
    ("sets", "replicas", "strategy"),
    [
        ((), 2, ROLLING),
        (("replicaCount=1",), 1, ROLLING),
        (("replicaCount=3",), 3, ROLLING),
        (("replicaCount=1", "leaderElection.enabled=false"), 1, {"type": "Recreate"}),
        (("replicaCount=0", "leaderElection.enabled=false"), 0, {"type": "Recreate"}),
    ],
)
def test_rolling_updates_whenever_the_lease_keeps_old_and_new_apart(
    home: Path, sets: tuple[str, ...], replicas: int, strategy: dict[str, Any]
) -> None:
    deployment = _deployment(template(home, *sets))
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"] == strategy


def test_disruption_budget_with_the_two_default_replicas(home: Path) -> None:
    (pdb,) = find(template(home), "PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == "cloudsnap-system"
    assert pdb["spec"] == {
        "minAvailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": SELECTOR},
    }
    assert find(template(home, "replicaCount=1"), "PodDisruptionBudget") == []
    (percent,) = find(
        template(home, "replicaCount=4", "podDisruptionBudget.minAvailable=50%"),
        "PodDisruptionBudget",
    )
    assert percent["spec"]["minAvailable"] == "50%"


@pytest.mark.parametrize(
    "sets",
    [
        ("podDisruptionBudget.minAvailable=2",),
        ("replicaCount=3", "podDisruptionBudget.minAvailable=3"),
    ],
)
def test_a_budget_that_forbids_every_eviction_is_refused(home: Path, sets: tuple[str, ...]) -> None:
    result = render_chart(home, *(option for value in sets for option in ("--set", value)))
    assert result.returncode != 0
    assert "would forbid every voluntary eviction" in result.stderr


def test_the_image_repository_is_required_and_tagged_with_the_app_version(home: Path) -> None:
    result = helm(home, "template", "rel", str(CHART), check=False)
    assert result.returncode != 0
    assert "image.repository is required: no registry publishes" in result.stderr
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    repository = IMAGE.split("=", 1)[1]
    assert _container(template(home))["image"] == f"{repository}:{chart['appVersion']}"
    digest = "sha256:" + "0" * 64
    assert _container(template(home, f"image.digest={digest}"))["image"] == f"{repository}@{digest}"


def test_replicas_prefer_different_nodes_by_default(home: Path) -> None:
    pod = _pod_spec(home)
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": SELECTOR},
                    },
                }
            ]
        }
    }
    assert pod["topologySpreadConstraints"] == [
        {
            "topologyKey": "kubernetes.io/hostname",
            "maxSkew": 1,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SELECTOR},
            "matchLabelKeys": ["pod-template-hash"],
        }
    ]
    # The selector labels the defaults use are the pods' own.
    labels = _deployment(template(home))["spec"]["template"]["metadata"]["labels"]
    assert SELECTOR.items() <= labels.items()


def test_anti_affinity_presets_and_overrides(home: Path) -> None:
    hard = _pod_spec(home, "podAntiAffinityPreset=hard")
    assert hard["affinity"]["podAntiAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": SELECTOR}}
        ]
    }
    assert "affinity" not in _pod_spec(home, "podAntiAffinityPreset=none")
    node_term = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    expression = f"{node_term}.nodeSelectorTerms[0].matchExpressions[0]"
    added = _pod_spec(home, f"{expression}.key=pool", f"{expression}.operator=Exists")["affinity"]
    assert added.keys() == {"nodeAffinity", "podAntiAffinity"}, "nodeAffinity adds to the preset"
    own = "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
    replaced = _pod_spec(
        home,
        f"{own}.topologyKey=topology.kubernetes.io/zone",
        f"{own}.labelSelector.matchLabels.app=mine",
    )["affinity"]
    assert replaced == {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "topologyKey": "topology.kubernetes.io/zone",
                    "labelSelector": {"matchLabels": {"app": "mine"}},
                }
            ]
        }
    }


def test_topology_spread_overrides(home: Path) -> None:
    assert "topologySpreadConstraints" not in _pod_spec(home, "topologySpreadConstraints=null")
    zone = "topologySpreadConstraints[0]"
    own = _pod_spec(
        home,
        f"{zone}.topologyKey=topology.kubernetes.io/zone",
        f"{zone}.maxSkew=2",
        f"{zone}.whenUnsatisfiable=DoNotSchedule",
        f"{zone}.labelSelector.matchLabels.app=mine",
    )
    assert own["topologySpreadConstraints"] == [
        {
            "topologyKey": "topology.kubernetes.io/zone",
            "maxSkew": 2,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "mine"}},
        }
    ]


def _network_policy(home: Path, *sets: str) -> dict[str, Any]:
    (policy,) = find(template(home, *sets), "NetworkPolicy")
    return dict(policy)


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def test_network_policy_defaults_admit_nothing_and_send_only_what_the_operator_needs(
    home: Path,
) -> None:
    policy = _network_policy(home)
    assert policy["metadata"]["namespace"] == "cloudsnap-system"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": SELECTOR}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    assert spec["egress"] == [
        {"ports": _tcp(443, 6443)},
        {"ports": _tcp(443)},
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    ]


def test_network_policy_from_values(home: Path) -> None:
    spec = _network_policy(
        home,
        "operator.metricsPort=9090",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "networkPolicy.metricsFrom[1].ipBlock.cidr=192.0.2.0/24",
        "networkPolicy.apiServer.cidrs={198.51.100.10/32,2001:db8::1/128}",
        "networkPolicy.apiServer.ports={6443}",
        "networkPolicy.evsEgress.cidrs={203.0.113.0/24}",
        "networkPolicy.evsEgress.ports={443,8443}",
        "networkPolicy.dns.to[0].podSelector.matchLabels.k8s-app=kube-dns",
        "networkPolicy.dns.to[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=kube-system",
        "networkPolicy.dns.ports={5353}",
    )["spec"]
    assert spec["ingress"] == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}},
                {"ipBlock": {"cidr": "192.0.2.0/24"}},
            ],
            "ports": _tcp(9090),
        }
    ]
    api, evs, dns = spec["egress"]
    assert api == {
        "ports": _tcp(6443),
        "to": [{"ipBlock": {"cidr": "198.51.100.10/32"}}, {"ipBlock": {"cidr": "2001:db8::1/128"}}],
    }
    assert evs == {"ports": _tcp(443, 8443), "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}
    assert dns == {
        "ports": [{"port": 5353, "protocol": "UDP"}, {"port": 5353, "protocol": "TCP"}],
        "to": [
            {
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
            }
        ],
    }
    assert find(template(home, "networkPolicy.enabled=false"), "NetworkPolicy") == []


def test_class_and_secret_from_values(home: Path) -> None:
    objects = template(
        home,
        "snapshotClass.create=true",
        "snapshotClass.region=cn-north-4",
        "snapshotClass.projectID=0123456789abcdef0123456789abcdef",
        "credentials.accessKey=AKEXAMPLE",
        "credentials.secretKey=SKEXAMPLE",
    )
    (cls,) = find(objects, "CloudSnapshotClass", "default")
    assert cls["metadata"]["annotations"] == {"evs.cloudsnap.io/is-default-class": "true"}
    (secret,) = find(objects, "Secret")
    assert secret["metadata"]["namespace"] == "cloudsnap-system"
    assert cls["spec"]["credentialsSecretRef"] == {"name": secret["metadata"]["name"]}
    assert set(secret["data"]) == {"accessKey", "secretKey"}


def test_the_chart_class_is_closed_by_default(
    home: Path,
) -> None:
    values = (
        "snapshotClass.create=true",
        "snapshotClass.region=cn-north-4",
        "snapshotClass.projectID=p1",
        "credentials.existingSecret=my-evs",
    )
    (cls,) = find(template(home, *values), "CloudSnapshotClass")
    assert cls["spec"]["allowedNamespaces"] == {
        "selector": {"matchLabels": {"evs.cloudsnap.io/snapshots": "allowed"}}
    }
    assert (cls["spec"]["volumeIDs"], cls["spec"]["adoption"]) == ("Allowed", "Retain")
    (cls,) = find(
        template(home, *values, "snapshotClass.allowedNamespaces=null"), "CloudSnapshotClass"
    )
    assert "allowedNamespaces" not in cls["spec"]


def test_class_with_an_existing_secret_renders_no_secret(home: Path) -> None:
    objects = template(
        home,
        "snapshotClass.create=true",
        "snapshotClass.region=cn-north-4",
        "snapshotClass.projectID=p1",
        "snapshotClass.default=false",
        "credentials.existingSecret=my-evs",
    )
    assert find(objects, "Secret") == []
    (cls,) = find(objects, "CloudSnapshotClass")
    assert cls["spec"]["credentialsSecretRef"] == {"name": "my-evs"}
    assert "annotations" not in cls["metadata"]


def test_service_monitor_is_optional(home: Path) -> None:
    assert find(template(home), "ServiceMonitor") == []
    (monitor,) = find(template(home, "serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def _bad_values() -> list[Any]:
    """data/bad_values.yaml as (helm option, value, what the error names), one id per value."""
    params = []
    for case in load_data("bad_values.yaml"):
        (option,) = case.keys() - {"names"}  # set or set-json
        params.append(pytest.param(f"--{option}", case[option], case["names"], id=case[option]))
    return params


@pytest.mark.parametrize(("option", "value", "message"), _bad_values())
def test_schema_refuses_bad_values_naming_the_key(
    home: Path, option: str, value: str, message: str
) -> None:
    result = render_chart(home, option, value)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, "the error names the key"


def test_schema_rejects_both_an_existing_secret_and_inline_keys(home: Path) -> None:
    result = render_chart(
        home,
        "--set",
        "credentials.existingSecret=s,credentials.accessKey=AK,credentials.secretKey=SK",
    )
    assert result.returncode != 0
    assert "/credentials/accessKey" in result.stderr
    assert "/credentials/secretKey" in result.stderr


def test_manifests_are_current() -> None:
    rendered = render_manifests.render(HELM)
    on_disk = {p.name: p.read_text() for p in render_manifests.MANIFESTS.glob("*.yaml")}
    assert on_disk == rendered, "stale deploy/manifests: run `make manifests`"


def test_manifests_build_with_kustomize() -> None:
    kubectl = Path(sys.executable).parent / "kubectl"
    built = subprocess.run(
        [str(kubectl), "kustomize", str(render_manifests.MANIFESTS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(built) if doc)
    assert kinds.count("CustomResourceDefinition") == 4
    assert {"Namespace", "Deployment", "ClusterRole", "Role", "ServiceAccount"} <= set(kinds)


def test_only_a_single_replica_may_run_without_leader_election(home: Path) -> None:
    """The schema refuses leaderElection off with more than one replica (the table above)."""
    assert template(home, "replicaCount=1,leaderElection.enabled=false")
    assert template(home, "replicaCount=2")


@pytest.mark.parametrize(
    ("kube_version", "accepted"),
    [("v1.30.14", False), ("v1.31.0", True), (KUBE_OLDEST_VERSION, True), (KUBE_VERSION, True)],
)
def test_kube_version_floor_is_the_oldest_tested_minor(
    home: Path, kube_version: str, accepted: bool
) -> None:
    """Chart.yaml's kubeVersion admits the minor tests/compat/ runs on, refuses the one before."""
    result = render_chart(home, "--kube-version", kube_version)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "incompatible with Kubernetes" in result.stderr
