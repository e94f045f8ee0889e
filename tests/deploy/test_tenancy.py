"""Sharing a cluster, end to end on the real API server with RBAC on: a tenant ServiceAccount
bound to the built-in `edit` role in namespace A, acting through impersonation, against the
operator run as the chart's ServiceAccount and the EVS simulator (docs/security.md).

The tenant snapshots its own claim and restores that snapshot to a new claim; it cannot use a
class not offered to A, reach namespace B's disk by raw ID (to snapshot it, or to restore its
snapshot), or adopt a snapshot made outside the cluster with deletion power through a class that
keeps adopted snapshots only. Its schedule runs through the class offered to A, and not through
another. Each refusal says why: at admission where the chart's policies are installed, in status
otherwise (and always for B's disk, which a policy cannot see), and the operator sends EVS
nothing for a refused resource but the one read of a snapshot ID that shows whose it is.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hack.cluster import Cluster
from hack.sandbox import Simulator, class_manifests, start_operator, start_simulator

from cloudsnap.evs.auth import AKSKAuth
from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.models import CreateSnapshotRequest
from evs_simulator.admin_client import AdminClient
from tests.deploy.support import CHART, IMAGE
from tests.fixtures.cluster import (
    everest_volume,
    manifest_list,
    release_cloudsnap_objects,
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
    """Namespaces A and B; in A, ServiceAccount `tenant` is bound to the built-in edit role and
    `viewer` to the built-in view role."""
    a, b = f"{namespace}-a", f"{namespace}-b"
    for each in (a, b):
        cluster.kubectl("create", "namespace", each)
    for account, role in (("tenant", "edit"), ("viewer", "view")):
        cluster.kubectl("create", "serviceaccount", account, "-n", a)
        cluster.kubectl(
            "create", "rolebinding", account, f"--clusterrole={role}",
            f"--serviceaccount={a}:{account}", "-n", a,
        )  # fmt: skip
    yield a, b
    for each in (a, b):
        release_cloudsnap_objects(cluster, each)
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
    cluster: Cluster, a: str, *args: str, body: Any = None, account: str = "tenant"
) -> subprocess.CompletedProcess[str]:
    who = f"--as=system:serviceaccount:{a}:{account}"
    stdin = None if body is None else json.dumps(body)
    return cluster.kubectl(*args, "-n", a, who, input=stdin, check=False)


def resource(kind: str, name: str, a: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": a},
        "spec": spec,
    }


def snapshot(name: str, a: str, **spec: Any) -> dict[str, Any]:
    return resource("CloudSnapshot", name, a, **spec)


def restore(name: str, a: str, **spec: Any) -> dict[str, Any]:
    return resource("CloudSnapshotRestore", name, a, **spec)


def synced(cluster: Cluster, a: str, kind: str, name: str) -> dict[str, Any]:
    """The object's Synced condition, read as the tenant."""
    out = as_tenant(cluster, a, "get", kind, name, "-o", "json").stdout
    return condition(json.loads(out), "Synced")


def ready(cluster: Cluster, a: str, kind: str, name: str) -> bool:
    out = as_tenant(cluster, a, "get", kind, name, "-o", "json").stdout
    return condition(json.loads(out), "Ready").get("status") == "True"


async def operator_calls(admin: AdminClient) -> dict[str, int]:
    """The operator's EVS calls so far, by operation (those it made none of left out)."""
    return {
        operation: count
        for agent, calls in (await admin.calls_by_agent()).items()
        if agent.startswith("cloudsnap")
        for operation, count in calls.items()
        if count
    }


# kubectl auth can-i, per built-in role in A (the account bound to it), for each verb on
# CloudSnapshotRestores (the chart's aggregated roles); their status is the operator's only.
CAN_I = {
    "viewer": {
        "get": "yes", "list": "yes", "watch": "yes",
        "create": "no", "update": "no", "patch": "no", "delete": "no",
    },
    "tenant": {
        "get": "yes", "list": "yes", "watch": "yes",
        "create": "yes", "update": "yes", "patch": "yes", "delete": "yes",
    },
}  # fmt: skip


@dataclass
class Setting:
    """A's and B's claims of their own disks, a class offered to A and B (keeping adopted
    snapshots only) and one offered to B only, a snapshot of B's disk made outside the cluster,
    and the operator running as the chart's ServiceAccount with the tenant's roles in force."""

    cluster: Cluster
    a: str
    b: str
    offered: str
    closed: str
    disk_a: str
    disk_b: str
    outside_snapshot: str
    admin: AdminClient
    policies: bool
    volumes: list[str]


@pytest.fixture
async def setting(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, bool],
    tenants: tuple[str, str],
    sim: tuple[Simulator, AdminClient],
    tmp_path: Path,
) -> AsyncIterator[Setting]:
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
        everest_volume(pv_a, disk_a, claim=(a, "data")),
        volume_claim(a, "data", pv_a, labels={"backup": "daily"}),
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
    here = Setting(
        cluster, a, b, offered, closed, disk_a, disk_b, made.id, admin, policies, [pv_a, pv_b]
    )
    try:
        # The chart's roles reach the tenant through the built-in edit role in the background.
        await eventually(
            lambda: (
                as_tenant(
                    cluster, a, "auth", "can-i", "create", "cloudsnapshotrestores"
                ).stdout.strip()
                == "yes"
            ),
            timeout=30,
            what="the tenant may create CloudSnapshotRestores in A",
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
        yield here
    finally:
        operator.process.stop()
        cluster.kubectl("delete", "pv", *here.volumes, "--wait=false", "--ignore-not-found")
        cluster.kubectl("delete", "csnapclass", offered, closed, "--ignore-not-found", check=False)


async def refuse_each(
    here: Setting, refusals: list[tuple[str, dict[str, Any], str, str, bool]]
) -> None:
    """Create each (name, body, reason, why, whether a policy can refuse it at admission) as the
    tenant: refused at admission, saying why, where the policies are in force and can see it;
    else admitted, and refused by the operator in status, without a finalizer."""
    cluster, a = here.cluster, here.a
    in_status = {}
    for name, body, reason, why, admission in refusals:
        result = as_tenant(cluster, a, "create", "-f", "-", body=body)
        if here.policies and admission:
            assert result.returncode != 0, name
            assert why in result.stderr, result.stderr
            assert reason in result.stderr, result.stderr
        else:
            assert result.returncode == 0, result.stderr
            in_status[name] = (body["kind"], reason, why)
    for name, (kind, reason, why) in in_status.items():
        await eventually(
            lambda k=kind, n=name: synced(cluster, a, k, n).get("status") == "False",
            timeout=60,
            what=name,
        )
        said = synced(cluster, a, kind, name)
        assert said["reason"] == reason, said
        assert why in said["message"], said
        got = json.loads(as_tenant(cluster, a, "get", kind, name, "-o", "json").stdout)
        assert not got["metadata"].get("finalizers"), got


async def test_a_tenant_reaches_its_own_disks_only(setting: Setting) -> None:
    here = setting
    cluster, a, b, admin = here.cluster, here.a, here.b, here.admin
    offered, closed = here.offered, here.closed
    for account, verbs in CAN_I.items():
        for verb, expected in verbs.items():
            answer = as_tenant(
                cluster, a, "auth", "can-i", verb, "cloudsnapshotrestores", account=account
            )
            assert answer.stdout.strip() == expected, (account, verb)
        status = as_tenant(
            cluster, a, "auth", "can-i", "patch", "cloudsnapshotrestores",
            "--subresource=status", account=account,
        )  # fmt: skip
        assert status.stdout.strip() == "no", account
    elsewhere = cluster.kubectl(
        "auth", "can-i", "get", "cloudsnapshotrestores", "-n", b,
        f"--as=system:serviceaccount:{a}:tenant", check=False,
    )  # fmt: skip
    assert elsewhere.stdout.strip() == "no", "the tenant's rights end at its namespace"

    await refuse_each(here, [
        (
            "closed",
            snapshot("closed", a, className=closed, volumeID=here.disk_a),
            "ClassNotAllowed",
            f"CloudSnapshotClass {closed} does not admit namespace {a}",
            True,
        ),
        (
            "theirs",
            snapshot("theirs", a, className=offered, volumeID=here.disk_b),
            "SourceNotAllowed",
            f"bound to a claim in namespace {b}",
            False,
        ),
        (
            "adopt",
            snapshot(
                "adopt", a, className=offered, snapshotID=here.outside_snapshot,
                deletionPolicy="Delete",
            ),
            "SourceNotAllowed",
            "lets adopted snapshots be kept only",
            True,
        ),
        (
            "closed-restore",
            restore(
                "closed-restore", a, className=closed, snapshotID=here.outside_snapshot,
                newVolume={},
            ),
            "ClassNotAllowed",
            f"CloudSnapshotClass {closed} does not admit namespace {a}",
            True,
        ),
    ])  # fmt: skip
    assert await operator_calls(admin) == {}  # the refused resources cost no EVS call

    # B's disk's snapshot by raw ID, through the class offered to A: what the ID names is known
    # only once EVS is asked, so the refusal costs that one read, and nothing else.
    await refuse_each(here, [
        (
            "theirs-restore",
            restore(
                "theirs-restore", a, className=offered, snapshotID=here.outside_snapshot,
                newVolume={"claim": {"name": "stolen"}},
            ),
            "SourceNotAllowed",
            f"bound to a claim in namespace {b}: only that namespace may restore it",
            False,
        ),
    ])  # fmt: skip
    assert set(await operator_calls(admin)) == {"show"}

    # The tenant's own claim, through the class offered to A.
    own = snapshot("own", a, className=offered, persistentVolumeClaimName="data")
    assert as_tenant(cluster, a, "create", "-f", "-", body=own).returncode == 0
    await eventually(
        lambda: ready(cluster, a, "csnap", "own"), timeout=90, what="the tenant's snapshot Ready"
    )
    live = [
        s for s in await admin.snapshots()
        if not s.get("deleted") and s["id"] != here.outside_snapshot
    ]  # fmt: skip
    assert [s["volume_id"] for s in live] == [here.disk_a]

    # ... restored to a new disk, with a claim in A bound to it.
    back = restore("back", a, snapshotName="own", newVolume={"claim": {"name": "restored"}})
    assert as_tenant(cluster, a, "create", "-f", "-", body=back).returncode == 0
    await eventually(
        lambda: ready(cluster, a, "csnaprestore", "back"), timeout=120, what="the restore Ready"
    )
    status = json.loads(as_tenant(cluster, a, "get", "csnaprestore", "back", "-o", "json").stdout)[
        "status"
    ]
    here.volumes.append(status["persistentVolumeName"])
    claim = json.loads(as_tenant(cluster, a, "get", "pvc", "restored", "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["volumeName"] == status["persistentVolumeName"]
    assert as_tenant(cluster, a, "get", "pvc", "stolen").returncode != 0, "nothing made"
    made = [v for v in await admin.volumes() if v["id"] not in (here.disk_a, here.disk_b)]
    assert [v["id"] for v in made] == [status["volumeID"]]
    assert made[0].get("snapshot_id") == live[0]["id"]

    assert as_tenant(cluster, a, "delete", "csnap", "own", "--wait=false").returncode == 0
    await eventually(
        lambda: as_tenant(cluster, a, "get", "csnap", "own", "--ignore-not-found").stdout == "",
        timeout=60,
        what="the tenant's snapshot deleted",
    )


def schedule(name: str, a: str, class_name: str) -> dict[str, Any]:
    return resource(
        "CloudSnapshotSchedule",
        name,
        a,
        schedule="@daily",
        sources={"persistentVolumeClaimSelector": {"matchLabels": {"backup": "daily"}}},
        retention={"maxCount": 2},
        snapshotTemplate={"spec": {"className": class_name}},
    )


def run_now(cluster: Cluster, a: str, name: str) -> None:
    """Ask the schedule for one run now, as `kubectl cloudsnap run` does."""
    annotation = f"evs.cloudsnap.io/run-now={uuid.uuid4().hex}"
    result = as_tenant(cluster, a, "annotate", "csnapsched", name, annotation)
    assert result.returncode == 0, result.stderr


def children(cluster: Cluster, a: str, name: str) -> list[dict[str, Any]]:
    out = as_tenant(
        cluster, a, "get", "csnap", "-l", f"evs.cloudsnap.io/schedule={name}", "-o", "json"
    ).stdout
    return list(json.loads(out)["items"])


async def test_a_tenant_schedules_through_the_class_offered_to_it_only(setting: Setting) -> None:
    here = setting
    cluster, a = here.cluster, here.a
    refused = schedule("closed", a, here.closed)
    result = as_tenant(cluster, a, "create", "-f", "-", body=refused)
    if here.policies:
        assert result.returncode != 0
        assert f"CloudSnapshotClass {here.closed} does not admit namespace {a}" in result.stderr
    else:
        # The schedule runs; its child is refused as a CloudSnapshot of A would be.
        assert result.returncode == 0, result.stderr
        run_now(cluster, a, "closed")
        await eventually(
            lambda: (
                [
                    condition(child, "Synced").get("reason")
                    for child in children(cluster, a, "closed")
                ]
                == ["ClassNotAllowed"]
            ),
            timeout=60,
            what="the schedule's child refused",
        )
        (child,) = children(cluster, a, "closed")
        message = condition(child, "Synced")["message"]
        assert f"CloudSnapshotClass {here.closed} does not admit namespace {a}" in message
        assert not child["metadata"].get("finalizers"), child
    assert await operator_calls(here.admin) == {}, "no child of a refused schedule reaches EVS"

    admitted = schedule("offered", a, here.offered)
    assert as_tenant(cluster, a, "create", "-f", "-", body=admitted).returncode == 0
    run_now(cluster, a, "offered")

    def ready_child() -> bool:
        return any(
            condition(child, "Ready").get("status") == "True"
            for child in children(cluster, a, "offered")
        )

    await eventually(ready_child, timeout=90, what="the admitted schedule's child Ready")
    live = [s for s in await here.admin.snapshots() if not s.get("deleted")]
    assert here.disk_a in {s["volume_id"] for s in live}
    assert as_tenant(cluster, a, "delete", "csnapsched", "offered", "closed",
                     "--ignore-not-found").returncode == 0  # fmt: skip
