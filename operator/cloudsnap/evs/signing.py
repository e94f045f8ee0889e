"""The SDK-HMAC-SHA256 request signature, as pure functions.

This mirrors ``huaweicloudsdkcore.signer.Signer`` step by step so that a request we sign is
accepted wherever the official SDK's is. It works on raw request parts (the path and query as they
travel on the wire), so the same code signs outgoing requests and verifies incoming ones.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
DATE_HEADER = "X-Sdk-Date"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(raw_path: str) -> str:
    """Each path segment decoded then re-encoded with only ``~`` safe; always ends in ``/``."""
    uri = "/".join(_encode(segment) for segment in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decode a wire query string into (key, value) pairs, keeping blanks and repeats."""
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Pairs sorted by key, repeated values sorted, both encoded like the path."""
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(pairs))


def signed_header_names(names: Iterable[str]) -> list[str]:
    """Every header name without ``_``, lowercased and sorted."""
    return sorted(name.lower() for name in names if "_" not in name)


def payload_hash(body: bytes, content_sha256: str | None) -> str:
    """Hex SHA-256 of the body, or the literal the client declared for a non-JSON body."""
    if not body:
        return EMPTY_BODY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body_hash: str,
) -> str:
    """The canonical request; ``headers`` must be keyed by lowercased name."""
    header_lines = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query_pairs(raw_query)),
            header_lines,
            ";".join(signed_headers),
            body_hash,
        )
    )


def signature(secret_key: str, sdk_date: str, canonical: str) -> str:
    """Hex HMAC-SHA256 over the string to sign."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{digest}"
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization_header(access_key: str, signed_headers: Sequence[str], signature_hex: str) -> str:
    return (
        f"{ALGORITHM} Access={access_key}, "
        f"SignedHeaders={';'.join(signed_headers)}, Signature={signature_hex}"
    )


@dataclass(frozen=True)
class ParsedAuthorization:
    """The three parts of an ``Authorization: SDK-HMAC-SHA256 ...`` header."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an Authorization header; ``None`` when it is not an SDK-HMAC-SHA256 one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name] = field_value
    try:
        return ParsedAuthorization(
            access_key=fields["Access"],
            signed_headers=tuple(fields["SignedHeaders"].split(";")),
            signature=fields["Signature"],
        )
    except KeyError:
        return None
