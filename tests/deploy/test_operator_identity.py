"""The operator run as the chart's ServiceAccount: its RBAC is enough, and no more than enough.

The Python Kubernetes clients (kubernetes, kopf) ignore a kubeconfig's `as:` impersonation, so an
impersonating kubeconfig would silently run the operator as the admin. Instead the operator gets a
kubeconfig holding a token of the chart's ServiceAccount issued by the API server (TokenRequest,
what a pod's projected token is): the API server authenticates it as that ServiceAccount and
authorizes every call against the chart's ClusterRole and Roles, nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hack.cluster import Cluster
from hack.sandbox import Simulator, class_manifests, start_operator, start_simulator
from prometheus_client.parser import text_string_to_metric_families

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

# An RBAC refusal reads 'User "system:serviceaccount:..." cannot <verb> resource ...'. Other 403s,
# such as events refused in a namespace another test is tearing down, say nothing about our RBAC.
RBAC_DENIED = re.compile(r'User \\?"system:serviceaccount:[^"\\]+\\?" cannot \w+ resource')


@pytest.fixture(params=["all-namespaces", "watched-namespace"])
def chart_identity(
    request: pytest.FixtureRequest, cluster: Cluster, cloudsnap_crds: object, namespace: str
) -> Iterator[tuple[str, list[str]]]:
    """The chart installed in `namespace`, cluster-wide or watching only `namespace`.

    Yields the ServiceAccount name and the namespaces to give the operator.
    """
    release = f"o{uuid.uuid4().hex[:8]}"
    watched = [] if request.param == "all-namespaces" else [namespace]
    args = ["install", release, str(CHART), "--namespace", namespace, "--skip-crds", "--set", IMAGE]
    if watched:
        args += ["--set", f"operator.watchNamespaces={{{namespace}}}"]
    cluster.helm(*args)
    yield f"{release}-cloudsnap-operator", watched
    cluster.helm("uninstall", release, "--namespace", namespace)


@dataclass
class Cloud:
    """The simulator as EVS, and a (non-default) class pointing at it, in the operator namespace."""

    sim: Simulator
    admin: AdminClient
    class_name: str


@pytest.fixture
async def cloud(cluster: Cluster, namespace: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    sim = start_simulator(tmp_path, create_seconds=1.0, delete_seconds=0.5)
    evs = Cloud(sim, AdminClient(sim.endpoint), f"{namespace}-id")
    manifests = class_manifests(
        sim, class_name=evs.class_name, operator_namespace=namespace, default=False
    )
    try:
        cluster.kubectl("apply", "-f", "-", input=manifests)
        yield evs
    finally:
        cluster.kubectl("delete", "csnapclass", evs.class_name, "--ignore-not-found", check=False)
        await evs.admin.aclose()
        sim.process.stop()


def sample(exposition: str, name: str, **labels: str) -> float:
    """Sample `name` summed over the series carrying `labels`; 0 when there is none."""
    return sum(
        s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def _kubectl(env: dict[str, str], namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "-n", namespace, *args], capture_output=True, text=True, env=env, check=False
    )


def test_the_token_is_the_chart_account_and_is_refused_the_rest(
    cluster: Cluster, namespace: str, chart_identity: tuple[str, list[str]], tmp_path: Path
) -> None:
    account, _ = chart_identity
    kubeconfig = service_account_kubeconfig(cluster, namespace, account, tmp_path / "sa.kubeconfig")
    # The chart names the Lease after the release and lets the account renew only that one.
    as_operator = {**cluster.env, "KUBECONFIG": str(kubeconfig), "CLOUDSNAP_LEASE_NAME": account}
    whoami = json.loads(_kubectl(as_operator, namespace, "auth", "whoami", "-o", "json").stdout)
    assert (
        whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:{account}"
    )
    for args in (
        ["get", "secrets", "-n", "kube-system"],
        ["create", "secret", "generic", "stolen", "--from-literal=a=b"],
        ["create", "configmap", "nope"],
        ["get", "pod", "anything"],  # pods are only listed, by a blocked rollback
        ["delete", "csnapsched", "anything"],  # CloudSnapshots it may delete: a schedule's children
    ):
        refused = _kubectl(as_operator, namespace, *args)
        assert refused.returncode != 0, args
        assert "forbidden" in refused.stderr.lower(), refused.stderr
    # Claims and volumes are read, made and deleted one by one by restores, never changed.
    for verb, resource in (("patch", "pvc"), ("update", "pvc"), ("patch", "pv"), ("update", "pv")):
        answer = _kubectl(as_operator, namespace, "auth", "can-i", verb, resource)
        assert answer.stdout.strip() == "no", (verb, resource, answer.stdout)
    # Pods are only listed, by a rollback blocked on an attached disk, to name them.
    for verb, expected in (("list", "yes"), ("get", "no"), ("watch", "no"), ("delete", "no")):
        answer = _kubectl(as_operator, namespace, "auth", "can-i", verb, "pods")
        assert answer.stdout.strip() == expected, (verb, answer.stdout)


async def test_core_scenario_as_the_chart_service_account(
    cluster: Cluster,
    namespace: str,
    chart_identity: tuple[str, list[str]],
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    account, watched = chart_identity
    kubeconfig = service_account_kubeconfig(cluster, namespace, account, tmp_path / "sa.kubeconfig")
    # The chart names the Lease after the release and lets the account renew only that one.
    as_operator = {**cluster.env, "KUBECONFIG": str(kubeconfig), "CLOUDSNAP_LEASE_NAME": account}
    operator = start_operator(
        tmp_path, as_operator, namespaces=watched, operator_namespace=namespace
    )
    persistent_volume = f"pv-{namespace}"
    try:
        # The source is a claim bound to an everest volume of the disk: resolving it reads the
        # claim and the volume through the account's RBAC too.
        volume = (await cloud.admin.add_volume(size=10))["id"]
        docs = [
            everest_volume(persistent_volume, volume),
            volume_claim(namespace, "data", persistent_volume),
            {
                "apiVersion": "evs.cloudsnap.io/v1alpha1",
                "kind": "CloudSnapshot",
                "metadata": {"name": "proof", "namespace": namespace},
                "spec": {"persistentVolumeClaimName": "data", "className": cloud.class_name},
            },
        ]
        cluster.kubectl("apply", "-f", "-", input=manifest_list(*docs))

        def ready() -> bool:
            out = _kubectl(cluster.env, namespace, "get", "csnap", "proof", "-o", "json").stdout
            return condition(json.loads(out), "Ready").get("status") == "True"

        await eventually(ready, timeout=90, what="csnap/proof Ready as the chart's account")
        [snapshot] = [s for s in await cloud.admin.snapshots() if not s.get("deleted")]
        assert snapshot["volume_id"] == volume

        def reasons() -> set[str]:
            events = _kubectl(
                cluster.env,
                namespace,
                *("get", "events", "--field-selector", "involvedObject.name=proof", "-o", "json"),
            ).stdout
            return {e["reason"] for e in json.loads(events)["items"]}

        # Events are posted in the background after the status write: wait for it, don't race.
        await eventually(lambda: "Created" in reasons(), timeout=30, what="a Created event")

        # The metrics record the work the account's RBAC let the operator do (read the Lease,
        # class, Secret; patch finalizer and status), not merely that the families exist. The
        # step that made it Ready records the time to Ready (and the phase gauge before it) once
        # its status write has returned, a moment after the status can be read.
        def scraped_after_ready() -> str | None:
            url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
            text = httpx.get(url, timeout=10).text
            return text if sample(text, "cloudsnap_snapshot_time_to_ready_seconds_count") else None

        exposition = await eventually(scraped_after_ready, timeout=30, what="time to Ready")
        calls = sum((await cloud.admin.calls()).values())
        assert sample(exposition, "cloudsnap_leader") == 1
        assert sample(exposition, "cloudsnap_reconciles_total", outcome="success") >= 3
        assert (
            sample(exposition, "cloudsnap_evs_requests_total", operation="create", code="202") == 1
        )
        limiter = {"cls": cloud.class_name}
        assert sample(exposition, "cloudsnap_rate_limiter_wait_seconds_count", **limiter) == calls
        assert sample(exposition, "cloudsnap_snapshot_time_to_ready_seconds_count") == 1
        available = sample(exposition, "cloudsnap_snapshots", phase="available")
        if watched:
            assert available == 1
        else:  # cluster-wide it also counts what other tests left in their namespaces
            assert available >= 1
        summary = [
            line
            for line in exposition.splitlines()
            if line.startswith("cloudsnap_") and "_bucket{" not in line
        ]
        print("\n".join(summary))

        cluster.kubectl("delete", "csnap", "proof", "-n", namespace, "--wait=false")

        async def cloud_snapshot_gone() -> bool:
            live = [s for s in await cloud.admin.snapshots() if not s.get("deleted")]
            listed = _kubectl(cluster.env, namespace, "get", "csnap", "proof", "--ignore-not-found")
            return listed.stdout == "" and not live

        await eventually(cloud_snapshot_gone, timeout=90, what="snapshot deleted on EVS")
        log = operator.process.log_text()
        denied = RBAC_DENIED.search(log)
        assert denied is None, log[max(0, denied.start() - 300) : denied.end() + 300]
        assert cloud.sim.secret_key not in log
    finally:
        operator.process.stop()
        cluster.kubectl("delete", "pv", persistent_volume, "--wait=false", "--ignore-not-found")
