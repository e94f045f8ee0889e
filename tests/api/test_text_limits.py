"""Every text the operator writes into a status field fits the CRD's maxLength, and every Event
message fits 1024 bytes: a status write is never refused for the length of what it carries.

The status fields are read from the generated CRDs, so a text field added later without a cut
fails here: each is given a text far over any limit, by building the status and by assigning to
it, and what would be written is checked against the CRD's maxLength (characters, as the API
server counts them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cloudsnap.api.models import CloudSnapshotStatus
from cloudsnap.api.schedule import CloudSnapshotScheduleStatus
from cloudsnap.api.text import CUT_MARK, fit_text

CRDS = Path(__file__).resolve().parents[2] / "crds"
HUGE = "é" * 40_000 + "x" * 40_000
"""Longer than any limit, whether counted in characters or in UTF-8 bytes."""
CONSTANTS = {"conditions[].type": "Ready", "conditions[].reason": "Available"}
"""Status texts the code only ever sets from its own short constants (Ready/Synced, CamelCase
reasons), which a cut would not make valid (the reason has a pattern)."""
STATUSES: list[tuple[str, type[BaseModel]]] = [
    ("evs.cloudsnap.io_cloudsnapshots.yaml", CloudSnapshotStatus),
    ("evs.cloudsnap.io_cloudsnapshotschedules.yaml", CloudSnapshotScheduleStatus),
]


def status_schema(crd: str) -> dict[str, Any]:
    document = yaml.safe_load((CRDS / crd).read_text())
    schema: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status: dict[str, Any] = schema["properties"]["status"]
    return status


def limited_texts(schema: dict[str, Any], path: str = "") -> dict[str, int]:
    """Each string field with a maxLength, by path (``conditions[].message``)."""
    found: dict[str, int] = {}
    if schema.get("type") == "string" and "maxLength" in schema:
        found[path] = schema["maxLength"]
    for key, sub in (schema.get("properties") or {}).items():
        found |= limited_texts(sub, f"{path}.{key}" if path else key)
    if "items" in schema:
        found |= limited_texts(schema["items"], f"{path}[]")
    return found


def sample(schema: dict[str, Any], path: str, text: str) -> Any:
    """A status with every field set (one item per list), each free text set to ``text``."""
    if path in CONSTANTS:
        return CONSTANTS[path]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        return "2026-06-01T10:00:00Z" if schema.get("format") == "date-time" else text
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [sample(schema["items"], f"{path}[]", text)]
    return {
        key: sample(sub, f"{path}.{key}" if path else key, text)
        for key, sub in (schema.get("properties") or {}).items()
    }


def value_at(document: Any, path: str) -> Any:
    for part in path.split("."):
        document = document[part.removesuffix("[]")]
        if part.endswith("[]"):
            document = document[0]
    return document


def assign(model: BaseModel, path: str, text: str) -> None:
    """Set the field at ``path`` (Kubernetes names) on the model, as the code assigns fields."""
    *parents, last = path.split(".")
    for part in parents:
        name = python_name(model, part.removesuffix("[]"))
        model = getattr(model, name)[0] if part.endswith("[]") else getattr(model, name)
    name = python_name(model, last.removesuffix("[]"))
    setattr(model, name, [text] if last.endswith("[]") else text)


def python_name(model: BaseModel, key: str) -> str:
    fields = type(model).model_fields
    return next(name for name, info in fields.items() if (info.alias or name) == key)


@pytest.mark.parametrize(("crd", "model"), STATUSES, ids=[c for c, _ in STATUSES])
def test_every_status_text_fits_its_crd_limit_however_long_its_source(
    crd: str, model: type[BaseModel]
) -> None:
    schema = status_schema(crd)
    limits = limited_texts(schema)
    free = [path for path in limits if path not in CONSTANTS]
    assert free, "no limited text field found"

    built = model.model_validate(sample(schema, "", HUGE))
    assigned = model.model_validate(sample(schema, "", "x"))
    for path in free:
        assign(assigned, path, HUGE)
    for how, status in (("built", built), ("assigned", assigned)):
        in_memory = status.model_dump(by_alias=True)
        written = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        for path in free:
            for where, document in (("in memory", in_memory), ("written", written)):
                text = value_at(document, path)
                assert len(text) <= limits[path], f"{how} {path} {where}: {len(text)} characters"
                assert text.endswith(CUT_MARK), f"{how} {path} {where} was not cut"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 1024, "short"),
        ("x" * 1024, 1024, "x" * 1024),
        ("x" * 1025, 1024, "x" * 1021 + CUT_MARK),
        ("é" * 600, 1024, "é" * 510 + CUT_MARK),  # 1,023 bytes: no half character
        ("abcdef", 2, ".."),
    ],
)
def test_fit_text_keeps_characters_and_bytes_within_the_limit(
    text: str, limit: int, expected: str
) -> None:
    fitted = fit_text(text, limit)
    assert fitted == expected
    assert len(fitted.encode()) <= limit
