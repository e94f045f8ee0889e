"""Generate the CustomResourceDefinitions in crds/ from the models (`make crds`).

The models are the single source: pydantic's JSON schema of each spec and status is rewritten into
the structural OpenAPI v3 subset Kubernetes accepts ($refs inlined, optional unions collapsed,
titles dropped), and wrapped in a CRD with the names, printer columns and subresources the
public API promises (docs/lifecycle.md). The output is deterministic so a test can compare it
with what is committed.
"""

import pathlib
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from cloudsnap.api.constants import (
    CATEGORY,
    CLASS_PLURAL,
    CLASS_SHORT_NAME,
    DEFAULT_CLASS_ANNOTATION,
    GROUP,
    RESTORE_PLURAL,
    RESTORE_SHORT_NAME,
    SCHEDULE_PLURAL,
    SCHEDULE_SHORT_NAME,
    SNAPSHOT_PLURAL,
    SNAPSHOT_SHORT_NAME,
    VERSION,
)
from cloudsnap.api.models import CloudSnapshot, CloudSnapshotClass
from cloudsnap.api.restore import CloudSnapshotRestore
from cloudsnap.api.schedule import CloudSnapshotSchedule

HEADER = "# Generated from cloudsnap.api by `make crds`; do not edit by hand.\n"

# pydantic formats that Kubernetes spells differently.
_FORMATS = {"base64": "byte"}

_TYPE_META = {
    "apiVersion": {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an"
        " object. Servers should convert recognized schemas to the latest internal value, and"
        " may reject unrecognized values.",
    },
    "kind": {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object"
        " represents. Servers may infer this from the endpoint the client submits requests to."
        " In CamelCase.",
    },
    # The API server describes metadata itself and refuses a CRD that says more than its type.
    "metadata": {"type": "object"},
}


class SchemaError(ValueError):
    """A model uses a construct that has no structural OpenAPI equivalent."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model`, as Kubernetes wants it in a CRD."""
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs)


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Inline a $ref and collapse `X | None` into X; the field's own keys win over the type's."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        node = {**_resolve(defs[ref.rsplit("/", 1)[-1]], defs), **node}
    branches = node.pop("anyOf", None)
    if branches is not None:
        kept = [branch for branch in branches if branch.get("type") != "null"]
        if len(kept) != 1:
            raise SchemaError(f"only optional unions (X | None) are structural: {branches}")
        node = {**_resolve(kept[0], defs), **node}
    return node


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite one schema node and its children."""
    out: dict[str, Any] = {}
    for key, value in _resolve(node, defs).items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: _convert(child, defs) for name, child in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, defs)
        elif key == "format":
            out[key] = _FORMATS.get(value, value)
        elif key == "description":
            out[key] = " ".join(value.split())
        elif key in ("oneOf", "allOf", "not", "const", "$defs", "propertyNames"):
            raise SchemaError(f"{key} has no structural equivalent: {node}")
        else:
            out[key] = value
    return out


def _resource_schema(model: type[BaseModel], subresource_fields: tuple[str, ...]) -> dict[str, Any]:
    """The whole object's schema: type meta, opaque metadata, then spec (and status)."""
    schema = structural_schema(model)
    properties = schema["properties"]
    return {
        "type": "object",
        "description": schema["description"],
        "required": ["spec"],
        "properties": {**_TYPE_META, **{name: properties[name] for name in subresource_fields}},
    }


def _column(
    name: str, json_path: str, type_: str, description: str, priority: int = 0
) -> dict[str, Any]:
    """One additionalPrinterColumns entry; priority 1 shows only with `-o wide`."""
    column: dict[str, Any] = {
        "name": name,
        "type": type_,
        "jsonPath": json_path,
        "description": description,
    }
    if priority:
        column["priority"] = priority
    return column


def _ready(description: str) -> dict[str, Any]:
    """The column of the Ready condition's status."""
    return _column("Ready", '.status.conditions[?(@.type=="Ready")].status', "string", description)


_AGE = _column("Age", ".metadata.creationTimestamp", "date", "Time since the resource was created.")


def _crd(
    model: type[BaseModel],
    *,
    plural: str,
    short_name: str,
    scope: str,
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    """An apiextensions.k8s.io/v1 CRD with one served and stored version of `model`.

    The kind is the model's name and the singular its lower case; a model with a status field
    gets the status subresource.
    """
    kind = model.__name__
    fields = ("spec", "status") if "status" in model.model_fields else ("spec",)
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _resource_schema(model, fields)},
        "additionalPrinterColumns": columns,
    }
    if "status" in fields:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": [CATEGORY],
            },
            "scope": scope,
            "versions": [version],
        },
    }


def snapshot_crd() -> dict[str, Any]:
    """The CloudSnapshot CRD (namespaced, status subresource)."""
    return _crd(
        CloudSnapshot,
        plural=SNAPSHOT_PLURAL,
        short_name=SNAPSHOT_SHORT_NAME,
        scope="Namespaced",
        columns=[
            _ready("Whether the EVS snapshot is available."),
            _column("Phase", ".status.phase", "string", "Status of the EVS snapshot."),
            _column("Snapshot-ID", ".status.snapshotID", "string", "ID of the EVS snapshot."),
            _column("Size", ".status.size", "integer", "Size of the snapshot in GB."),
            _column(
                "Source",
                ".spec['persistentVolumeClaimName','volumeID']",
                "string",
                "The PersistentVolumeClaim, or the ID of the disk, to snapshot.",
            ),
            _AGE,
            _column(
                "Volume",
                ".status.volumeID",
                "string",
                "ID of the disk the snapshot was taken of (resolved from the claim for a"
                " PersistentVolumeClaim source).",
                priority=1,
            ),
        ],
    )


def class_crd() -> dict[str, Any]:
    """The CloudSnapshotClass CRD (cluster-scoped, spec only)."""
    escaped_annotation = DEFAULT_CLASS_ANNOTATION.replace(".", "\\.")
    return _crd(
        CloudSnapshotClass,
        plural=CLASS_PLURAL,
        short_name=CLASS_SHORT_NAME,
        scope="Cluster",
        columns=[
            _column("Region", ".spec.region", "string", "Huawei Cloud region."),
            _column("Project-ID", ".spec.projectID", "string", "Huawei Cloud project ID."),
            _column(
                "Deletion-Policy",
                ".spec.deletionPolicy",
                "string",
                "Default deletion policy of its snapshots.",
            ),
            _column(
                "Default",
                f".metadata.annotations.{escaped_annotation}",
                "string",
                "Whether this is the default class.",
            ),
            _AGE,
            _column("Endpoint", ".spec.endpoint", "string", "EVS endpoint URL.", priority=1),
        ],
    )


def schedule_crd() -> dict[str, Any]:
    """The CloudSnapshotSchedule CRD (namespaced, status subresource)."""
    return _crd(
        CloudSnapshotSchedule,
        plural=SCHEDULE_PLURAL,
        short_name=SCHEDULE_SHORT_NAME,
        scope="Namespaced",
        columns=[
            _column("Schedule", ".spec.schedule", "string", "When runs are made (cron)."),
            _column("Suspend", ".spec.suspend", "boolean", "Whether new runs are paused."),
            _column("Last", ".status.lastScheduleTime", "date", "Time since the latest run."),
            _column("Next", ".status.nextScheduleTime", "string", "Time of the next run (UTC)."),
            _column("Sources", ".status.sourceCount", "integer", "Sources at the latest look."),
            _ready("Whether every source has a Ready child."),
            _AGE,
            _column("Time-Zone", ".spec.timeZone", "string", "Time zone of the schedule.", 1),
        ],
    )


def restore_crd() -> dict[str, Any]:
    """The CloudSnapshotRestore CRD (namespaced, status subresource)."""
    return _crd(
        CloudSnapshotRestore,
        plural=RESTORE_PLURAL,
        short_name=RESTORE_SHORT_NAME,
        scope="Namespaced",
        columns=[
            _ready("Whether the disk (and its claim) is ready."),
            _column("Phase", ".status.phase", "string", "Where the restore is."),
            _column(
                "Source",
                ".spec['snapshotName','snapshotID']",
                "string",
                "The CloudSnapshot, or the ID of the EVS snapshot, restored.",
            ),
            _column("Volume-ID", ".status.volumeID", "string", "ID of the disk made."),
            _column("Claim", ".status.claimName", "string", "The claim bound to the disk."),
            _AGE,
            _column("Snapshot-ID", ".status.snapshotID", "string", "ID of the EVS snapshot.", 1),
        ],
    )


def all_crds() -> list[dict[str, Any]]:
    """Every CRD the operator serves."""
    return [snapshot_crd(), class_crd(), schedule_crd(), restore_crd()]


def _filename(crd: Mapping[str, Any]) -> str:
    """controller-gen's naming: <group>_<plural>.yaml."""
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


def render_crds() -> dict[str, str]:
    """Each CRD file's name and YAML text, byte-for-byte what `make crds` writes."""
    rendered = {}
    for crd in all_crds():
        body = yaml.safe_dump(crd, sort_keys=True, allow_unicode=True, width=100)
        rendered[_filename(crd)] = HEADER + "---\n" + body
    return rendered


def write_crds(output_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write the CRD files into `output_dir` (created if missing) and return their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in sorted(render_crds().items()):
        path = output_dir / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
