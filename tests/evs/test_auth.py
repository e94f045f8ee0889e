"""AKSKAuth must sign exactly as the official SDK's Signer does, on any request it may see.

The property builds the same request twice from the same parts: once through httpx (as EVSClient
does) signed by AKSKAuth, once as ``huaweicloudsdkcore``'s SdkRequest signed by its ``Signer``. The
two Authorization headers must be equal, the query on the wire must be the one the SDK would send,
and what a server recomputes from the bytes on the wire (the simulator's check) must agree too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudsnap.evs import signing
from cloudsnap.evs.auth import AKSKAuth, TokenAuth

DEFAULT_PORTS = {"http": 80, "https": 443}
HOP_BY_HOP = {"connection"}

# Text of any script, without surrogates (they cannot be encoded as UTF-8 at all).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16)
host_names = st.one_of(
    st.sampled_from(["127.0.0.1", "10.0.0.7", "[::1]", "localhost"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z][a-z0-9-]{0,8}){0,3}", fullmatch=True),
)
query_values = st.one_of(
    any_text,
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.lists(any_text, min_size=1, max_size=3),
)


@dataclass
class Body:
    """What goes in the request body and how it is labelled."""

    content: bytes | None
    json: Any
    content_type: str | None


@dataclass(frozen=True)
class Credentials:
    """What a request is signed with: the key pair, the project and an optional token."""

    access_key: str
    secret_key: str
    project_id: str
    security_token: str | None


credentials = st.builds(
    Credentials,
    access_key=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
    ),
    secret_key=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    project_id=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    security_token=st.none() | header_text.filter(bool),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    st.just(Body(None, None, None)),
    st.just(Body(b"", None, None)),
    json_values.map(lambda value: Body(None, {"snapshot": value}, None)),
    st.builds(
        Body,
        content=st.binary(min_size=1, max_size=64),
        json=st.none(),
        content_type=st.sampled_from(
            [
                "application/octet-stream",
                "text/plain; charset=utf-8",
                "application/xml",
                "multipart/form-data; boundary=x",
                "application/json;charset=UTF-8",
                "application/bson",
            ]
        ),
    ),
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """A client only to build requests the way an httpx client does (default headers included)."""
    with httpx.Client(headers={"Accept": "application/json", "User-Agent": "cloudsnap"}) as client:
        yield client


def sdk_authorization(
    *,
    credentials: Credentials,
    method: str,
    scheme: str,
    host: str,
    resource_path: str,
    query: dict[str, Any],
    headers: dict[str, str],
    body: bytes,
) -> SdkRequest:
    """The official SDK's signing of the same request, with the headers its credentials add."""
    header_params = dict(headers)
    header_params["X-Project-Id"] = credentials.project_id
    if credentials.security_token is not None:
        header_params["X-Security-Token"] = credentials.security_token
    request = SdkRequest(
        method=method,
        schema=scheme,
        host=host,
        resource_path=resource_path,
        query_params=list(query.items()),
        header_params=header_params,
        body=body or None,
    )
    basic = BasicCredentials(credentials.access_key, credentials.secret_key, credentials.project_id)
    return Signer(basic).sign(request)


def httpx_params(query: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (key, item)
        for key, value in query.items()
        for item in (value if isinstance(value, list) else [value])
    ]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    credentials=credentials,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
    scheme=st.sampled_from(["http", "https"]),
    host=host_names,
    port=st.none() | st.sampled_from([80, 443]) | st.integers(1, 65535),
    segments=st.lists(any_text.filter(lambda s: s not in (".", "..")), max_size=5),
    safe=st.sampled_from(["", "/", "!$&'()*+,;=:@", "~-._"]),
    trailing_slash=st.booleans(),
    query=st.dictionaries(any_text.filter(bool), query_values, max_size=5),
    extra_headers=st.lists(
        st.tuples(st.from_regex(r"X-[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True), header_text),
        max_size=3,
        unique_by=lambda header: header[0].lower(),
    ).map(dict),
    body=bodies,
    sdk_date=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
        lambda moment: moment.strftime(signing.DATE_FORMAT)
    ),
)
def test_signature_equals_official_sdk(
    http: httpx.Client,
    credentials: Credentials,
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    segments: list[str],
    safe: str,
    trailing_slash: bool,
    query: dict[str, Any],
    extra_headers: dict[str, str],
    body: Body,
    sdk_date: str,
) -> None:
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = "/" + "/".join(quote(segment, safe=safe) for segment in segments)
    if trailing_slash and not path.endswith("/"):
        path += "/"
    headers = {**extra_headers, "X-Sdk-Date": sdk_date}
    if body.content_type is not None:
        headers["Content-Type"] = body.content_type
    request = http.build_request(
        method,
        f"{scheme}://{netloc}{path}",
        params=httpx_params(query),
        headers=headers,
        content=body.content,
        json=body.json,
    )
    # Names as written (the SDK looks up "Content-Type" case-sensitively), minus what it adds.
    before_signing = {
        name.decode(): value.decode()
        for name, value in request.headers.raw
        if name.lower().decode() not in HOP_BY_HOP | {"host"}
    }

    AKSKAuth(
        credentials.access_key,
        credentials.secret_key,
        credentials.project_id,
        credentials.security_token,
    ).sign(request)

    expected = sdk_authorization(
        credentials=credentials,
        method=method,
        scheme=scheme,
        host=netloc,
        resource_path=path,
        query=query,
        headers=before_signing,
        body=request.content,
    )
    assert request.headers["Authorization"] == expected.header_params["Authorization"]
    assert request.headers["Host"] == netloc
    assert request.url.query.decode() == expected.uri.partition("?")[2]
    # What a server recomputes from the request as it travels agrees as well.
    parsed = signing.parse_authorization(request.headers["Authorization"])
    assert parsed is not None
    raw_path, _, raw_query = request.url.raw_path.decode().partition("?")
    lowered = {name.lower(): value for name, value in request.headers.items()}
    recomputed = signing.canonical_request(
        method,
        raw_path,
        raw_query,
        lowered,
        parsed.signed_headers,
        signing.payload_hash(request.content, lowered.get("x-sdk-content-sha256")),
    )
    assert parsed.signature == signing.signature(credentials.secret_key, sdk_date, recomputed)


@pytest.mark.parametrize(
    ("content_type", "unsigned"),
    [
        ("application/json", False),
        ("application/json;charset=UTF-8", False),
        ("application/bson", False),
        ("application/octet-stream", True),
        ("text/plain", True),
    ],
)
def test_non_json_body_is_declared_unsigned(
    http: httpx.Client, content_type: str, unsigned: bool
) -> None:
    request = http.build_request(
        "POST", "http://127.0.0.1:9/x", content=b"data", headers={"Content-Type": content_type}
    )
    AKSKAuth("AK", "SK", "p").sign(request)
    assert (request.headers.get("X-Sdk-Content-Sha256") == "UNSIGNED-PAYLOAD") is unsigned
    assert ("x-sdk-content-sha256" in request.headers["Authorization"]) is unsigned


def test_identity_headers_and_current_date(http: httpx.Client) -> None:
    request = http.build_request("GET", "http://127.0.0.1:8443/v2/p/cloudsnapshots")
    AKSKAuth("AK", "SK", "proj", "tok").sign(request)
    assert request.headers["X-Project-Id"] == "proj"
    assert request.headers["X-Security-Token"] == "tok"
    assert request.headers["Host"] == "127.0.0.1:8443"
    assert len(request.headers["X-Sdk-Date"]) == len("20240101T000000Z")
    parsed = signing.parse_authorization(request.headers["Authorization"])
    assert parsed is not None
    assert "connection" not in parsed.signed_headers
    assert {"host", "x-sdk-date", "x-project-id", "x-security-token"} <= set(parsed.signed_headers)


def test_token_auth_headers(http: httpx.Client) -> None:
    request = http.build_request("GET", "http://127.0.0.1:9/x")
    flow = TokenAuth("iam-token-value", "proj").sync_auth_flow(request)
    sent = next(flow)
    assert sent.headers["X-Auth-Token"] == "iam-token-value"
    assert sent.headers["X-Project-Id"] == "proj"
    assert "Authorization" not in sent.headers


def test_secrets_stay_out_of_repr() -> None:
    aksk = AKSKAuth("AKVISIBLE", "sk-hidden-1234", "proj", "token-hidden-5678")
    token = TokenAuth("iam-hidden-9012", "proj")
    for auth, hidden in (
        (aksk, "sk-hidden-1234"),
        (aksk, "token-hidden-5678"),
        (token, "iam-hidden-9012"),
    ):
        assert hidden not in repr(auth)
        assert hidden not in str(auth)
    assert "AKVISIBLE" in repr(aksk)
    assert set(aksk.secret_values()) == {"sk-hidden-1234", "token-hidden-5678"}


@pytest.mark.parametrize(
    ("make", "secret"),
    [
        (lambda: TokenAuth("tök-secret", "p"), "tök-secret"),
        (lambda: AKSKAuth("AK", "SK", "p", "line\nbreak-secret"), "line\nbreak-secret"),
        (lambda: AKSKAuth("", "SK", "p"), None),
        (lambda: AKSKAuth("AK", "", "p"), None),
    ],
)
def test_unusable_credentials_refused_without_showing_them(make: Any, secret: str | None) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        make()
    if secret is not None:
        assert secret not in str(caught.value)
