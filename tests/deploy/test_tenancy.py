"""Sharing a cluster, end to end on the real API server with RBAC on: a tenant ServiceAccount
bound to the built-in `edit` role in namespace A, acting through impersonation, against the
operator run as the chart's ServiceAccount and the EVS simulator (docs/security.md).

The tenant snapshots its own claim; it cannot use a class not offered to A, reach namespace B's
disk by raw ID, or adopt a snapshot made outside the cluster with deletion power through a class
that keeps adopted snapshots only. Each refusal says why: at admission where the chart's policies
are installed, in status otherwise (and always for B's disk, which a policy cannot see), and the
operator sends EVS nothing for a refused resource.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hack.cluster import Cluster
from hack.sandbox import Simulator, class_manifests, start_operator, start_simulator

from cloudsnap.evs import AKSKAuth, CreateSnapshotRequest, EVSClient
from evs_simulator.admin_client import AdminClient
from tests.deploy.support import CHART, IMAGE
from tests.fixtures.cluster import (
    everest_volume,
    manifest_list,
    service_account_kubeconfig,
    volume_claim,
)
from tests.fixtures.operator import condition
from tests.waiting import eventually

API_VERSION = "evs.cloudsnap.io/v1alpha1"


@pytest.fixture(params=["admission", "operator-only"])
def release(
    request: pytest.FixtureRequest, cluster: Cluster, cloudsnap_crds: object, namespace: str
) -> Iterator[tuple[str, bool]]:
    """The chart in the operator's namespace, with its admission policies or without; yields its
    ServiceAccount and whether the policies are installed."""
    name = f"t{uuid.uuid4().hex[:8]}"
    policies = request.param == "admission"
    args = ["install", name, str(CHART), "--namespace", namespace, "--skip-crds", "--set", IMAGE]
    args += ["--set", f"admissionPolicy.enabled={str(policies).lower()}"]
    cluster.helm(*args)
    yield f"{name}-cloudsnap-operator", policies
    cluster.helm("uninstall", name, "--namespace", namespace)


@pytest.fixture
def tenants(cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """Namespaces A and B; A's ServiceAccount `tenant` is bound to the built-in edit role in A."""
    a, b = f"{namespace}-a", f"{namespace}-b"
    for each in (a, b):
        cluster.kubectl("create", "namespace", each)
    cluster.kubectl("create", "serviceaccount", "tenant", "-n", a)
    cluster.kubectl(
        "create", "rolebinding", "tenant", "--clusterrole=edit",
        f"--serviceaccount={a}:tenant", "-n", a,
    )  # fmt: skip
    yield a, b
    for each in (a, b):
        cluster.kubectl("delete", "namespace", each, "--wait=false", "--ignore-not-found")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[Simulator, AdminClient]]:
    simulator = start_simulator(tmp_path, create_seconds=0.5, delete_seconds=0.5)
    admin = AdminClient(simulator.endpoint)
    try:
        yield simulator, admin
    finally:
        await admin.aclose()
        simulator.process.stop()


def as_tenant(
    cluster: Cluster, a: str, *args: str, body: Any = None
) -> subprocess.CompletedProcess[str]:
    who = f"--as=system:serviceaccount:{a}:tenant"
    stdin = None if body is None else json.dumps(body)
    return cluster.kubectl(*args, "-n", a, who, input=stdin, check=False)


def snapshot(name: str, a: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CloudSnapshot",
        "metadata": {"name": name, "namespace": a},
        "spec": spec,
    }


async def test_a_tenant_reaches_its_own_disks_only(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, bool],
    tenants: tuple[str, str],
    sim: tuple[Simulator, AdminClient],
    tmp_path: Path,
) -> None:
    account, policies = release
    a, b = tenants
    simulator, admin = sim
    offered, closed = f"{namespace}-offered", f"{namespace}-closed"
    docs = [json.loads(doc) for doc in class_manifests(
        simulator, class_name=offered, operator_namespace=namespace, default=False
    ).split("\n---\n")]  # fmt: skip
    secret, cls = docs
    cls["spec"] |= {"allowedNamespaces": {"names": [a, b]}, "adoption": "Retain"}
    other = json.loads(json.dumps(cls))
    other["metadata"]["name"] = closed
    other["spec"]["allowedNamespaces"] = {"names": [b]}
    disk_a = (await admin.add_volume(size=10))["id"]
    disk_b = (await admin.add_volume(size=10))["id"]
    pv_a, pv_b = f"pv-{a}", f"pv-{b}"
    cluster.kubectl("apply", "-f", "-", input=manifest_list(
        secret, cls, other,
        everest_volume(pv_a, disk_a, claim=(a, "data")), volume_claim(a, "data", pv_a),
        everest_volume(pv_b, disk_b, claim=(b, "data")), volume_claim(b, "data", pv_b),
    ))  # fmt: skip
    auth = AKSKAuth(simulator.access_key, simulator.secret_key, simulator.project_id)
    async with EVSClient(
        simulator.endpoint, auth, simulator.project_id, user_agent="someone-else"
    ) as outside:
        made = await outside.create_snapshot(CreateSnapshotRequest(volume_id=disk_b, name="x"))

    kubeconfig = service_account_kubeconfig(cluster, namespace, account, tmp_path / "sa.kcfg")
    as_operator = {**cluster.env, "KUBECONFIG": str(kubeconfig), "CLOUDSNAP_LEASE_NAME": account}
    operator = start_operator(tmp_path, as_operator, namespaces=[], operator_namespace=namespace)
    try:
        # The chart's roles reach the tenant through the built-in edit role in the background.
        await eventually(
            lambda: (
                as_tenant(cluster, a, "auth", "can-i", "create", "cloudsnapshots").stdout.strip()
                == "yes"
            ),
            timeout=30,
            what="the tenant may create CloudSnapshots in A",
        )
        if policies:  # a new policy takes the API server a moment: probe with a server dry run
            probe = snapshot("probe", a, className=closed, volumeID=disk_a)
            await eventually(
                lambda: (
                    as_tenant(
                        cluster, a, "create", "--dry-run=server", "-f", "-", body=probe
                    ).returncode
                ),
                timeout=30,
                what="the admission policies in force",
            )

        # (name, body, reason, why, whether a policy can refuse it at admission)
        refusals = [
            (
                "closed",
                snapshot("closed", a, className=closed, volumeID=disk_a),
                "ClassNotAllowed",
                f"CloudSnapshotClass {closed} does not admit namespace {a}",
                True,
            ),
            (
                "theirs",
                snapshot("theirs", a, className=offered, volumeID=disk_b),
                "SourceNotAllowed",
                f"bound to a claim in namespace {b}",
                False,
            ),
            (
                "adopt",
                snapshot(
                    "adopt", a, className=offered, snapshotID=made.id, deletionPolicy="Delete"
                ),
                "SourceNotAllowed",
                "lets adopted snapshots be kept only",
                True,
            ),
        ]
        in_status = {}
        for name, body, reason, why, admission in refusals:
            result = as_tenant(cluster, a, "create", "-f", "-", body=body)
            if policies and admission:
                assert result.returncode != 0, name
                assert why in result.stderr, result.stderr
                assert reason in result.stderr, result.stderr
            else:
                assert result.returncode == 0, result.stderr
                in_status[name] = (reason, why)

        def synced(name: str) -> dict[str, Any]:
            out = as_tenant(cluster, a, "get", "csnap", name, "-o", "json").stdout
            return condition(json.loads(out), "Synced")

        for name, (reason, why) in in_status.items():
            await eventually(
                lambda n=name: synced(n).get("status") == "False", timeout=60, what=name
            )
            said = synced(name)
            assert said["reason"] == reason, said
            assert why in said["message"], said
            got = json.loads(as_tenant(cluster, a, "get", "csnap", name, "-o", "json").stdout)
            assert not got["metadata"].get("finalizers"), got
        by_operator = {
            agent: calls for agent, calls in (await admin.calls_by_agent()).items()
            if agent.startswith("cloudsnap")
        }  # fmt: skip
        assert by_operator == {}, by_operator  # the refused resources cost no EVS call

        # The tenant's own claim, through the class offered to A.
        own = snapshot("own", a, className=offered, persistentVolumeClaimName="data")
        assert as_tenant(cluster, a, "create", "-f", "-", body=own).returncode == 0

        def ready() -> bool:
            out = as_tenant(cluster, a, "get", "csnap", "own", "-o", "json").stdout
            return condition(json.loads(out), "Ready").get("status") == "True"

        await eventually(ready, timeout=90, what="the tenant's own snapshot Ready")
        live = [s for s in await admin.snapshots() if not s.get("deleted") and s["id"] != made.id]
        assert [s["volume_id"] for s in live] == [disk_a]
        assert sum(sum(calls.values()) for agent, calls in (await admin.calls_by_agent()).items()
                   if agent.startswith("cloudsnap")) > 0  # fmt: skip

        assert as_tenant(cluster, a, "delete", "csnap", "own", "--wait=false").returncode == 0
        await eventually(
            lambda: as_tenant(cluster, a, "get", "csnap", "own", "--ignore-not-found").stdout == "",
            timeout=60,
            what="the tenant's snapshot deleted",
        )
    finally:
        operator.process.stop()
        cluster.kubectl("delete", "pv", pv_a, pv_b, "--wait=false", "--ignore-not-found")
        cluster.kubectl("delete", "csnapclass", offered, closed, "--ignore-not-found", check=False)
