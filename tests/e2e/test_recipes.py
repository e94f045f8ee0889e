"""The recipes of docs/automation.md, run against the local control plane: their manifests are
accepted by the API server, and their commands do what the recipe says."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.automation import status_check
from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack, condition
from tests.waiting import eventually

DOCS = Path(__file__).resolve().parents[2] / "docs" / "automation.md"
RELEASE = "shop"


def recipe(name: str) -> str:
    """The YAML block that follows `<!-- recipe: NAME -->` in docs/automation.md."""
    text = DOCS.read_text()
    after = text.split(f"<!-- recipe: {name} -->\n```yaml\n", 1)[1]
    return after.split("```", 1)[0]


def rendered(template: str, release: str, image: str) -> list[dict[str, object]]:
    """The recipe's manifests as Helm renders them for one release (its two template values)."""
    text = template.replace("{{ .Release.Name }}", release).replace(
        "{{ .Values.backup.image }}", image
    )
    assert "{{" not in text, re.findall(r"\{\{[^}]*\}\}", text)
    return [doc for doc in yaml.safe_load_all(text) if doc]


async def bound_claims(
    stack: Stack,
    volume_names: list[str],
    claims: list[str],
    labels: dict[str, str] | None = None,
    *,
    disk_gone: bool = False,
) -> None:
    """Claims bound to PersistentVolumes of in-use EVS disks (of disks EVS does not have, with
    ``disk_gone``), as a release's StatefulSet has them."""
    for claim in claims:
        disk = str(uuid.uuid4()) if disk_gone else await stack.add_volume(status="in-use")
        volume_names.append(f"pv-{stack.namespace}-{claim}")
        stack.kubectl(
            "create",
            "-f",
            "-",
            input=manifest_list(
                everest_volume(volume_names[-1], disk),
                volume_claim(stack.namespace, claim, volume_names[-1], labels=labels),
            ),
        )

    def bound() -> bool:
        for claim in claims:
            phase = stack.kubectl("get", "pvc", claim, "-o", "jsonpath={.status.phase}").stdout
            if phase != "Bound":
                return False
        return True

    await eventually(bound, timeout=30, what=f"the PV binder binding {', '.join(claims)}")


async def test_the_helm_pre_upgrade_hook_snapshots_the_release_claims_and_fails_on_a_failure(
    stack: Stack, volume_names: list[str]
) -> None:
    manifests = rendered(recipe("helm-pre-upgrade"), RELEASE, "registry.example/cloudsnap:1")
    assert [m["kind"] for m in manifests] == ["ServiceAccount", "Role", "RoleBinding", "Job"]
    stack.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest_list(*manifests))
    [job] = [m for m in manifests if m["kind"] == "Job"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]  # type: ignore[index]
    assert command[0] == "kubectl-cloudsnap"

    labels = {"app.kubernetes.io/instance": RELEASE}
    await bound_claims(stack, volume_names, ["data-db-0", "data-db-1"], labels)

    def run_hook() -> tuple[int, str]:
        result = stack.cluster.run(*command, "-n", stack.namespace, check=False)
        return result.returncode, result.stdout + result.stderr

    code, out = await asyncio.to_thread(run_hook)
    assert code == 0, out
    ready = [line for line in out.splitlines() if " Ready: EVS snapshot " in line]
    assert len(ready) == 2, out

    # A claim of the release whose disk is gone: its snapshot fails for good, so does the hook.
    await bound_claims(stack, volume_names, ["data-db-2"], labels, disk_gone=True)
    code, out = await asyncio.to_thread(run_hook)
    assert code == 1, out
    assert "failed: " in out.splitlines()[-1]


def argo_substituted(text: str, values: dict[str, str]) -> str:
    """``text`` with Argo Workflows' ``{{name}}`` variables replaced, as its controller does."""
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    assert "{{" not in text, re.findall(r"\{\{[^}]*\}\}", text)
    return text


async def test_the_argo_workflows_step_succeeds_on_a_ready_snapshot_and_fails_on_a_failed_one(
    stack: Stack, volume_names: list[str]
) -> None:
    [workflow] = [doc for doc in yaml.safe_load_all(recipe("argo-workflows")) if doc]
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    steps = [step["template"] for group in templates["migrate"]["steps"] for step in group]
    assert steps == ["snapshot", "schema-migration"], "the migration must wait for the snapshot"
    resource = templates["snapshot"]["resource"]
    assert resource["action"] == "create"
    assert resource["setOwnerReference"] is False
    conditions = (
        "--argo-success",
        resource["successCondition"],
        "--argo-failure",
        resource["failureCondition"],
    )
    await bound_claims(stack, volume_names, ["data-db-0"])
    await bound_claims(stack, volume_names, ["data-gone"], disk_gone=True)

    async def run_step(claim: str) -> dict[str, Any]:
        """The resource template as Argo's executor runs it: create, then poll the object until
        a condition decides."""
        manifest = argo_substituted(
            resource["manifest"],
            {"workflow.name": "migrate-shop-x1", "workflow.parameters.claim": claim},
        )
        out = stack.kubectl("create", "-f", "-", "-o", "json", input=manifest).stdout
        created = json.loads(out)
        name = created["metadata"]["name"]
        assert created["spec"]["deletionPolicy"] == "Retain"
        verdicts: list[dict[str, Any]] = []

        def decided() -> bool:
            live = json.loads(stack.kubectl("get", "cloudsnapshot", name, "-o", "json").stdout)
            verdicts.append(status_check([live], *conditions)[name] | {"live": live})
            return bool(verdicts[-1]["argo"] != "Running")

        await eventually(decided, timeout=60, what=f"the step's conditions deciding on {name}")
        return verdicts[-1]

    ready = await run_step("data-db-0")
    assert ready["argo"] == "Succeeded", ready
    assert condition(ready["live"], "Ready").get("status") == "True"

    failed = await run_step("data-gone")
    assert failed["argo"] == "Failed", failed
    assert failed["live"]["status"]["error"]["retryable"] is False
    assert condition(failed["live"], "Stalled").get("status") == "True"


async def test_the_argo_cd_sync_waves_hold_the_rollout_until_the_snapshot_is_healthy(
    stack: Stack, volume_names: list[str]
) -> None:
    manifests = [doc for doc in yaml.safe_load_all(recipe("argocd-sync-wave")) if doc]

    def wave(manifest: dict[str, Any]) -> int:
        return int(manifest["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    manifests.sort(key=wave)
    snapshot, job = manifests
    assert snapshot["kind"] == "CloudSnapshot"
    assert job["kind"] == "Job"
    assert wave(snapshot) < wave(job)
    assert snapshot["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
    assert snapshot["spec"]["deletionPolicy"] == "Retain"
    stack.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest_list(job))

    async def sync_wave(claim: str) -> dict[str, Any]:
        """The snapshot's wave as Argo CD syncs it: applied, then judged by the health script
        until Healthy (the next wave goes) or Degraded (the sync fails)."""
        name = f"before-{claim}"
        body = snapshot | {"metadata": snapshot["metadata"] | {"name": name}}
        body["spec"] = snapshot["spec"] | {"persistentVolumeClaimName": claim}
        stack.kubectl("apply", "-f", "-", input=manifest_list(body))
        verdicts: list[dict[str, Any]] = []

        def decided() -> bool:
            live = json.loads(stack.kubectl("get", "cloudsnapshot", name, "-o", "json").stdout)
            verdicts.append(status_check([live])[name])
            return bool(verdicts[-1]["health"]["status"] in ("Healthy", "Degraded"))

        await eventually(decided, timeout=60, what=f"Argo CD's health of {name} deciding")
        assert {v["health"]["status"] for v in verdicts[:-1]} <= {"Progressing"}, verdicts
        return verdicts[-1]

    await bound_claims(stack, volume_names, ["data-db-0"])
    await bound_claims(stack, volume_names, ["data-gone"], disk_gone=True)
    healthy = await sync_wave("data-db-0")
    assert healthy["health"]["status"] == "Healthy", healthy
    degraded = await sync_wave("data-gone")
    assert degraded["health"]["status"] == "Degraded", degraded
    assert degraded["health"]["message"], "a failed sync must say why"
