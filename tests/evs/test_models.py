"""Models read EVS's answers as EVS writes them, and the client builds requests EVS expects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from cloudsnap.evs.auth import AKSKAuth
from cloudsnap.evs.client import UNSET, EVSClient
from cloudsnap.evs.models import CreateSnapshotRequest, ListSnapshotsQuery, Snapshot

LIST_ITEM = {
    "id": "ffa9bc5e-1172-4021-acaf-cdcd78a9584d",
    "status": "available",
    "name": None,
    "description": None,
    "created_at": "2013-02-25T03:56:53.081642",
    "updated_at": "2013-02-25T04:56:53.081642",
    "metadata": None,
    "volume_id": "5aa119a8-d25b-45a7-8d1b-88e127885635",
    "size": 1,
    "os-extended-snapshot-attributes:project_id": "0123456789abcdef0123456789abcdef",
    "os-extended-snapshot-attributes:progress": "100%",
    "service_type": "EVS",
    "dedicated_storage_id": None,
    "a_field_added_next_year": {"nested": [1, 2]},
}


def test_snapshot_reads_evs_wire_format() -> None:
    snapshot = Snapshot.model_validate(LIST_ITEM)
    assert snapshot.created_at == datetime(2013, 2, 25, 3, 56, 53, 81642, tzinfo=UTC)
    assert snapshot.updated_at is not None
    assert snapshot.updated_at.tzinfo is UTC
    assert (snapshot.name, snapshot.metadata) == ("", {})
    assert (snapshot.progress, snapshot.project_id) == (
        "100%",
        LIST_ITEM["os-extended-snapshot-attributes:project_id"],
    )


def test_create_body_leaves_unset_fields_to_evs() -> None:
    assert CreateSnapshotRequest(volume_id="v", name="n").body() == {
        "snapshot": {"volume_id": "v", "name": "n", "force": False, "metadata": {}}
    }


def test_list_query_params_repeat_id() -> None:
    query = ListSnapshotsQuery(limit=10, offset=0, status="available", ids=["a", "b"])
    assert query.params() == (
        ("offset", "0"),
        ("limit", "10"),
        ("status", "available"),
        ("id", "a"),
        ("id", "b"),
    )


async def test_requests_on_the_wire() -> None:
    """Paths, ids that try to escape their segment, update's sent fields and rollback's body."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/rollback"):
            return httpx.Response(202, json={"rollback": {"volume_id": "vol"}})
        return httpx.Response(200, json={"snapshot": LIST_ITEM})

    auth = AKSKAuth("AK", "SK", "proj")
    transport = httpx.MockTransport(answer)
    async with EVSClient("https://evs.example.test/", auth, "proj", transport=transport) as evs:
        await evs.show_snapshot("../../volumes?x=1")
        await evs.show_snapshot("..")
        await evs.update_snapshot("s", description=None, name=UNSET)
        assert await evs.rollback_snapshot("s", "vol", name="restored") == "vol"
        with pytest.raises(ValueError, match="empty"):
            await evs.delete_snapshot("")

    paths = [request.url.raw_path.decode() for request in seen]
    assert paths == [
        "/v2/proj/cloudsnapshots/..%2F..%2Fvolumes%3Fx%3D1",
        "/v2/proj/cloudsnapshots/%2E%2E",
        "/v2/proj/cloudsnapshots/s",
        "/v2/proj/cloudsnapshots/s/rollback",
    ]
    assert json.loads(seen[2].content) == {"snapshot": {"description": None}}
    assert json.loads(seen[3].content) == {"rollback": {"volume_id": "vol", "name": "restored"}}
    assert all(r.headers["Content-Type"] == "application/json" for r in seen[2:])


def test_client_repr_hides_credentials() -> None:
    auth = AKSKAuth("AK", "very-secret-key", "proj", "sts-token")
    client = EVSClient("https://evs.example.test", auth, "proj")
    assert "very-secret-key" not in repr(client)
    assert "sts-token" not in repr(client)
    assert "AK" in repr(client)


@pytest.mark.parametrize("endpoint", ["ftp://evs.example.test", "evs.example.test", "http://"])
def test_endpoint_must_be_http_url(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        EVSClient(endpoint, AKSKAuth("AK", "SK", "p"), "p")
