"""The documentation says what the code does: defaults, printer columns, EVS operations, metrics
and alerts named in docs/, the READMEs, the examples and the dashboard are read and compared with
their sources (the generated CRDs, the EVS client, cloudsnap.metrics, the chart's PrometheusRule).

Defaults are stated in tables whose header is `| <Kind> spec field | ... | default | ... |`: a
default cell that is one backticked YAML value claims the CRD's default; any other cell ("—", or
one "by the operator") claims that the CRD has none.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import EVSError
from cloudsnap.metrics import REGISTRY
from tests.deploy.support import CHART, find, template
from tests.deploy.test_observability import exposed_metric_names
from tests.evs.test_errors import JOB_ID, OPERATIONS, SNAPSHOT_ID, VOLUME_ID

ROOT = Path(__file__).resolve().parents[2]
DOCS = (*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", CHART / "README.md")
EXAMPLES = tuple(sorted((ROOT / "examples").glob("*.yaml")))
DASHBOARD = CHART / "dashboards" / "cloudsnap.json"
OPERATOR = ROOT / "operator" / "cloudsnap"

TABLE_HEADER = re.compile(r"^\| (?P<kind>[A-Za-z]+) spec field \|(?P<rest>.*)\|$")
LITERAL = re.compile(r"^`(?P<value>[^`]+)`$")


def relative(path: Path) -> str:
    """A path as failure messages name it, from the repository's root."""
    return str(path.relative_to(ROOT))


@cache
def crds() -> dict[str, dict[str, Any]]:
    """Each kind's CRD from crds/, generated from the pydantic models."""
    by_kind = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        by_kind[crd["spec"]["names"]["kind"]] = crd
    return by_kind


def schema_fields(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, schema) of every property below `schema`, array items under their array."""
    for name, child in (schema.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        yield field, child
        yield from schema_fields(child.get("items", child), field)


@cache
def spec_fields(kind: str) -> dict[str, dict[str, Any]]:
    """Every spec field of a kind (paths relative to spec) and its schema."""
    (version,) = crds()[kind]["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(schema_fields(spec))


def crd_defaults(kind: str) -> dict[str, Any]:
    """The spec fields the API server defaults, and their defaults.

    Status defaults are left out: users never write status, so no document states them.
    """
    return {path: s["default"] for path, s in spec_fields(kind).items() if "default" in s}


def table_rows(text: str, header: re.Pattern[str]) -> Iterator[tuple[re.Match[str], list[str]]]:
    """Each body row of each markdown table whose header matches, as its cells."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = header.match(line)
        if not match:
            continue
        for row in lines[number + 2 :]:
            if not row.startswith("|"):
                break
            yield match, [cell.strip() for cell in row.strip().strip("|").split(" | ")]


def documented_defaults() -> list[tuple[str, str, str, str]]:
    """(document, kind, field, default cell) of every row of every spec-field table."""
    rows = []
    for document in DOCS:
        for match, cells in table_rows(document.read_text(), TABLE_HEADER):
            header = [cell.strip() for cell in match["rest"].split("|")]
            column = header.index("default") + 1
            field = cells[0].strip("`").removeprefix("spec.")
            rows.append((relative(document), match["kind"], field, cells[column]))
    return rows


def test_the_documents_have_a_defaults_table_per_kind() -> None:
    assert {kind for _, kind, _, _ in documented_defaults()} == crds().keys()


def test_each_documented_default_is_the_crds() -> None:
    """A backticked default equals the CRD's; any other cell is for a field the CRD leaves unset."""
    wrong = []
    for document, kind, field, cell in documented_defaults():
        fields = spec_fields(kind)
        if field not in fields:
            wrong.append(f"{document}: {kind} has no spec field {field}")
            continue
        literal = LITERAL.match(cell)
        claimed = yaml.safe_load(literal["value"]) if literal else None
        actual = fields[field].get("default")
        if literal and claimed != actual:
            wrong.append(f"{document}: {kind} {field} defaults to {actual!r}, not {claimed!r}")
        if not literal and actual is not None:
            wrong.append(f"{document}: {kind} {field} defaults to {actual!r}; the table: {cell}")
    assert wrong == []


def test_each_crd_default_is_documented() -> None:
    documented = {
        (kind, field) for _, kind, field, cell in documented_defaults() if LITERAL.match(cell)
    }
    missing = [
        f"{kind} spec.{field} (default {default!r})"
        for kind in crds()
        for field, default in crd_defaults(kind).items()
        if (kind, field) not in documented
    ]
    assert missing == []


def yaml_texts() -> Iterator[tuple[str, str]]:
    """(where, text) of each example and each ```yaml block of the documents."""
    for example in EXAMPLES:
        yield relative(example), example.read_text()
    for document in DOCS:
        for number, block in enumerate(
            re.findall(r"```yaml\n(.*?)```", document.read_text(), re.S)
        ):
            yield f"{relative(document)} yaml block {number + 1}", block


def commented_defaults(text: str) -> Iterator[tuple[str, str, str]]:
    """(kind, spec field, stated default) of each `key: ...  # ... default X` line of a manifest.

    The field's path comes from the indentation of the block-style keys above it.
    """
    for document in re.split(r"^---$", text, flags=re.M):
        kind = re.search(r"^kind: (\w+)", document, re.M)
        stack: list[tuple[int, str]] = []
        for line in document.splitlines():
            key = re.match(r"^(?P<indent> *)(?P<key>[A-Za-z]+):", line)
            if not key:
                continue
            indent = len(key["indent"])
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, key["key"])]
            stated = re.search(r"#.*\bdefault (?P<value>[^\s,;)]+)", line)
            path = [k for _, k in stack]
            if kind and stated and path[0] == "spec" and len(path) > 1:
                yield kind[1], ".".join(path[1:]), stated["value"]


def test_defaults_in_manifest_comments_are_the_crds() -> None:
    """A comment stating the default of a field the CRD defaults states the CRD's default."""
    checked, wrong = [], []
    for where, text in yaml_texts():
        for kind, field, stated in commented_defaults(text):
            actual = crd_defaults(kind).get(field) if kind in crds() else None
            if actual is None:
                continue  # a default the operator decides, as the tables say
            checked.append(field)
            if yaml.safe_load(stated) != actual:
                wrong.append(f"{where}: {kind} {field} defaults to {actual!r}, not {stated}")
    assert wrong == []
    assert {"timeZone", "rateLimit.requestsPerSecond", "rateLimit.burst"} <= set(checked)


# Printer columns.

COLUMNS_HEADER = re.compile(r"^\| kind \| columns \| `-o wide` adds \|$")
COLUMN_LIST = re.compile(r"[A-Z][A-Z-]+(?:(?:, | and |, and )[A-Z][A-Z-]+)+")


def crd_columns(kind: str) -> tuple[list[str], list[str]]:
    """The kind's printer columns as kubectl heads them: (always shown, added by `-o wide`)."""
    (version,) = crds()[kind]["spec"]["versions"]
    columns = version.get("additionalPrinterColumns", [])
    shown = [c["name"].upper() for c in columns if not c.get("priority")]
    wide = [c["name"].upper() for c in columns if c.get("priority")]
    return shown, wide


def names(listing: str) -> list[str]:
    """The column heads of "A, B and C"."""
    return re.split(r", and |, | and ", listing)


def test_the_columns_table_lists_each_kinds_printer_columns_in_order() -> None:
    documented = {
        cells[0]: (names(cells[1]), names(cells[2]))
        for _, cells in table_rows((ROOT / "docs" / "lifecycle.md").read_text(), COLUMNS_HEADER)
    }
    assert documented == {kind: crd_columns(kind) for kind in crds()}


def resource_names() -> dict[str, str]:
    """Every name `kubectl get` takes for a kind (plural, singular, short names) to the kind."""
    by_name = {}
    for kind, crd in crds().items():
        crd_names = crd["spec"]["names"]
        for name in (crd_names["plural"], crd_names["singular"], *crd_names.get("shortNames", [])):
            by_name[name] = kind
    return by_name


def passages() -> Iterator[tuple[str, str]]:
    """(document, passage): each prose paragraph joined into one line, each table row and each
    code line."""
    for document in DOCS:
        text = document.read_text()
        for number, part in enumerate(re.split(r"(```.*?```)", text, flags=re.S)):
            if number % 2:
                yield from ((relative(document), line) for line in part.splitlines())
            else:
                for paragraph in re.split(r"\n\s*\n", part):
                    if paragraph.lstrip().startswith("|"):
                        yield from ((relative(document), row) for row in paragraph.splitlines())
                    else:
                        yield relative(document), " ".join(paragraph.split())


def test_each_listing_of_columns_in_the_documents_is_complete_and_in_order() -> None:
    """A passage naming `kubectl get <kind>` and a list of column heads lists them all, in order
    (with those of `-o wide` when it says so)."""
    kinds = resource_names()
    get = re.compile(rf"kubectl get ({'|'.join(sorted(kinds, key=len, reverse=True))})\b")
    checked, wrong = [], []
    for document, passage in passages():
        command = get.search(passage)
        listings = COLUMN_LIST.findall(passage[command.end() :]) if command else []
        if not command or not listings:
            continue
        shown, wide = crd_columns(kinds[command[1]])
        listed = [name for listing in listings for name in names(listing)]
        if re.search(r"`-o wide` adds ([A-Z][A-Z-]+)", passage):
            listed.append(re.findall(r"`-o wide` adds ([A-Z][A-Z-]+)", passage)[0])
        expected = shown + wide if "-o wide" in passage else shown
        checked.append(passage)
        if listed != expected:
            wrong.append(f"{document}: {passage!r} lists {listed}, the CRD has {expected}")
    assert wrong == []
    assert len(checked) >= 2


# EVS operations.

EVS_TABLE = re.compile(r"^\| operation \| request \| success \| used by the operator for \|$")
CLIENT = OPERATOR / "evs" / "client.py"
PROJECT = "0123456789abcdef0123456789abcdef"


def sent_operations() -> dict[str, tuple[str, str]]:
    """Operation name -> (HTTP method, path template) of each request the client sends, each
    operation of tests/evs' table called once against a transport that records it."""
    sent: dict[str, tuple[str, str]] = {}
    seen: list[tuple[str, str]] = []
    names: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path.replace(PROJECT, "{project_id}")
        for value, placeholder in (
            (SNAPSHOT_ID, "{id}"),
            (VOLUME_ID, "{id}"),
            (JOB_ID, "{job_id}"),
        ):
            path = path.replace(value, placeholder)
        seen.append((request.method, path))
        return httpx.Response(500, json={"error": {"code": "EVS.5500", "message": "test"}})

    async def run() -> None:
        async with EVSClient(
            "https://evs.example.com",
            httpx.Auth(),
            PROJECT,
            transport=httpx.MockTransport(answer),
            observer=lambda operation, _outcome, _elapsed: names.append(operation),
        ) as client:
            for call in OPERATIONS.values():
                seen.clear()
                names.clear()
                with pytest.raises(EVSError):
                    await call(client)
                ((verb, path),) = seen
                (name,) = names
                sent[name] = (verb, path)

    asyncio.run(run())
    return sent


def client_methods() -> dict[str, set[str]]:
    """Operation name -> the client's methods that send it (its source text)."""
    methods: dict[str, set[str]] = {}
    for chunk in re.split(r"\n    (?:async )?def ", CLIENT.read_text())[1:]:
        method = chunk.split("(", 1)[0]
        for name in re.findall(r'self\._call\(\s*"(\w+)"', chunk):
            methods.setdefault(name, set()).add(method)
    # iter_snapshots pages through list_snapshots.
    methods["list"].add("iter_snapshots")
    return methods


def documented_operations() -> dict[str, tuple[str, str, str]]:
    """Operation name -> (HTTP method, path template, what the operator uses it for)."""
    operations = {}
    for _, cells in table_rows((ROOT / "docs" / "evs.md").read_text(), EVS_TABLE):
        request = re.match(r"`(?P<verb>[A-Z]+) (?P<path>[^`?]+)", cells[1])
        assert request, cells
        operations[cells[0]] = (request["verb"], request["path"], cells[3])
    return operations


def operator_calls() -> set[str]:
    """Client methods the operator calls outside the client's own package (its source text)."""
    called: set[str] = set()
    for path in OPERATOR.rglob("*.py"):
        if path.relative_to(OPERATOR).parts[0] != "evs":
            called.update(re.findall(r"\bclient\.(\w+)\(", path.read_text()))
    return called


def test_the_evs_table_lists_exactly_the_requests_the_client_sends() -> None:
    sent = sent_operations()
    assert sent.keys() == client_methods().keys()
    documented = {name: (verb, path) for name, (verb, path, _) in documented_operations().items()}
    assert documented == sent


def test_the_evs_table_says_which_operations_the_operator_uses() -> None:
    """A row used for "nothing" is an operation the operator never calls, and the others it does."""
    called = operator_calls()
    methods = client_methods()
    for name, (_, _, use) in documented_operations().items():
        assert use.startswith("nothing") is not bool(methods[name] & called), (name, use)


# Metrics and alerts.

METRIC = re.compile(r"\bcloudsnap_[a-z_]+[a-z]")


def metric_names() -> set[str]:
    """Every series name the operator exposes, and each histogram's family name (documents name
    histograms by it)."""
    families = {family.name for family in REGISTRY.collect() if family.type == "histogram"}
    return exposed_metric_names() | families


def mentions(pattern: re.Pattern[str], paths: tuple[Path, ...]) -> dict[str, set[str]]:
    """Each name the pattern finds, to the files naming it."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for name in pattern.findall(path.read_text()):
            found.setdefault(name, set()).add(relative(path))
    return found


def test_every_metric_the_documents_and_dashboard_name_exists() -> None:
    named = mentions(METRIC, (*DOCS, *EXAMPLES, DASHBOARD))
    unknown = {name: where for name, where in named.items() if name not in metric_names()}
    assert unknown == {}
    assert len(named) >= 10


def test_every_metric_is_named_in_the_documents() -> None:
    """tests/deploy/test_observability.py holds each metrics table to the registry; here: no
    metric goes unmentioned in the documents as a whole."""
    named = mentions(METRIC, DOCS)
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("cloudsnap_")
    }
    assert families - named.keys() == set()


ALERT = re.compile(r"\bCloudsnap[A-Z][A-Za-z]+\b")
ALERT_TABLE = re.compile(r"^\| alert \| default severity \| fires when \|$")


@pytest.fixture(scope="module")
def chart_alerts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each alert of the chart's PrometheusRule (every alert is on by default), its severity."""
    home = tmp_path_factory.mktemp("helm-home")
    (rule,) = find(template(home, "prometheusRule.enabled=true"), "PrometheusRule")
    return {r["alert"]: r["labels"]["severity"] for g in rule["spec"]["groups"] for r in g["rules"]}


def test_every_alert_the_documents_name_exists(chart_alerts: dict[str, str]) -> None:
    named = mentions(ALERT, (*DOCS, DASHBOARD))
    assert {name: where for name, where in named.items() if name not in chart_alerts} == {}
    assert len(named) >= 3


def test_the_alert_table_lists_each_alert_with_its_severity(chart_alerts: dict[str, str]) -> None:
    """The chart README's table of alerts; the rules are evaluated in tests/deploy."""
    rows = table_rows((CHART / "README.md").read_text(), ALERT_TABLE)
    documented = {cells[0].strip("`"): cells[1] for _, cells in rows}
    assert documented == chart_alerts
