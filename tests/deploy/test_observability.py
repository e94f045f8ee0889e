"""The chart's PrometheusRule and Grafana dashboard: well formed, valid PromQL, real metric names.

PromQL is checked by promql-check (hack/tools/promql, built by `make tools`): Prometheus's own rule
file parser (model/rulefmt, what `promtool check rules` runs: strict fields, durations, labels,
every expression and every annotation template) and PromQL parser. Metric names are those the
parser finds in each expression, compared with what cloudsnap.metrics' registry exposes.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.tools.install import tools_bin

from cloudsnap.metrics import REGISTRY
from tests.deploy.support import CHART, find, render_chart, template

PROMQL_CHECK = tools_bin() / "promql-check"
DASHBOARD = CHART / "dashboards" / "cloudsnap.json"
ALERT_TESTS = Path(__file__).with_name("alerts.test.yaml")

ALERTS = {
    "CloudsnapOperatorDown",
    "CloudsnapNoLeader",
    "CloudsnapMultipleLeaders",
    "CloudsnapLeadershipFlapping",
    "CloudsnapSnapshotsNotReady",
    "CloudsnapSnapshotsFailed",
    "CloudsnapEVSErrors",
    "CloudsnapEVSThrottled",
    "CloudsnapReconcileStalled",
    "CloudsnapReconcileFailing",
    "CloudsnapDuplicateSnapshotsDeleted",
    "CloudsnapScheduleNotSucceeding",
    "CloudsnapRestoresFailed",
}
# Series Prometheus itself adds to every scrape.
SCRAPE_SERIES = {"up"}
# What each exposition type adds to a family's name (prometheus_client drops `_total` from a
# counter family's name and puts it back on the sample).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}
# Grafana's variables, replaced by values of the right type before the PromQL parser sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "6h"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "helm-home"


def exposed_metric_names() -> set[str]:
    """Every series name the operator's /metrics can hold, from its registry's families."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def promql_check(*args: str, stdin: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run promql-check; its exit code and its report, one entry per rule or expression."""
    assert PROMQL_CHECK.is_file(), f"{PROMQL_CHECK} is missing: run `make tools`"
    result = subprocess.run(
        [str(PROMQL_CHECK), *args], input=stdin, capture_output=True, text=True, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def rule(home: Path, *sets: str) -> dict[str, Any]:
    (obj,) = find(template(home, "prometheusRule.enabled=true", *sets), "PrometheusRule")
    return obj


def alerts(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in obj["spec"]["groups"] for r in group["rules"]}


def check_rule_file(tmp_path: Path, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The PrometheusRule's groups as a Prometheus rule file, through the rule-file checker."""
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": obj["spec"]["groups"]}, sort_keys=False))
    code, report = promql_check("rules", str(path))
    assert code == 0, [entry for entry in report if entry.get("error")]
    return report


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL query of the dashboard: panel targets and the variables' label_values."""
    queries = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, variable["query"]
            queries.append(match["selector"])
    for name, value in GRAFANA_VARIABLES.items():
        queries = [query.replace(name, value) for query in queries]
    return queries


def test_registry_names_are_derived_with_their_exposition_suffixes() -> None:
    names = exposed_metric_names()
    assert {
        "cloudsnap_reconciles_total",
        "cloudsnap_reconcile_duration_seconds_bucket",
        "cloudsnap_snapshots",
        "cloudsnap_snapshot_time_to_ready_seconds_count",
        "process_cpu_seconds_total",
    } <= names
    assert "cloudsnap_reconciles" not in names
    assert "cloudsnap_snapshots_total" not in names


def test_rule_and_dashboard_are_off_by_default(home: Path) -> None:
    objects = template(home)
    assert find(objects, "PrometheusRule") == []
    assert find(objects, "ConfigMap") == []


def test_no_rule_when_every_alert_is_off(home: Path) -> None:
    names = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["alerts"]
    off = [f"prometheusRule.alerts.{name}.enabled=false" for name in names]
    assert find(template(home, "prometheusRule.enabled=true", *off), "PrometheusRule") == []


def test_rule_has_every_alert_with_severity_summary_description_and_runbook(home: Path) -> None:
    obj = rule(home)
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["metadata"]["namespace"] == "cloudsnap-system"
    assert [group["name"] for group in obj["spec"]["groups"]] == ["cloudsnap-operator"]
    by_name = alerts(obj)
    assert by_name.keys() == ALERTS
    for name, alert in by_name.items():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), name
        assert len(annotations["description"]) > 80, name
        assert "docs/operations.md" in annotations["runbook"], name
        section = "High availability" if "Leader" in name else "What to alert on"
        assert f'section "{section}"' in annotations["runbook"], name
        assert "runbook_url" not in annotations, name
        # Every alert but those on events (a counter's increase) waits for its condition.
        events = {"CloudsnapDuplicateSnapshotsDeleted", "CloudsnapLeadershipFlapping"}
        assert ("for" in alert) is (name not in events), name
    assert by_name["CloudsnapOperatorDown"]["labels"]["severity"] == "critical"
    assert 'job="rel-cloudsnap-operator-metrics"' in by_name["CloudsnapOperatorDown"]["expr"]


def test_rule_passes_prometheus_rule_checks_and_uses_only_exposed_metrics(
    home: Path, tmp_path: Path
) -> None:
    report = check_rule_file(tmp_path, rule(home))
    assert {entry["alert"] for entry in report} == ALERTS
    used = {name for entry in report for name in entry["metrics"]}
    assert used - exposed_metric_names() - SCRAPE_SERIES == set()
    assert {
        "cloudsnap_snapshots",
        "cloudsnap_evs_requests_total",
        "cloudsnap_reconciles_total",
        "cloudsnap_drift_sweeps_total",
        "cloudsnap_duplicate_snapshots_deleted_total",
        "cloudsnap_leader",
        "cloudsnap_leader_transitions_total",
        "up",
    } <= used


def test_every_expression_selects_only_this_release(home: Path) -> None:
    # The service the ServiceMonitor scrapes names the job; without it two releases would mix.
    (service,) = find(template(home), "Service")
    job = f'job="{service["metadata"]["name"]}"'
    for name, alert in alerts(rule(home)).items():
        selectors = re.findall(r"[a-z_]+\{[^}]*\}", alert["expr"])
        assert selectors, name
        for selector in selectors:
            assert job in selector, (name, selector)
            assert 'namespace="cloudsnap-system"' in selector, (name, selector)


def test_values_tune_disable_and_label_the_alerts(home: Path, tmp_path: Path) -> None:
    obj = rule(
        home,
        "prometheusRule.labels.release=kube-prometheus-stack",
        "prometheusRule.alertLabels.team=storage",
        'prometheusRule.selector=job="cloudsnap"',
        "prometheusRule.runbookBaseURL=https://git.example.com/cloudsnap/-/blob/main/",
        "prometheusRule.alerts.reconcileFailing.enabled=false",
        "prometheusRule.alerts.evsErrors.percent=25",
        "prometheusRule.alerts.evsErrors.window=30m",
        "prometheusRule.alerts.evsErrors.for=1h",
        "prometheusRule.alerts.snapshotsNotReady.phases={creating}",
        "prometheusRule.alerts.duplicatesDeleted.severity=info",
    )
    assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    by_name = alerts(obj)
    assert by_name.keys() == ALERTS - {"CloudsnapReconcileFailing"}
    evs = by_name["CloudsnapEVSErrors"]
    assert evs["for"] == "1h"
    assert "[30m]" in evs["expr"]
    assert evs["expr"].rstrip().endswith("> 0.25")
    assert 'phase=~"creating"' in by_name["CloudsnapSnapshotsNotReady"]["expr"]
    assert by_name["CloudsnapDuplicateSnapshotsDeleted"]["labels"] == {
        "severity": "info",
        "team": "storage",
    }
    docs = "https://git.example.com/cloudsnap/-/blob/main/docs/operations.md"
    for name, alert in by_name.items():
        assert "namespace=" not in alert["expr"]
        anchor = "high-availability" if "Leader" in name else "what-to-alert-on"
        assert alert["annotations"]["runbook_url"] == f"{docs}#{anchor}", name
    check_rule_file(tmp_path, obj)


def alert_tests(
    tmp_path: Path, obj: dict[str, Any], tests: str
) -> tuple[int, list[dict[str, Any]]]:
    """promql-check's rule unit tests (promtool's format) run against the rendered rules."""
    path = tmp_path / "alerts.test.yaml"
    path.write_text(tests)
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": obj["spec"]["groups"]}, sort_keys=False)
    )
    return promql_check("test", str(path))


def test_each_alert_fires_on_its_condition_and_not_without_it(home: Path, tmp_path: Path) -> None:
    """tests/deploy/alerts.test.yaml evaluated with Prometheus's rule manager: every alert is
    expected firing at least once and quiet at least once, the stalled alert also while only
    drift sweeps (or only steps) run."""
    code, report = alert_tests(tmp_path, rule(home), ALERT_TESTS.read_text())
    assert code == 0, [case for case in report if case.get("error")]
    firing = {case["alertname"] for case in report if case["expected"]}
    quiet = {case["alertname"] for case in report if not case["expected"]}
    assert firing == ALERTS
    assert quiet == ALERTS
    stalled_quiet = {
        case["test"]
        for case in report
        if case["alertname"] == "CloudsnapReconcileStalled" and not case["expected"]
    }
    assert {
        "not stalled while only drift sweeps run",
        "not stalled while only steps run",
    } <= stalled_quiet


def test_the_alert_tests_fail_when_an_alert_does_not_fire(home: Path, tmp_path: Path) -> None:
    """A positive control: an expectation the rules do not meet makes promql-check fail."""
    wrong = ALERT_TESTS.read_text().replace(
        "{eval_time: 5m, alertname: CloudsnapOperatorDown, exp_alerts: []}",
        "{eval_time: 5m, alertname: CloudsnapOperatorDown, exp_alerts: [{}]}",
    )
    code, report = alert_tests(tmp_path, rule(home), wrong)
    assert code == 1
    (failed,) = [case for case in report if case.get("error")]
    assert (failed["alertname"], failed["eval_time"], failed["got"]) == (
        "CloudsnapOperatorDown",
        "5m",
        [],
    )


@pytest.mark.parametrize(
    ("bad_rule", "message"),
    [
        ({"expr": "rate(cloudsnap_reconciles_total)"}, "expected type range vector"),
        ({"expr": "sum(up) by"}, "parse error"),
        ({"expr": "up == 0", "annotations": {"summary": "{{ $value"}}, "annotation"),
        ({"expr": "up == 0", "for": "5 minutes"}, "5 minutes"),
        ({"expr": "up == 0", "labels": {"severity": "warning"}, "severity": "x"}, "severity"),
    ],
)
def test_the_checker_rejects_what_prometheus_would(
    tmp_path: Path, bad_rule: dict[str, Any], message: str
) -> None:
    """promql-check's pass is only worth something if it fails on broken rules."""
    path = tmp_path / "bad.yaml"
    groups = [
        {"name": "g", "rules": [{"alert": "Good", "expr": "up == 0"}, {"alert": "Bad", **bad_rule}]}
    ]
    path.write_text(yaml.safe_dump({"groups": groups}))
    code, report = promql_check("rules", str(path))
    assert code == 1
    assert any(message in entry.get("error", "") for entry in report), report


def test_the_checker_reports_each_expression_and_its_metrics() -> None:
    code, report = promql_check("exprs", stdin=json.dumps(["sum(up) by", "up / on() x_total"]))
    assert code == 1
    assert "parse error" in report[0]["error"]
    assert "error" not in report[1]
    assert report[1]["metrics"] == ["up", "x_total"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prometheusRule.alerts.evsErrors.percent=101", "percent"),
        ("prometheusRule.alerts.evsErrors.percent=0", "percent"),
        ("prometheusRule.alerts.operatorDown.for=5 minutes", "for"),
        ("prometheusRule.alerts.operatorDown.severity=page", "severity"),
        ("prometheusRule.alerts.snapshotsFailed.phases={Error|x}", "phases"),
        ("prometheusRule.alerts.unknown.enabled=true", "unknown"),
        ("prometheusRule.alerts.duplicatesDeleted.for=5m", "for"),
        ("prometheusRule.alerts.leadershipFlapping.transitions=-1", "transitions"),
        ("prometheusRule.alertLabels.severity=high", "severity"),
        ('prometheusRule.selector=up{job="x"}', "selector"),
        ("prometheusRule.runbookBaseURL=docs", "runbookBaseURL"),
        ("prometheusRule.namespace=monitoring", "namespace"),
        ("grafanaDashboard.folder=Storage", "folder"),
    ],
)
def test_schema_rejects_wrong_observability_values(home: Path, override: str, message: str) -> None:
    result = render_chart(home, "--set", override)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_dashboard_panels_all_have_targets_on_the_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "cloudsnap-operator"
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in {"stat", "timeseries"}, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
            assert 'job=~"$job"' in target["expr"], panel["title"]


def test_dashboard_queries_parse_and_use_only_exposed_metrics() -> None:
    queries = dashboard_queries(dashboard())
    code, report = promql_check("exprs", stdin=json.dumps(queries))
    assert code == 0, [entry for entry in report if entry.get("error")]
    used = {name for entry in report for name in entry["metrics"]}
    assert used - exposed_metric_names() - SCRAPE_SERIES == set()


def test_dashboard_shows_each_operator_metric() -> None:
    """Every metric family cloudsnap.metrics registers is queried by a panel (process and
    platform collectors are not cloudsnap's), so a new metric needs a panel."""
    code, report = promql_check("exprs", stdin=json.dumps(dashboard_queries(dashboard())))
    assert code == 0
    selected = {name for entry in report for name in entry["metrics"]}
    missing = []
    for family in REGISTRY.collect():
        if not family.name.startswith("cloudsnap_"):
            continue
        series = {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        if not series & selected:
            missing.append(family.name)
    assert missing == []


def test_dashboard_configmap_carries_the_sidecar_label_and_the_json(home: Path) -> None:
    objects = template(
        home, "grafanaDashboard.enabled=true", "grafanaDashboard.annotations.grafana_folder=Storage"
    )
    (config_map,) = find(objects, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "cloudsnap-system"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    assert json.loads(config_map["data"]["cloudsnap.json"]) == dashboard()


@pytest.mark.parametrize(
    "document", ["docs/operations.md", "deploy/helm/cloudsnap-operator/README.md"]
)
def test_the_metrics_tables_list_exactly_the_operator_metrics(document: str) -> None:
    """Each metric the operator registers has a row, and each row names one it registers."""
    text = (CHART.parents[2] / document).read_text()
    documented = set(re.findall(r"^\| `(cloudsnap_[a-z_]+)` \|", text, re.M))
    registered = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("cloudsnap_")
    }
    assert documented == registered
