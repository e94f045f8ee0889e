"""Authentication for EVS requests as httpx auth flows.

Two ways in: AK/SK request signing (``SDK-HMAC-SHA256``, the usual one for a robot account, also
with temporary credentials and their security token) and a static IAM token. Both keep their
secrets out of ``repr()`` and name them through ``secret_values()`` (the :class:`HoldsSecrets`
protocol), so the client can scrub them from any text it puts into an exception.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import httpx

from cloudsnap.evs import signing

PROJECT_ID_HEADER = "X-Project-Id"
SECURITY_TOKEN_HEADER = "X-Security-Token"  # noqa: S105 (a header name)
AUTH_TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 (a header name)

# Hop-by-hop headers may be rewritten or dropped by any proxy on the way, so a signature over them
# could break in transit; every other header the request carries is signed, as the SDK does.
_UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_SIGNED_BODY_TYPES = ("application/json", "application/bson")


@runtime_checkable
class HoldsSecrets(Protocol):
    """An auth flow that can name the secrets it holds, so whoever shows text can redact them."""

    def secret_values(self) -> tuple[str, ...]:
        """The secret strings this flow holds."""
        ...


def _header_safe(what: str, value: str) -> str:
    """Refuse, before any request, a value no HTTP header can carry (the value is never shown)."""
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{what} must be printable ASCII")
    return value


class AKSKAuth(httpx.Auth):
    """Signs each request with ``SDK-HMAC-SHA256`` exactly as ``huaweicloudsdkcore``'s Signer does.

    The body is needed for the payload hash, hence ``requires_request_body``. The query string is
    rewritten into its canonical form before signing (as the SDK sends it), so what travels on the
    wire is exactly what was signed whatever encoding httpx chose (it writes spaces as ``+``).
    An ``X-Sdk-Date`` already on the request is kept, as the SDK does; otherwise it is now.
    ``Host`` (with a non-default port) is always on an httpx request already, and is signed.
    """

    requires_request_body = True

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        project_id: str,
        security_token: str | None = None,
    ) -> None:
        if not access_key or not secret_key:
            raise ValueError("AK/SK authentication needs both an access key and a secret key")
        self.access_key = _header_safe("access key", access_key)
        self.project_id = _header_safe("project id", project_id)
        self._secret_key = secret_key
        self._security_token = _header_safe("security token", security_token or "") or None

    def __repr__(self) -> str:
        token = ", security_token=***" if self._security_token else ""
        return (
            f"AKSKAuth(access_key={self.access_key!r}, secret_key=***, "
            f"project_id={self.project_id!r}{token})"
        )

    def secret_values(self) -> tuple[str, ...]:
        """The secret key and, for temporary credentials, the security token."""
        return tuple(v for v in (self._secret_key, self._security_token) if v)

    def sign(self, request: httpx.Request) -> None:
        """Add the identity headers and the ``Authorization`` signature to ``request`` in place."""
        headers = request.headers
        headers[PROJECT_ID_HEADER] = self.project_id
        if self._security_token:
            headers[SECURITY_TOKEN_HEADER] = self._security_token
        if signing.DATE_HEADER not in headers:
            headers[signing.DATE_HEADER] = datetime.now(UTC).strftime(signing.DATE_FORMAT)
        content_type = headers.get("Content-Type")
        if content_type and not content_type.startswith(_SIGNED_BODY_TYPES):
            headers[signing.CONTENT_SHA256_HEADER] = signing.UNSIGNED_PAYLOAD

        query = signing.canonical_query(request.url.params.multi_items())
        request.url = request.url.copy_with(query=query.encode("ascii") or None)

        lowered = {name.lower(): value for name, value in headers.items()}
        names = signing.signed_header_names(n for n in lowered if n not in _UNSIGNED_HEADERS)
        body_hash = signing.payload_hash(
            request.content, lowered.get(signing.CONTENT_SHA256_HEADER.lower())
        )
        raw_path = request.url.raw_path.partition(b"?")[0].decode("ascii")
        canonical = signing.canonical_request(
            request.method, raw_path, query, lowered, names, body_hash
        )
        signature = signing.signature(self._secret_key, headers[signing.DATE_HEADER], canonical)
        headers["Authorization"] = signing.authorization_header(self.access_key, names, signature)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign, then send once: a signature is only valid for the request it was made for."""
        self.sign(request)
        yield request


class TokenAuth(httpx.Auth):
    """Sends a static IAM token (``X-Auth-Token``); the caller renews it before its 24 hours end."""

    def __init__(self, token: str, project_id: str) -> None:
        if not token:
            raise ValueError("token authentication needs a non-empty token")
        self.project_id = _header_safe("project id", project_id)
        self._token = _header_safe("token", token)

    def __repr__(self) -> str:
        return f"TokenAuth(token=***, project_id={self.project_id!r})"

    def secret_values(self) -> tuple[str, ...]:
        """The token itself."""
        return (self._token,)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the token and the project id; nothing depends on the body."""
        request.headers[AUTH_TOKEN_HEADER] = self._token
        request.headers[PROJECT_ID_HEADER] = self.project_id
        yield request
