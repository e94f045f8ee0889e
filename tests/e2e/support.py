"""Helpers shared by the end-to-end tests: EVS times, and snapshots made by someone else."""

from __future__ import annotations

from datetime import UTC, datetime

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkevs.v2 import (
    CreateSnapshotOption,
    CreateSnapshotRequest,
    CreateSnapshotRequestBody,
    EvsClient,
)

from tests.fixtures.operator import Stack


def parse_time(text: str) -> datetime:
    """EVS times carry no zone (they are UTC); Kubernetes ones end in Z."""
    parsed = datetime.fromisoformat(text.removesuffix("Z"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def make_snapshot_outside(stack: Stack, volume_id: str) -> str:
    """A snapshot made by someone else (no owner tag) with the official SDK, as a user adopting
    it would have made it."""
    config = HttpConfig.get_default_config()
    config.timeout = 10
    client = (
        EvsClient.new_builder()
        .with_http_config(config)
        .with_credentials(
            BasicCredentials(stack.sim.access_key, stack.sim.secret_key, stack.sim.project_id)
        )
        .with_endpoints([stack.sim.endpoint])
        .build()
    )
    # Forced, as a snapshot of a disk a workload mounts (in-use) must be.
    option = CreateSnapshotOption(volume_id=volume_id, name="handmade", force=True)
    body = CreateSnapshotRequestBody(option)
    response = client.create_snapshot(CreateSnapshotRequest(body=body))
    return str(response.snapshot.id)
