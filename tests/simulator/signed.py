"""Test helpers: an httpx client for the simulator signed by the official SDK's ``Signer``.

Signing with huaweicloudsdkcore (not our own signer) checks the simulator against the reference
implementation. Query strings are passed pre-encoded the way the SDK puts them on the wire
(``%20``, not ``+``), because that is the form the signature covers.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import quote, unquote

import httpx
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from evs_simulator.testing import RunningSimulator


class OfficialSigner(httpx.Auth):
    """Sign as the SDK does; ``extra_headers`` (X-Project-Id, X-Sdk-Date, ...) are signed too."""

    def __init__(self, sim: RunningSimulator, secret_key: str, extra_headers: dict[str, str]):
        self._credentials = BasicCredentials(sim.access_key, secret_key, sim.project_id)
        self._extra = extra_headers

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = dict(self._extra)
        if "content-type" in request.headers:
            headers["Content-Type"] = request.headers["content-type"]
        raw_path, _, raw_query = request.url.raw_path.decode().partition("?")
        pairs = [item.partition("=") for item in raw_query.split("&") if item]
        sdk_request = SdkRequest(
            method=request.method,
            schema=request.url.scheme,
            host=request.url.netloc.decode(),
            resource_path=raw_path,
            query_params=[(unquote(key), unquote(value)) for key, _, value in pairs],
            header_params=headers,
            body=request.content,
        )
        Signer(self._credentials).sign(sdk_request)
        request.headers.update(sdk_request.header_params)
        yield request


def evs_client(
    sim: RunningSimulator,
    *,
    secret_key: str | None = None,
    project_header: str | None = None,
    **headers: str,
) -> httpx.AsyncClient:
    """A signed client whose base URL is ``/v2/{project_id}``; ``headers`` use ``_`` for ``-``."""
    extra = {"X-Project-Id": project_header or sim.project_id}
    extra.update({name.replace("_", "-"): value for name, value in headers.items()})
    auth = OfficialSigner(sim, secret_key or sim.secret_key, extra)
    return httpx.AsyncClient(base_url=f"{sim.endpoint}/v2/{sim.project_id}", auth=auth)


def sign(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Request:
    """A request signed by ``client``'s signer but not sent, for tests that tamper with it."""
    assert client.auth is not None
    return next(client.auth.auth_flow(client.build_request(method, url, **kwargs)))


def evs_query(pairs: Sequence[tuple[str, Any]]) -> str:
    """A query string encoded as the SDK sends it."""
    return "&".join(f"{quote(str(k), safe='~')}={quote(str(v), safe='~')}" for k, v in pairs)


def assert_evs_error(response: httpx.Response, status: int, code: str, key: str = "error") -> str:
    """Check status, code and body shape (``error``/``itemNotFound``/``badRequest``/``gateway``).

    Returns the message, for the tests that also check its wording.
    """
    assert response.status_code == status, response.text
    assert response.headers.get("X-Request-Id")
    body = response.json()
    if key == "gateway":
        assert body["error_code"] == code, body
        assert body["request_id"] == response.headers["X-Request-Id"]
        return str(body["error_msg"])
    assert list(body) == [key], body
    assert body[key]["code"] == code, body
    return str(body[key]["message"])
