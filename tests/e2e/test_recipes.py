"""The recipes of docs/automation.md, run against the local control plane: their manifests are
accepted by the API server, and their commands do what the recipe says."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import yaml

from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack
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
    for claim in ("data-db-0", "data-db-1"):
        disk = await stack.add_volume(status="in-use")
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
        phases = stack.kubectl("get", "pvc", "-o", "jsonpath={.items[*].status.phase}").stdout
        return phases.split() == ["Bound", "Bound"]

    await eventually(bound, timeout=30, what="the PV binder binding both claims")

    def run_hook() -> tuple[int, str]:
        result = stack.cluster.run(*command, "-n", stack.namespace, check=False)
        return result.returncode, result.stdout + result.stderr

    code, out = await asyncio.to_thread(run_hook)
    assert code == 0, out
    ready = [line for line in out.splitlines() if " Ready: EVS snapshot " in line]
    assert len(ready) == 2, out

    # A claim of the release whose disk is gone: its snapshot fails for good, so does the hook.
    volume_names.append(f"pv-{stack.namespace}-gone")
    stack.kubectl(
        "create",
        "-f",
        "-",
        input=manifest_list(
            everest_volume(volume_names[-1], str(uuid.uuid4())),
            volume_claim(stack.namespace, "data-db-2", volume_names[-1], labels=labels),
        ),
    )
    await eventually(
        lambda: (
            "Pending"
            not in stack.kubectl("get", "pvc", "-o", "jsonpath={.items[*].status.phase}").stdout
        ),
        timeout=30,
        what="the third claim bound",
    )
    code, out = await asyncio.to_thread(run_hook)
    assert code == 1, out
    assert "failed: " in out.splitlines()[-1]
