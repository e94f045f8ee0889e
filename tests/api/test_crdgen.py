"""The generated CRDs: committed copies current, schemas structural and fully described."""

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cloudsnap.api.crdgen import (
    HEADER,
    SchemaError,
    class_crd,
    render_crds,
    restore_crd,
    schedule_crd,
    snapshot_crd,
    structural_schema,
    write_crds,
)
from cloudsnap.api.models import CloudSnapshotSpec

REPO = pathlib.Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
# What a structural schema may hold (apiextensions v1 JSONSchemaProps, minus what we never use).
ALLOWED_KEYS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "default",
    "enum",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "maxItems",
    "maxProperties",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


EVERY_CRD = pytest.mark.parametrize(
    "crd",
    [snapshot_crd(), class_crd(), schedule_crd()],
    ids=["snapshot", "class", "schedule"],
)


def test_committed_crds_are_current() -> None:
    """Fails when the models changed and `make crds` was not run (or crds/ was hand-edited)."""
    expected = render_crds()
    committed = {path.name: path.read_text(encoding="utf-8") for path in CRDS_DIR.glob("*.yaml")}
    assert committed.keys() == expected.keys(), "crds/ holds other files than the models make"
    for name, text in expected.items():
        assert committed[name] == text, f"crds/{name} is stale: run `make crds`"


def test_write_crds_writes_what_render_returns(tmp_path: pathlib.Path) -> None:
    paths = write_crds(tmp_path / "out")
    rendered = render_crds()
    assert sorted(path.name for path in paths) == sorted(rendered)
    for path in paths:
        assert path.read_text(encoding="utf-8") == rendered[path.name]
        assert path.read_text(encoding="utf-8").startswith(HEADER)


def test_rendering_is_deterministic() -> None:
    assert render_crds() == render_crds()


def test_files_parse_as_one_crd_each() -> None:
    for text in render_crds().values():
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        assert len(documents) == 1
        assert documents[0]["kind"] == "CustomResourceDefinition"


@EVERY_CRD
def test_every_property_is_described(crd: dict[str, Any]) -> None:
    """`kubectl explain` shows these. Map values ({}) are no property, and the API server refuses
    a description on metadata (it documents ObjectMeta itself)."""
    undescribed = [
        path
        for path, node in _nodes(_schema(crd))
        if not node.get("description") and not path.endswith("{}")
    ]
    assert undescribed == [".metadata"]


@EVERY_CRD
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    for path, node in _nodes(_schema(crd)):
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        assert set(node) <= ALLOWED_KEYS, f"{path}: {set(node) - ALLOWED_KEYS}"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
        for required in node.get("required", []):
            assert required in node["properties"], f"{path}.{required}"


def test_uuid_fields_have_patterns() -> None:
    spec = _schema(snapshot_crd())["properties"]["spec"]["properties"]
    assert "[0-9a-f]{8}-" in spec["volumeID"]["pattern"]
    assert "[0-9a-f]{8}-" in spec["snapshotID"]["pattern"]
    assert spec["metadata"]["maxProperties"] == 50
    assert spec["deletionPolicy"]["enum"] == ["Delete", "Retain"]


@pytest.mark.parametrize(
    ("crd", "kind", "short_name", "scope", "subresources"),
    [
        (snapshot_crd(), "CloudSnapshot", "csnap", "Namespaced", {"status": {}}),
        (class_crd(), "CloudSnapshotClass", "csnapclass", "Cluster", None),
        (schedule_crd(), "CloudSnapshotSchedule", "csnapsched", "Namespaced", {"status": {}}),
        (restore_crd(), "CloudSnapshotRestore", "csnaprestore", "Namespaced", {"status": {}}),
    ],
    ids=["snapshot", "class", "schedule", "restore"],
)
def test_crd_names_scope_and_subresources(
    crd: dict[str, Any],
    kind: str,
    short_name: str,
    scope: str,
    subresources: dict[str, Any] | None,
) -> None:
    names = crd["spec"]["names"]
    assert (names["kind"], names["listKind"], names["singular"]) == (
        kind,
        f"{kind}List",
        kind.lower(),
    )
    assert crd["metadata"]["name"] == f"{names['plural']}.evs.cloudsnap.io"
    assert crd["spec"]["scope"] == scope
    assert names["shortNames"] == [short_name]
    assert names["categories"] == ["cloudsnap"]
    assert crd["spec"]["versions"][0].get("subresources") == subresources


def test_snapshot_crd_columns() -> None:
    version = snapshot_crd()["spec"]["versions"][0]
    columns = {column["name"].upper(): column for column in version["additionalPrinterColumns"]}
    assert list(columns) == ["READY", "PHASE", "SNAPSHOT-ID", "SIZE", "SOURCE", "AGE", "VOLUME"]
    assert columns["READY"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["SOURCE"]["jsonPath"] == ".spec['persistentVolumeClaimName','volumeID']"
    assert columns["VOLUME"]["priority"] == 1
    assert all("priority" not in column for name, column in columns.items() if name != "VOLUME")


def test_class_crd_defaults() -> None:
    spec = _schema(class_crd())["properties"]["spec"]
    assert spec["required"] == ["region", "projectID", "credentialsSecretRef"]
    assert spec["properties"]["deletionPolicy"]["default"] == "Delete"
    assert spec["properties"]["insecureSkipTLSVerify"]["default"] is False
    assert "default" not in spec["properties"]["rateLimit"]  # an optional ceiling
    limit = spec["properties"]["rateLimit"]["properties"]
    assert (limit["requestsPerSecond"]["default"], limit["burst"]["default"]) == (20, 40)
    assert spec["properties"]["caBundle"]["format"] == "byte"


def test_immutable_fields_have_transition_rules() -> None:
    rules = _schema(snapshot_crd())["properties"]["spec"]["x-kubernetes-validations"]
    guarded = {rule["fieldPath"] for rule in rules if "oldSelf" in rule["rule"]}
    assert guarded == {
        ".volumeID",
        ".persistentVolumeClaimName",
        ".snapshotID",
        ".metadata",
        ".className",
    }


def test_unions_other_than_optional_are_refused() -> None:
    class Ambiguous(BaseModel):
        value: int | str

    with pytest.raises(SchemaError, match="optional unions"):
        structural_schema(Ambiguous)


def test_spec_schema_carries_no_pydantic_leftovers() -> None:
    for path, node in _nodes(structural_schema(CloudSnapshotSpec)):
        assert not {"$ref", "anyOf", "title"} & set(node), path
        assert node.get("default", "unset") is not None, path


def test_schedule_crd_columns_and_spec() -> None:
    crd = schedule_crd()
    version = crd["spec"]["versions"][0]
    columns = [column["name"].upper() for column in version["additionalPrinterColumns"]]
    assert columns[:5] == ["SCHEDULE", "SUSPEND", "LAST", "NEXT", "SOURCES"]
    spec = _schema(crd)["properties"]["spec"]
    assert spec["required"] == ["schedule", "sources", "retention"]
    assert spec["properties"]["retention"]["properties"]["maxCount"]["maximum"] == 7
    assert spec["properties"]["timeZone"]["default"] == "UTC"


@pytest.mark.parametrize("crd", [snapshot_crd(), schedule_crd()], ids=["snapshot", "schedule"])
def test_spec_strings_are_bounded(crd: dict[str, Any]) -> None:
    for path, node in _nodes(_schema(crd)["properties"]["spec"], "spec"):
        if node["type"] == "string" and "enum" not in node:
            assert "maxLength" in node or "pattern" in node, path


def test_restore_crd_columns_and_every_field_described() -> None:
    crd = restore_crd()
    version = crd["spec"]["versions"][0]
    columns = [column["name"].upper() for column in version["additionalPrinterColumns"]]
    assert columns == ["READY", "PHASE", "SOURCE", "VOLUME-ID", "CLAIM", "AGE", "SNAPSHOT-ID"]
    spec = _schema(crd)["properties"]["spec"]
    assert "required" not in spec, "exactly one target, by CEL"
    assert spec["properties"]["deletionPolicy"]["default"] == "Retain"
    assert spec["properties"]["rollback"]["properties"]["safetySnapshot"]["default"] is True
    for path, node in _nodes(spec, "spec"):
        assert path.endswith(("{}", "[]")) or node.get("description"), path
