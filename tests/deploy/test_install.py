"""The chart against the real API server: install, uninstall, and the RBAC it grants.

No kubelet runs, so no pod starts; what is checked is what the API server stores and authorizes.
The RBAC proof asks the API server itself (`kubectl auth can-i` impersonating the chart's
ServiceAccount) for every permission the operator uses (yes) and a range it must not have (no).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.cluster import Cluster

from tests.deploy.support import CHART, IMAGE, load_data, load_script
from tests.waiting import eventually

render_manifests = load_script("deploy/render_manifests.py")


@dataclass(frozen=True)
class Release:
    """An installed release: its namespace, a second unrelated namespace, and its identity."""

    cluster: Cluster
    name: str
    namespace: str
    other: str

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-cloudsnap-operator"

    def can_i(self, verb: str, resource: str, *scope: str) -> bool:
        resource = resource.format(release=self.name)
        result = self.cluster.kubectl(
            "auth", "can-i", verb, *resource.split(), f"--as={self.service_account}", *scope,
            check=False,
        )  # fmt: skip
        assert result.stdout.strip() in ("yes", "no"), result.stderr
        return result.stdout.strip() == "yes"


def _install(cluster: Cluster, name: str, namespace: str, *sets: str) -> str:
    args = ["install", name, str(CHART), "--namespace", namespace, "--set", IMAGE]
    for value in sets:
        args += ["--set", value]
    return cluster.helm(*args).stdout


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    """One release for every RBAC question (an install per question would only cost time)."""
    suffix = uuid.uuid4().hex[:8]
    namespace, other = f"rbac-{suffix}", f"other-{suffix}"
    for ns in (namespace, other):
        cluster.kubectl("create", "namespace", ns)
    name = f"r{suffix}"
    _install(cluster, name, namespace)
    yield Release(cluster, name, namespace, other)
    cluster.helm("uninstall", name, "--namespace", namespace)
    for ns in (namespace, other):
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def test_helm_install_and_uninstall(cluster: Cluster, namespace: str) -> None:
    name = f"i{uuid.uuid4().hex[:8]}"
    fullname = f"{name}-cloudsnap-operator"
    class_name = f"{namespace}-class"
    output = _install(
        cluster,
        name,
        namespace,
        "snapshotClass.create=true",
        f"snapshotClass.name={class_name}",
        "snapshotClass.default=false",
        "snapshotClass.region=cn-north-4",
        "snapshotClass.projectID=0123456789abcdef0123456789abcdef",
        "credentials.accessKey=AKEXAMPLE",
        "credentials.secretKey=SKEXAMPLE",
    )
    print(output)
    assert "STATUS: deployed" in output
    assert "SKEXAMPLE" not in output

    namespaced = [
        f"deployment/{fullname}",
        f"serviceaccount/{fullname}",
        f"service/{fullname}-metrics",
        f"role/{fullname}-secrets",
        f"rolebinding/{fullname}-secrets",
        f"secret/{fullname}-credentials",
    ]
    cluster_scoped = [
        f"clusterrole/{fullname}",
        f"clusterrolebinding/{fullname}",
        f"clusterrole/{fullname}-view",
        f"clusterrole/{fullname}-edit",
        f"cloudsnapshotclass/{class_name}",
    ]
    cluster.kubectl("get", "--namespace", namespace, *namespaced)
    cluster.kubectl("get", *cluster_scoped)
    status = json.loads(cluster.helm("status", name, "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"

    cluster.helm("uninstall", name, "--namespace", namespace)
    for ref in cluster_scoped:
        assert cluster.kubectl("get", ref, "--ignore-not-found").stdout == ""
    for ref in namespaced:
        assert cluster.kubectl("get", ref, "-n", namespace, "--ignore-not-found").stdout == ""


def _questions(answer: str) -> list[Any]:
    """data/service_account_rights.yaml's questions under ``answer`` (may, may_not) as
    (verb, resource, scope)."""
    return [
        pytest.param(verb, resource, scope, id=f"{verb}-{resource}-{scope}")
        for verb, resource, scope in load_data("service_account_rights.yaml")[answer]
    ]


def _scope(release: Release, scope: str) -> list[str]:
    return {
        "own": ["-n", release.namespace],
        "other": ["-n", release.other],
        "all": ["--all-namespaces"],
        "cluster": [],
    }[scope]


@pytest.mark.parametrize(("verb", "resource", "scope"), _questions("may"))
def test_service_account_may(release: Release, verb: str, resource: str, scope: str) -> None:
    assert release.can_i(verb, resource, *_scope(release, scope))


@pytest.mark.parametrize(("verb", "resource", "scope"), _questions("may_not"))
def test_service_account_may_not(release: Release, verb: str, resource: str, scope: str) -> None:
    assert not release.can_i(verb, resource, *_scope(release, scope))


def test_plain_manifests_are_accepted_by_the_api_server(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """kustomize them into the test's namespace and let the API server validate every object."""
    # kustomize will not load a base from an absolute root: put a copy beside the overlay.
    shutil.copytree(render_manifests.MANIFESTS, tmp_path / "base")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "nameSuffix": f"-{namespace}",
                "resources": ["../base"],
            }
        )
    )
    built = cluster.kubectl("kustomize", str(overlay))
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    # The namespace exists already (the fixture's); CRDs are cluster-wide and shared by the session.
    objects = [o for o in objects if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects)
    )
    assert result.stdout.count("(server dry run)") == len(objects)


SNAPSHOTS = "cloudsnapshots.evs.cloudsnap.io"
CLASSES = "cloudsnapshotclasses.evs.cloudsnap.io"
SCHEDULES = "cloudsnapshotschedules.evs.cloudsnap.io"
RESTORES = "cloudsnapshotrestores.evs.cloudsnap.io"


# The status subresource: `kubectl auth can-i patch TYPE/status` would ask about an object named
# "status", which patch on TYPE covers.
STATUS_OF_SNAPSHOTS = f"{SNAPSHOTS} --subresource=status"
STATUS_OF_SCHEDULES = f"{SCHEDULES} --subresource=status"
STATUS_OF_RESTORES = f"{RESTORES} --subresource=status"

# What a user bound to the built-in view or edit role in a namespace may do with cloudsnap's kinds
# there, once the chart's user roles are aggregated into them: (role, verb, resource, allowed).
USER_RIGHTS = [
    ("view", "get", SNAPSHOTS, True),
    ("view", "list", SNAPSHOTS, True),
    ("view", "watch", SCHEDULES, True),
    ("view", "create", SNAPSHOTS, False),
    ("view", "delete", SNAPSHOTS, False),
    ("view", "patch", SCHEDULES, False),
    ("edit", "list", SNAPSHOTS, True),
    ("edit", "create", SNAPSHOTS, True),
    ("edit", "update", SNAPSHOTS, True),
    ("edit", "patch", SNAPSHOTS, True),
    ("edit", "delete", SNAPSHOTS, True),
    ("edit", "create", SCHEDULES, True),
    ("edit", "delete", SCHEDULES, True),
    ("view", "get", RESTORES, True),
    ("view", "list", RESTORES, True),
    ("view", "watch", RESTORES, True),
    ("view", "create", RESTORES, False),
    ("view", "update", RESTORES, False),
    ("view", "patch", RESTORES, False),
    ("view", "delete", RESTORES, False),
    ("edit", "get", RESTORES, True),
    ("edit", "create", RESTORES, True),
    ("edit", "update", RESTORES, True),
    ("edit", "patch", RESTORES, True),
    ("edit", "delete", RESTORES, True),
    ("edit", "patch", STATUS_OF_SNAPSHOTS, False),
    ("edit", "patch", STATUS_OF_SCHEDULES, False),
    ("edit", "patch", STATUS_OF_RESTORES, False),
    ("admin", "create", SNAPSHOTS, True),
    ("admin", "patch", STATUS_OF_SNAPSHOTS, False),
]


async def test_view_edit_and_admin_users_get_the_aggregated_rights(release: Release) -> None:
    """Bound to a built-in role by a RoleBinding in one namespace, a tenant gets that role's
    rights on CloudSnapshots, schedules and restores there, nowhere else, and never on
    classes."""
    cluster, home, away = release.cluster, release.other, release.namespace
    for role in ("view", "edit", "admin"):
        cluster.kubectl("create", "serviceaccount", f"tenant-{role}", "-n", home)
        cluster.kubectl(
            "create", "rolebinding", f"tenant-{role}", f"--clusterrole={role}",
            f"--serviceaccount={home}:tenant-{role}", "-n", home,
        )  # fmt: skip

    def can(role: str, verb: str, resource: str, *scope: str) -> bool:
        who = f"--as=system:serviceaccount:{home}:tenant-{role}"
        question = ("auth", "can-i", verb, *resource.split(), who, *scope)
        result = cluster.kubectl(*question, check=False)
        assert result.stdout.strip() in ("yes", "no"), result.stderr
        return result.stdout.strip() == "yes"

    # The controller-manager folds the chart's roles into the built-in ones in the background.
    await eventually(lambda: can("view", "get", SNAPSHOTS, "-n", home), timeout=30)
    await eventually(lambda: can("edit", "create", SNAPSHOTS, "-n", home), timeout=30)
    await eventually(lambda: can("admin", "create", SNAPSHOTS, "-n", home), timeout=30)
    answers = {
        (role, verb, resource): can(role, verb, resource, "-n", home)
        for role, verb, resource, _ in USER_RIGHTS
    }
    assert answers == {(role, verb, resource): ok for role, verb, resource, ok in USER_RIGHTS}
    for role in ("view", "edit", "admin"):
        assert not can(role, "get", SNAPSHOTS, "-n", away), role
        assert not can(role, "create", CLASSES), role
        assert not can(role, "list", CLASSES), role  # cluster-scoped: a RoleBinding gives none
