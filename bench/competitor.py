"""The straightforward operator cloudsnap is measured against (`make bench ... --competitor`).

What a kopf user would write first, kept honest: idiomatic kopf with its defaults (its own
finalizer, handler progress in annotations, an Event per handler outcome) and the official Huawei
Cloud SDK (`huaweicloudsdkevs`, synchronous, so kopf runs the handlers in its thread pool).

- on create: create the snapshot and record its ID and status;
- every 5 s (a kopf timer per resource): show the snapshot until it is available, then Ready;
- on delete: delete it, and retry every 5 s until a show answers 404.

It watches the same CloudSnapshot CRD, in a namespace of its own, and writes only status fields
the CRD knows. Run by the benchmark as `kopf run --standalone --namespace NS bench/competitor.py`
with the account in the environment: COMPETITOR_ENDPOINT, COMPETITOR_PROJECT_ID,
COMPETITOR_ACCESS_KEY, COMPETITOR_SECRET_KEY.
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime
from typing import Any

import kopf
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkevs.v2 import (
    CreateSnapshotOption,
    CreateSnapshotRequest,
    CreateSnapshotRequestBody,
    DeleteSnapshotRequest,
    EvsClient,
    ShowSnapshotRequest,
)

GROUP, VERSION, PLURAL = "evs.cloudsnap.io", "v1alpha1", "cloudsnapshots"
POLL_SECONDS = 5.0


@functools.cache
def evs() -> Any:
    """One SDK client for the process, from the environment."""
    credentials = BasicCredentials(
        os.environ["COMPETITOR_ACCESS_KEY"],
        os.environ["COMPETITOR_SECRET_KEY"],
        os.environ["COMPETITOR_PROJECT_ID"],
    )
    return (
        EvsClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([os.environ["COMPETITOR_ENDPOINT"]])
        .build()
    )


@kopf.on.create(GROUP, VERSION, PLURAL)
def create(spec: kopf.Spec, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    option = CreateSnapshotOption(volume_id=spec["volumeID"], name=f"{namespace}-{name}")
    request = CreateSnapshotRequest(body=CreateSnapshotRequestBody(snapshot=option))
    snapshot = evs().create_snapshot(request).snapshot
    patch.status["snapshotID"] = snapshot.id
    patch.status["phase"] = snapshot.status


@kopf.timer(GROUP, VERSION, PLURAL, interval=POLL_SECONDS)
def follow(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    snapshot_id = status.get("snapshotID")
    if not snapshot_id or status.get("phase") == "available":
        return
    snapshot = evs().show_snapshot(ShowSnapshotRequest(snapshot_id=snapshot_id)).snapshot
    if snapshot.status == status.get("phase"):
        return
    patch.status["phase"] = snapshot.status
    if snapshot.status == "available":
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch.status["conditions"] = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": f"EVS snapshot {snapshot_id} is available",
                "lastTransitionTime": now,
            }
        ]


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(status: kopf.Status, **_: Any) -> None:
    snapshot_id = status.get("snapshotID")
    if not snapshot_id:
        return
    try:
        snapshot = evs().show_snapshot(ShowSnapshotRequest(snapshot_id=snapshot_id)).snapshot
    except ClientRequestException as exc:
        if exc.status_code == 404:
            return
        raise
    if snapshot.status in ("available", "error"):
        evs().delete_snapshot(DeleteSnapshotRequest(snapshot_id=snapshot_id))
    raise kopf.TemporaryError(
        f"EVS snapshot {snapshot_id} is {snapshot.status}", delay=POLL_SECONDS
    )
