"""The chart judged from outside: kube-score's default checks on what the chart renders.

kube-score (hack/tools/kube-score, built by `make tools`) scores Kubernetes objects for reliability
and security practice. No CRITICAL finding may remain. A check the chart disagrees with may only be
silenced in the chart itself, with a `kube-score/ignore: <check-id>` annotation and its reason
written in a YAML comment beside it; the test runs kube-score once more with those annotations
disabled and holds both directions: every critical finding is fixed or ignored, and every ignore
still silences a finding (a stale one would hide the next regression of that check). WARNINGs are
held to what a configuration chose on purpose: none with the default values.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hack.tools.install import KUBE_SCORE_VERSION, tools_bin

from tests.deploy.support import CHART, IMAGE, helm

KUBE_SCORE = tools_bin() / "kube-score"
# scorecard.Grade in kube-score: CRITICAL 1, WARNING 5, ALMOST_OK 7, ALL_OK 10.
CRITICAL = 1
WARNING = 5
IGNORE = "kube-score/ignore"

DEFAULT: tuple[str, ...] = ()
SINGLE = ("replicaCount=1", "leaderElection.enabled=false")
EVERYTHING = (
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "grafanaDashboard.enabled=true",
    "snapshotClass.create=true",
    "snapshotClass.region=cn-north-4",
    "snapshotClass.projectID=0123456789abcdef0123456789abcdef",
    "credentials.accessKey=AKEXAMPLE",
    "credentials.secretKey=SKEXAMPLE",
    "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    "operator.watchNamespaces={team-a,team-b}",
)
CONFIGURATIONS = {"default": DEFAULT, "single-standalone": SINGLE, "everything": EVERYTHING}


@dataclass(frozen=True, order=True)
class Finding:
    """One check below OK on one object."""

    kind: str
    name: str
    check: str
    grade: int
    summaries: tuple[str, ...]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "helm-home"


def kubernetes_version() -> str:
    """The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), as kube-score wants it."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.match(r">=\s*(\d+)\.(\d+)", chart["kubeVersion"])
    assert match, chart["kubeVersion"]
    return f"v{match[1]}.{match[2]}"


def render(home: Path, tmp_path: Path, *sets: str) -> Path:
    args = ["template", "rel", str(CHART), "--namespace", "cloudsnap-system", "--set", IMAGE]
    for value in sets:
        args += ["--set", value]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(helm(home, *args).stdout)
    return rendered


def score(manifest: Path, *flags: str) -> list[Finding]:
    """kube-score's default checks on `manifest`: every finding graded WARNING or worse."""
    assert KUBE_SCORE.is_file(), f"{KUBE_SCORE} is missing: run `make tools`"
    result = subprocess.run(
        [
            str(KUBE_SCORE),
            "score",
            "--output-format=json",
            f"--kubernetes-version={kubernetes_version()}",
            *flags,
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # 0: nothing critical; 1: something critical (still a full report on stdout).
    assert result.returncode in (0, 1), result.stderr
    findings = [
        Finding(
            obj["type_meta"]["kind"],
            obj["object_meta"]["name"],
            check["check"]["id"],
            check["grade"],
            tuple(comment["summary"] for comment in check["comments"] or ()),
        )
        for obj in json.loads(result.stdout)
        for check in obj["checks"]
        if not check["skipped"] and check["grade"] <= WARNING
    ]
    return sorted(findings)


def ignored_in_chart(manifest: Path) -> set[tuple[str, str, str]]:
    """(kind, name, check) of each check a rendered object's annotations tell kube-score to skip."""
    ignored: set[tuple[str, str, str]] = set()
    for obj in yaml.safe_load_all(manifest.read_text()):
        if not obj:
            continue
        pod_meta = obj.get("spec", {}).get("template", {}).get("metadata", {})
        for meta in (obj["metadata"], pod_meta):
            for check in (meta.get("annotations") or {}).get(IGNORE, "").split(","):
                if check.strip():
                    ignored.add((obj["kind"], obj["metadata"]["name"], check.strip()))
    return ignored


def test_kube_score_is_the_pinned_release() -> None:
    assert KUBE_SCORE.is_file(), f"{KUBE_SCORE} is missing: run `make tools`"
    version = subprocess.run(
        [str(KUBE_SCORE), "version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(f"kube-score version: {KUBE_SCORE_VERSION},")


def unjustified(manifest: Path) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """What the chart's ignores do not account for, in both directions.

    First, the critical findings neither fixed nor ignored: those kube-score reports with the
    chart's `kube-score/ignore` annotations disabled, less those the annotations name. Second, the
    stale ignores: annotations naming a check that finds nothing on their object any more.
    """
    ignored = ignored_in_chart(manifest)
    unmasked = score(manifest, "--disable-ignore-checks-annotations")
    critical = {(f.kind, f.name, f.check) for f in unmasked if f.grade <= CRITICAL}
    found = {(f.kind, f.name, f.check) for f in unmasked}
    return critical - ignored, ignored - found


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_every_finding_is_fixed_or_ignored_and_every_ignore_silences_one(
    home: Path, tmp_path: Path, name: str
) -> None:
    manifest = render(home, tmp_path, *CONFIGURATIONS[name])
    assert [f for f in score(manifest) if f.grade <= CRITICAL] == []
    assert unjustified(manifest) == (set(), set())


def test_an_ignore_is_accepted_only_while_it_silences_a_finding(home: Path, tmp_path: Path) -> None:
    """Both directions can fail: a critical finding without an ignore, an ignore without one."""
    deployment = ("Deployment", "rel-cloudsnap-operator", "container-image-pull-policy")
    regressed = render(home, tmp_path, "image.pullPolicy=IfNotPresent")
    assert unjustified(regressed) == ({deployment}, set())
    ignore = f"podAnnotations.{IGNORE}=container-image-pull-policy"
    assert unjustified(render(home, tmp_path, "image.pullPolicy=IfNotPresent", ignore)) == (
        set(),
        set(),
    )
    assert unjustified(render(home, tmp_path, ignore)) == (set(), {deployment})


def test_default_values_leave_no_warning_either(home: Path, tmp_path: Path) -> None:
    """Among them those the high-availability issue named: Recreate strategy, one replica."""
    findings = score(render(home, tmp_path))
    assert findings == []
    checked = {
        f.check for f in score(render(home, tmp_path), "--disable-ignore-checks-annotations")
    }
    assert not checked & {
        "deployment-strategy",
        "deployment-replicas",
        "deployment-has-host-podantiaffinity",
        "deployment-has-poddisruptionbudget",
        "pod-networkpolicy",
    }


def test_a_single_standalone_replica_warns_only_about_what_it_chose(
    home: Path, tmp_path: Path
) -> None:
    """One replica without a Lease must use Recreate (old and new would both reconcile)."""
    findings = score(render(home, tmp_path, *SINGLE))
    assert {(f.check, f.grade) for f in findings} == {
        ("deployment-strategy", WARNING),
        ("deployment-replicas", WARNING),
    }


def test_the_judge_is_awake(home: Path, tmp_path: Path) -> None:
    """kube-score does flag what the chart's defaults avoid, so a clean score means something."""
    manifest = render(
        home,
        tmp_path,
        "networkPolicy.enabled=false",
        "image.pullPolicy=IfNotPresent",
        "resources.requests.ephemeral-storage=null",
        "resources.limits.ephemeral-storage=null",
        "podAntiAffinityPreset=none",
    )
    checks = {f.check: f.grade for f in score(manifest)}
    assert checks == {
        "pod-networkpolicy": CRITICAL,
        "container-image-pull-policy": CRITICAL,
        "container-ephemeral-storage-request-and-limit": CRITICAL,
        "deployment-has-host-podantiaffinity": WARNING,
    }


def test_every_ignore_in_the_chart_carries_its_reason() -> None:
    """A `kube-score/ignore` annotation has a YAML comment on its line or the line above."""
    for template in sorted((CHART / "templates").glob("*")):
        lines = template.read_text().splitlines()
        for number, line in enumerate(lines):
            if IGNORE not in line or line.lstrip().startswith("#"):
                continue
            above = lines[number - 1].lstrip() if number else ""
            assert "#" in line or above.startswith("#"), (
                f"{template.name}:{number + 1}: say why kube-score is wrong here"
            )
