"""Whatever bytes come back, a client call raises only the EVSError family, typed and classified.

The answers are fed through httpx.MockTransport: no real server can be made to send every one of
these malformed bodies on demand, which is the point of the fuzzing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudsnap.evs.auth import AKSKAuth, TokenAuth
from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import EVSAPIError, EVSError, EVSResponseError, is_retryable
from cloudsnap.evs.models import (
    CreateSnapshotRequest,
    CreateVolumeRequest,
    ListSnapshotsQuery,
    ListVolumesQuery,
)

SNAPSHOT_ID = "ffa9bc5e-1172-4021-acaf-cdcd78a9584d"
VOLUME_ID = "5aa119a8-d25b-45a7-8d1b-88e127885635"
JOB_ID = "ff80808169"
SNAPSHOT: dict[str, Any] = {
    "id": SNAPSHOT_ID,
    "status": "available",
    "name": "snap-001",
    "description": None,
    "created_at": "2013-02-25T03:56:53.081642",
    "updated_at": None,
    "metadata": {},
    "volume_id": VOLUME_ID,
    "size": 1,
}

Operation = Callable[[EVSClient], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "create": lambda c: c.create_snapshot(CreateSnapshotRequest(volume_id=VOLUME_ID)),
    "show": lambda c: c.show_snapshot(SNAPSHOT_ID),
    "list": lambda c: c.list_snapshots(ListSnapshotsQuery(limit=5)),
    "update": lambda c: c.update_snapshot(SNAPSHOT_ID, name="n"),
    "delete": lambda c: c.delete_snapshot(SNAPSHOT_ID),
    "rollback": lambda c: c.rollback_snapshot(SNAPSHOT_ID, VOLUME_ID),
    "create_volume": lambda c: c.create_volume(
        CreateVolumeRequest(
            availability_zone="az", volume_type="SAS", size=10, snapshot_id=SNAPSHOT_ID
        ),
        client_token=SNAPSHOT_ID,
    ),
    "show_job": lambda c: c.show_job(JOB_ID),
    "show_volume": lambda c: c.show_volume(VOLUME_ID),
    "list_volumes": lambda c: c.list_volumes(ListVolumesQuery(metadata={"k": "v"})),
    "delete_volume": lambda c: c.delete_volume(VOLUME_ID),
}


def answering(
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> EVSClient:
    """A client whose every request gets this one answer."""
    transport = httpx.MockTransport(lambda _: httpx.Response(status, content=body, headers=headers))
    return EVSClient(
        "https://evs.example.test",
        # A secret no generated message will contain: the client redacts its own secrets.
        auth or AKSKAuth("AK", "secret-key-of-the-error-tests", "proj"),
        "proj",
        transport=transport,
    )


async def outcome(client: EVSClient, operation: str) -> object:
    """The operation's result, or the exception it raised."""
    async with client:
        try:
            return await OPERATIONS[operation](client)
        except Exception as exc:
            return exc


def error_body(shape: str, code: Any, message: Any) -> bytes:
    if shape == "gateway":
        return json.dumps(
            {"error_code": code, "error_msg": message, "request_id": "rid-body"}
        ).encode()
    return json.dumps({shape: {"message": message, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "EVS.0001", False),
        (400, "EVS.0002", False),
        (401, "EVS.5401", False),
        (403, "EVS.5403", False),
        (400, "EVS.1002", False),
        (400, "EVS.1013", False),
        (400, "EVS.1052", False),
        (400, "EVS.2045", False),
        (400, "EVS.5400", False),
        (404, "EVS.5404", False),
        (413, "EVS.5413", False),
        (400, "EVS.1047", False),
        (500, "EVS.2019", True),
        (400, "EVS.2043", False),
        (400, "EVS.2068", True),
        (500, "EVS.2002", True),
        (500, "EVS.5500", True),
        (503, "EVS.5503", True),
        (401, "APIG.0301", False),
        (429, "APIG.0308", True),
        (400, "APIG.0308", True),
    ],
)
@pytest.mark.parametrize("shape", ["error", "itemNotFound", "badRequest", "gateway"])
async def test_documented_codes_in_every_shape(
    status: int, code: str, retryable: bool, shape: str
) -> None:
    client = answering(status, error_body(shape, code, f"message for {code}"))
    with pytest.raises(EVSAPIError) as caught:
        async with client:
            await client.show_snapshot(SNAPSHOT_ID)
    error = caught.value
    assert (error.status_code, error.code, error.retryable) == (status, code, retryable)
    assert error.message == f"message for {code}"
    assert error.request_id == ("rid-body" if shape == "gateway" else None)
    assert code in str(error)


@pytest.mark.parametrize(
    ("status", "body", "retryable", "in_message"),
    [
        (
            502,
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
            b"<hr><center>nginx</center></body></html>",
            True,
            "502 Bad Gateway nginx",
        ),
        (503, b"", True, "Service Unavailable"),
        (404, b'{"itemNotFound": {"message": "Snapshot ffa9 could n', False, "itemNotFound"),
        (400, b"\xff\xfe\x00garbage\x00", False, "Bad Request"),
        (418, b"[1, 2, 3]", False, "I'm a Teapot"),
        (599, b"null", True, "Unknown status"),
        (400, b"[" * 100_000, False, "Bad Request"),
    ],
    ids=["html", "empty", "truncated", "binary", "json-list", "unknown-status", "deep-nesting"],
)
async def test_non_json_error_answers(
    status: int, body: bytes, retryable: bool, in_message: str
) -> None:
    client = answering(status, body, headers={"X-Request-Id": "rid-header"})
    with pytest.raises(EVSAPIError) as caught:
        async with client:
            await client.delete_snapshot(SNAPSHOT_ID)
    error = caught.value
    assert (error.status_code, error.code, error.retryable) == (status, None, retryable)
    assert in_message in error.message
    assert len(error.message) <= 512
    assert error.request_id == "rid-header"


async def test_request_id_header_wins_over_body() -> None:
    client = answering(401, error_body("gateway", "APIG.0301", "bad"), {"X-Request-Id": "hdr"})
    with pytest.raises(EVSAPIError) as caught:
        async with client:
            await client.list_snapshots()
    assert caught.value.request_id == "hdr"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>OK</html>",
        b"",
        b'{"snapshot": {"id": "x"}}',
        b'{"snapshot": {"id": "x", "status": "available", "created_at": "yesterday"',
        b"{" * 100_000,
    ],
    ids=["html", "empty", "missing-fields", "truncated", "deep-nesting"],
)
async def test_unreadable_success_answer(body: bytes) -> None:
    client = answering(200, body, headers={"X-Request-Id": "rid"})
    with pytest.raises(EVSResponseError) as caught:
        async with client:
            await client.show_snapshot(SNAPSHOT_ID)
    assert (caught.value.status_code, caught.value.retryable) == (200, True)
    assert caught.value.request_id == "rid"
    assert caught.value.message.startswith("unreadable show answer")


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        (TokenAuth("iam-token-must-not-leak", "proj"), "iam-token-must-not-leak"),
        (AKSKAuth("AK", "sk-must-not-leak", "proj", "sts-must-not-leak"), "sts-must-not-leak"),
    ],
    ids=["token", "security-token"],
)
async def test_echoed_secrets_are_redacted(auth: httpx.Auth, secret: str) -> None:
    """A server that echoes our request headers into its error must not put them in our errors."""

    def echo(request: httpx.Request) -> httpx.Response:
        headers = dict(request.headers)
        return httpx.Response(400, json={"error": {"code": str(headers), "message": str(headers)}})

    client = EVSClient(
        "https://evs.example.test", auth, "proj", transport=httpx.MockTransport(echo)
    )
    with pytest.raises(EVSAPIError) as caught:
        async with client:
            await client.show_snapshot("x")
    for text in (str(caught.value), repr(caught.value), caught.value.message, caught.value.code):
        assert secret not in (text or "")
    assert "***" in caught.value.message


# --- fuzzing -------------------------------------------------------------------------------------

json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from(
    [
        *("error", "itemNotFound", "badRequest", "snapshot", "snapshots", "rollback", "count"),
        *("job_id", "status", "entities", "volume", "volumes", "volume_ids"),
    ]
)
shaped_documents = st.fixed_dictionaries(
    {},
    optional={
        "error_code": json_documents,
        "error_msg": json_documents,
        "request_id": json_documents,
        "error": st.dictionaries(st.sampled_from(["code", "message"]), json_documents),
        "itemNotFound": st.dictionaries(st.sampled_from(["code", "message"]), json_documents),
        "snapshot": st.dictionaries(st.sampled_from(list(SNAPSHOT)), json_documents),
        "snapshots": st.lists(json_documents, max_size=3),
        "count": json_documents,
        "rollback": json_documents,
    },
) | st.dictionaries(known_keys, json_documents, max_size=3)
json_bytes = (json_documents | shaped_documents).map(lambda doc: json.dumps(doc).encode())
fuzzed_bodies = st.one_of(
    st.binary(max_size=200),
    json_bytes,
    st.tuples(json_bytes, st.integers(0, 200)).map(lambda cut: cut[0][: cut[1]]),
    st.text(max_size=80).map(lambda text: f"<html><body><h1>{text}</h1></body></html>".encode()),
)
statuses = st.sampled_from(
    [200, 201, 202, 204, 301, 400, 401, 403, 404, 409, 413, 429, 500, 502, 503]
)


@settings(max_examples=600, deadline=None)
@given(status=statuses, body=fuzzed_bodies, operation=st.sampled_from(sorted(OPERATIONS)))
def test_fuzzed_answers_raise_only_the_typed_family(
    status: int, body: bytes, operation: str
) -> None:
    result = asyncio.run(outcome(answering(status, body), operation))
    if status >= 300:
        assert isinstance(result, EVSAPIError)
        assert result.status_code == status
        assert result.retryable == is_retryable(status, result.code)
        assert result.message
    elif isinstance(result, Exception):
        assert isinstance(result, EVSResponseError)
        assert result.retryable
    elif operation == "delete":
        assert result is None


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(400, 599),
    shape=st.sampled_from(["error", "itemNotFound", "badRequest", "gateway"]),
    code=st.from_regex(r"(EVS|APIG)\.[0-9]{4}", fullmatch=True),
    message=st.text(min_size=1, max_size=300),
)
def test_fuzzed_known_shapes_keep_their_code(
    status: int, shape: str, code: str, message: str
) -> None:
    result = asyncio.run(outcome(answering(status, error_body(shape, code, message)), "show"))
    assert isinstance(result, EVSAPIError)
    assert (result.code, result.message) == (code, message[:512])
    assert isinstance(result, EVSError)
