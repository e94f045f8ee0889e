"""Render deploy/manifests/ (plain, kustomize-ready YAML) from the Helm chart.

Users without Helm apply these with ``kubectl apply -k deploy/manifests``. They are the chart's
default rendering (CRDs included) split into one file per object, plus the Namespace (which Helm
leaves to ``--create-namespace``), so they never drift from the chart: ``make manifests`` rewrites
them and tests/deploy fails while they are stale.
Usage: ``python deploy/render_manifests.py HELM [OUTPUT_DIR]``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "cloudsnap-operator"
MANIFESTS = ROOT / "deploy" / "manifests"
RELEASE = "cloudsnap-operator"
NAMESPACE = "cloudsnap-system"
HEADER = "# Rendered from deploy/helm/cloudsnap-operator by `make manifests`; do not edit.\n"
# No registry publishes the image and the chart requires one: this reserved name (.invalid never
# resolves) stands in until a kustomization sets where the image was pushed, e.g. with
# `kustomize edit set image registry.invalid/cloudsnap-operator=<registry>/cloudsnap-operator:<tag>`
# (docs/operations.md, "The image").
REPOSITORY = "registry.invalid/cloudsnap-operator"

# The restricted Pod Security level: the operator's pod meets it, so the namespace can enforce it.
NAMESPACE_DOC = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    pod-security.kubernetes.io/enforce: restricted
"""


def _documents(stream: str) -> list[str]:
    docs: list[str] = []
    current: list[str] = []
    for line in stream.splitlines(keepends=True):
        if line.rstrip() == "---":
            docs.append("".join(current))
            current = []
        else:
            current.append(line)
    docs.append("".join(current))
    return [doc for doc in docs if yaml.safe_load(doc) is not None]


def _filename(doc: str) -> str:
    obj = yaml.safe_load(doc)
    namespace = obj["metadata"].get("namespace")
    # Namespaced Roles share a name across namespaces; the namespace keeps their files apart.
    prefix = f"{namespace}_" if namespace and namespace != NAMESPACE else ""
    return f"{prefix}{obj['kind'].lower()}_{obj['metadata']['name']}.yaml"


def render(helm: Path) -> dict[str, str]:
    """File name -> content of every file in deploy/manifests/, kustomization.yaml included."""
    # A fixed argv of our own helm binary; no shell, no user input.
    stream = subprocess.run(  # noqa: S603
        [
            *(str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE),
            *("--include-crds", "--set", f"image.repository={REPOSITORY}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = {"namespace.yaml": HEADER + NAMESPACE_DOC}
    for doc in _documents(stream):
        name = _filename(doc)
        if name in files:
            raise ValueError(f"two rendered objects map to {name}")
        files[name] = HEADER + doc.strip("\n") + "\n"
    resources = "".join(f"  - {name}\n" for name in files)
    files["kustomization.yaml"] = (
        HEADER
        + "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        + "kind: Kustomization\n"
        + "resources:\n"
        + resources
    )
    return files


def write(helm: Path, output: Path = MANIFESTS) -> None:
    """Replace ``output`` with a fresh rendering (stale files of removed objects go too)."""
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob("*.yaml"):
        stale.unlink()
    for name, text in render(helm).items():
        (output / name).write_text(text)


if __name__ == "__main__":
    write(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else MANIFESTS)
