"""The gateway's check of an incoming request: AK/SK signature, clock skew, token, project.

The signature is recomputed with the same functions the operator's client signs with, over the
request exactly as it arrived (raw path and query, headers, body bytes), so any difference in
canonicalisation between a client and the official SDK shows up here as a rejected request.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cloudsnap.evs import signing
from evs_simulator.config import SimulatorConfig
from evs_simulator.errors import unauthorized

MAX_SKEW = timedelta(minutes=15)
REQUIRED_SIGNED = ("host", "x-sdk-date")
TOKEN_CALLER = "X-Auth-Token"  # noqa: S105 - a caller's label, not a credential


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def verify(
    config: SimulatorConfig,
    method: str,
    raw_target: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> str:
    """Raise APIG.0301 unless the request is authentic for this project; ``headers`` lowercased.

    Returns who called, as the gateway throttles them: the access key, or ``TOKEN_CALLER``.
    """
    token = headers.get("x-auth-token")
    if token is not None:
        if config.auth_token is None or not _same(token, config.auth_token):
            raise unauthorized("the token is invalid.")
        _check_project(config, headers)
        return TOKEN_CALLER
    parsed = signing.parse_authorization(headers.get("authorization", ""))
    if parsed is None:
        raise unauthorized("missing or malformed SDK-HMAC-SHA256 Authorization header.")
    if not _same(parsed.access_key, config.access_key):
        raise unauthorized("the access key does not exist.")
    missing = [name for name in REQUIRED_SIGNED if name not in parsed.signed_headers]
    if missing:
        raise unauthorized(f"header {missing[0]} must be signed.")
    sdk_date = headers.get("x-sdk-date", "")
    try:
        stamp = datetime.strptime(sdk_date, signing.DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise unauthorized("X-Sdk-Date is missing or malformed.") from None
    if abs((now or datetime.now(UTC)) - stamp) > MAX_SKEW:
        raise unauthorized("the request time differs from the server time by over 15 minutes.")
    _check_security_token(config, headers, parsed.signed_headers)
    path, _, query = raw_target.partition("?")
    canonical = signing.canonical_request(
        method,
        path,
        query,
        headers,
        parsed.signed_headers,
        signing.payload_hash(body, headers.get(signing.CONTENT_SHA256_HEADER.lower())),
    )
    expected = signing.signature(config.secret_key, sdk_date, canonical)
    if not _same(parsed.signature, expected):
        raise unauthorized("the signature does not match.")
    _check_project(config, headers)
    return parsed.access_key


def _check_security_token(
    config: SimulatorConfig, headers: Mapping[str, str], signed: tuple[str, ...]
) -> None:
    """Temporary credentials must present their (signed) token; permanent ones must not."""
    token = headers.get("x-security-token")
    if config.security_token is None:
        if token is not None:
            raise unauthorized("the security token is invalid.")
        return
    if token is None or "x-security-token" not in signed:
        raise unauthorized("a signed X-Security-Token is required.")
    if not _same(token, config.security_token):
        raise unauthorized("the security token is invalid.")


def _check_project(config: SimulatorConfig, headers: Mapping[str, str]) -> None:
    project = headers.get("x-project-id")
    if project is not None and project != config.project_id:
        raise unauthorized("X-Project-Id does not match the credentials.")


def check_path_project(config: SimulatorConfig, project_id: str) -> None:
    """The project in the URL must be the authenticated one."""
    if project_id != config.project_id:
        raise unauthorized("the project id in the URL does not match the credentials.")
