"""Async client for the EVS snapshot, disk and job APIs (one instance per endpoint and
credentials).

It makes one HTTP request per call and never retries a request EVS may have seen: whether a
create may be repeated is for the caller to decide (EVS has no idempotency token for snapshots;
a disk create carries the caller's ``X-Client-Token``, which makes repeating it safe for 8
hours), so a failure is reported as an :class:`~cloudsnap.evs.errors.EVSError` with a
``retryable`` verdict instead. The one
exception is an answer the API gateway throttled, which never reached EVS: it is sent again after
the limiter's wait, up to ``throttle_retries`` times. Nothing else escapes a call, whatever the
server or the network does.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import httpcore
import httpx
from pydantic import BaseModel, ValidationError

from cloudsnap.evs.auth import HoldsSecrets
from cloudsnap.evs.errors import (
    EVSAPIError,
    EVSConnectionError,
    EVSNotSent,
    EVSResponseError,
    EVSTimeoutError,
    is_retryable,
    is_throttled,
    parse_error,
)
from cloudsnap.evs.models import (
    CreatedVolume,
    CreateSnapshotRequest,
    CreateVolumeRequest,
    Job,
    ListSnapshotsQuery,
    ListVolumesQuery,
    Snapshot,
    SnapshotPage,
    Volume,
    VolumePage,
)

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float], None]
"""Called once per HTTP request with (operation, outcome, seconds); outcome is the status code as
text, ``timeout`` or ``connection_error``."""

Answered = Callable[[str], None]
"""Told the outcome of one request: the status code as text (``429`` for any throttled answer),
``timeout`` or ``connection_error``."""

Limiter = Callable[[str], Awaitable[Answered]]
"""Awaited before each HTTP request with its operation (a rate control's ``acquire``); what it
returns is told the request's outcome, so the rate can follow the answers. Its wait is not counted
against the request timeout."""

# Outcomes of a request that got no (readable) answer, as the observer and the limiter hear them.
_UNANSWERED = ("timeout", "connection_error")
# Enough parallel requests for one account's rate limit; idle connections are kept for polling.
DEFAULT_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=30)
_REDACTED = "***"
# The header of a disk create's idempotency token (a UUID, valid for 8 hours).
IDEMPOTENCY_HEADER = "X-Client-Token"


class Unset(enum.Enum):
    """Marks an update argument that was not given (``None`` is a value: it clears a field)."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET

_Model = TypeVar("_Model", bound=BaseModel)


class _SnapshotAnswer(BaseModel):
    snapshot: Snapshot


class _SnapshotList(BaseModel):
    count: int
    snapshots: list[Snapshot]


class _RolledBack(BaseModel):
    volume_id: str


class _RollbackAnswer(BaseModel):
    rollback: _RolledBack


class _VolumeAnswer(BaseModel):
    volume: Volume


class _VolumeList(BaseModel):
    count: int
    volumes: list[Volume]


class _JobStarted(BaseModel):
    job_id: str


def _next_offset(offset: int | None, returned: int, count: int) -> int | None:
    """Where the page after one of ``returned`` items starts; None after the last one."""
    end = (offset or 0) + returned
    return end if returned and end < count else None


def _segment(value: str) -> str:
    """One path segment, encoded so that no id can reach another path (``/``, ``?``, ``..``)."""
    if not value:
        raise ValueError("an EVS id must not be empty")
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if set(value) == {"."} else encoded


def _tls(verify: bool | str) -> bool | ssl.SSLContext:
    """``verify`` as httpx wants it: a string is a CA bundle, as PEM text or as a file path."""
    if isinstance(verify, bool):
        return verify
    if "-----BEGIN" in verify:
        return ssl.create_default_context(cadata=verify)
    return ssl.create_default_context(cafile=verify)


class _Fenced(Exception):
    """The guard refused to let a request's bytes leave."""


class _GuardedStream(httpcore.AsyncNetworkStream):
    """A connection that asks the guard before every write, so nothing leaves while it says no."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, guard: Callable[[], bool]) -> None:
        self._inner = inner
        self._guard = guard

    async def read(
        self,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(
        self,
        buffer: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> None:
        if not self._guard():
            raise _Fenced
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _GuardedStream(tls, self._guard)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections that ask the guard before every write."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, guard: Callable[[], bool]) -> None:
        self._inner = inner
        self._guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(stream, self._guard)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _GuardedStream(stream, self._guard)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _guard_writes(client: httpx.AsyncClient, guard: Callable[[], bool]) -> None:
    """Make every connection of ``client`` (proxied ones too) ask ``guard`` before each write.

    Checked any earlier, a request could pass the check, wait (for a pooled connection, or with
    the whole process paused by SIGSTOP or a VM freeze) and go out once the answer had become no.
    httpx has no public hook this late, so the backend of each httpcore pool is wrapped.
    """
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.AsyncConnectionPool):
            pool._network_backend = _GuardedBackend(pool._network_backend, guard)


class EVSClient:
    """The six snapshot operations of EVS v2, and the disk and job calls a restore needs, for
    one project over one pooled HTTP client."""

    def __init__(
        self,
        endpoint: str,
        auth: httpx.Auth,
        project_id: str,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: Observer | None = None,
        limiter: Limiter | None = None,
        guard: Callable[[], bool] | None = None,
        throttle_retries: int = 0,
        user_agent: str = "cloudsnap",
    ) -> None:
        url = httpx.URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"EVS endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = str(url).rstrip("/")
        self.project_id = project_id
        project = _segment(project_id)
        self._base = f"{self.endpoint}/v2/{project}/cloudsnapshots"
        self._volumes = f"{self.endpoint}/v2/{project}/cloudvolumes"
        # Disk creation is v2.1, the version that honours X-Client-Token; jobs are v1.
        self._volume_create = f"{self.endpoint}/v2.1/{project}/cloudvolumes"
        self._jobs = f"{self.endpoint}/v1/{project}/jobs"
        self._timeout = timeout
        self._observer = observer
        self._limiter = limiter
        self._throttle_retries = throttle_retries
        self._auth = auth
        self._secrets = auth.secret_values() if isinstance(auth, HoldsSecrets) else ()
        self._http = httpx.AsyncClient(
            auth=auth,
            timeout=timeout,
            verify=_tls(verify),
            transport=transport,
            limits=DEFAULT_LIMITS,
            headers={"Accept": "application/json", "User-Agent": user_agent},
        )
        if guard is not None:
            _guard_writes(self._http, guard)

    def __repr__(self) -> str:
        return (
            f"EVSClient(endpoint={self.endpoint!r}, project_id={self.project_id!r}, "
            f"auth={self._auth!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def create_snapshot(self, req: CreateSnapshotRequest) -> Snapshot:
        """Start a snapshot (it comes back ``creating``). Not idempotent: a retry may make two."""
        response = await self._call("create", "POST", self._base, json=req.body())
        return self._parse("create", _SnapshotAnswer, response).snapshot

    async def show_snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot; a missing one raises EVSAPIError with code ``EVS.5404``."""
        response = await self._call("show", "GET", self._item(snapshot_id))
        return self._parse("show", _SnapshotAnswer, response).snapshot

    async def list_snapshots(self, query: ListSnapshotsQuery | None = None) -> SnapshotPage:
        """One page; ``next_offset`` is where the next page starts, ``None`` after the last one."""
        query = query or ListSnapshotsQuery()
        response = await self._call("list", "GET", f"{self._base}/detail", params=query.params())
        listing = self._parse("list", _SnapshotList, response)
        return SnapshotPage(
            count=listing.count,
            snapshots=listing.snapshots,
            next_offset=_next_offset(query.offset, len(listing.snapshots), listing.count),
        )

    async def iter_snapshots(
        self, query: ListSnapshotsQuery | None = None
    ) -> AsyncIterator[Snapshot]:
        """Every match across pages, each once even when creations shift the offsets meanwhile."""
        query = query or ListSnapshotsQuery()
        seen: set[str] = set()
        while True:
            page = await self.list_snapshots(query)
            for snapshot in page.snapshots:
                if snapshot.id not in seen:
                    seen.add(snapshot.id)
                    yield snapshot
            if page.next_offset is None:
                return
            query = query.model_copy(update={"offset": page.next_offset})

    async def update_snapshot(
        self,
        snapshot_id: str,
        *,
        name: str | Unset = UNSET,
        description: str | Unset | None = UNSET,
    ) -> Snapshot:
        """Rename or re-describe; only the arguments given are sent; ``description=None`` clears."""
        fields: dict[str, str | None] = {}
        if not isinstance(name, Unset):
            fields["name"] = name
        if not isinstance(description, Unset):
            fields["description"] = description
        response = await self._call(
            "update", "PUT", self._item(snapshot_id), json={"snapshot": fields}
        )
        return self._parse("update", _SnapshotAnswer, response).snapshot

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Start the deletion; the snapshot passes through ``deleting`` until show answers 404."""
        await self._call("delete", "DELETE", self._item(snapshot_id))

    async def rollback_snapshot(
        self, snapshot_id: str, volume_id: str, name: str | None = None
    ) -> str:
        """Roll the snapshot's data back onto ``volume_id``; returns the disk EVS names."""
        rollback = {"volume_id": volume_id} | ({"name": name} if name is not None else {})
        response = await self._call(
            "rollback", "POST", f"{self._item(snapshot_id)}/rollback", json={"rollback": rollback}
        )
        return self._parse("rollback", _RollbackAnswer, response).rollback.volume_id

    async def create_volume(self, req: CreateVolumeRequest, client_token: str) -> CreatedVolume:
        """Start making a disk (``creating``, then ``available``) under a job.

        ``client_token`` (a UUID) makes the call idempotent for 8 hours: sent again with the same
        token and body, EVS answers the first call's job instead of making a second disk.
        """
        response = await self._call(
            "create_volume",
            "POST",
            self._volume_create,
            json=req.body(),
            headers={IDEMPOTENCY_HEADER: client_token},
        )
        return self._parse("create_volume", CreatedVolume, response)

    async def show_job(self, job_id: str) -> Job:
        """One job: how a disk create or delete is going, and the disk it is about."""
        response = await self._call("show_job", "GET", f"{self._jobs}/{_segment(job_id)}")
        return self._parse("show_job", Job, response)

    async def show_volume(self, volume_id: str) -> Volume:
        """One disk; a missing one raises EVSAPIError with code ``EVS.5404``."""
        url = f"{self._volumes}/{_segment(volume_id)}"
        response = await self._call("show_volume", "GET", url)
        return self._parse("show_volume", _VolumeAnswer, response).volume

    async def list_volumes(self, query: ListVolumesQuery | None = None) -> VolumePage:
        """One page of disks, e.g. those whose metadata carries a restore's UID."""
        query = query or ListVolumesQuery()
        response = await self._call(
            "list_volumes", "GET", f"{self._volumes}/detail", params=query.params()
        )
        listing = self._parse("list_volumes", _VolumeList, response)
        return VolumePage(
            count=listing.count,
            volumes=listing.volumes,
            next_offset=_next_offset(query.offset, len(listing.volumes), listing.count),
        )

    async def delete_volume(self, volume_id: str) -> str:
        """Start deleting a disk (refused while it is attached or has snapshots); returns the
        job that deletes it."""
        url = f"{self._volumes}/{_segment(volume_id)}"
        response = await self._call("delete_volume", "DELETE", url)
        return self._parse("delete_volume", _JobStarted, response).job_id

    def _item(self, snapshot_id: str) -> str:
        return f"{self._base}/{_segment(snapshot_id)}"

    def _redact(self, text: str) -> str:
        """Remove our own secrets from text a server or the network produced (it may echo them)."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    async def _call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        params: tuple[tuple[str, str], ...] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send the request, again while the gateway throttles it (``throttle_retries``)."""
        retries = self._throttle_retries
        while True:
            try:
                return await self._send(
                    operation, method, url, params=params, json=json, headers=headers
                )
            except EVSAPIError as exc:
                if not exc.throttled or retries <= 0:
                    raise
                retries -= 1
                log.debug("EVS %s throttled (%s); sending it again", operation, exc.code)

    async def _send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        params: tuple[tuple[str, str], ...] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        """Send one request; any failure becomes the EVSError that describes it.

        The observer and the limiter hear of every request that ended (a cancelled one, or one
        the guard kept from leaving, has no outcome to count). The debug line says which: the
        outcome, "fenced" or "cancelled".
        """
        answered: Answered | None = None
        if self._limiter is not None:
            # Queueing for the rate limit is not waiting for EVS: it stays outside the deadline.
            answered = await self._limiter(operation)
        outcome: str | None = None
        unsent = "cancelled"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.request(
                    method, url, params=params, json=json, headers=headers
                )
            outcome = str(response.status_code)
        except (TimeoutError, httpx.TimeoutException):
            outcome = "timeout"
            raise EVSTimeoutError(
                f"no answer to {operation} within {self._timeout:g}s", retryable=True
            ) from None
        except _Fenced:
            unsent = "fenced"
            raise EVSNotSent(f"{operation} not sent: this replica may not act now") from None
        except httpx.DecodingError as exc:
            outcome = "connection_error"
            raise EVSResponseError(
                self._redact(f"undecodable {operation} answer: {exc}"), retryable=True
            ) from None
        except httpx.HTTPError as exc:
            outcome = "connection_error"
            raise EVSConnectionError(
                self._redact(f"{operation} failed: {type(exc).__name__}: {exc}"), retryable=True
            ) from None
        finally:
            elapsed = time.perf_counter() - started
            log.debug("EVS %s -> %s in %.3fs", operation, outcome or unsent, elapsed)
            if self._observer is not None and outcome is not None:
                self._observer(operation, outcome, elapsed)
            if answered is not None and outcome in _UNANSWERED:
                answered(outcome)
        if response.is_success:
            if answered is not None:
                answered(str(response.status_code))
            return response
        code, message, body_request_id = parse_error(response.status_code, response.content)
        if answered is not None:
            throttled = is_throttled(response.status_code, code)
            answered("429" if throttled else str(response.status_code))
        raise EVSAPIError(
            self._redact(message),
            status_code=response.status_code,
            code=self._redact(code) if code else None,
            request_id=response.headers.get("X-Request-Id") or body_request_id,
            retryable=is_retryable(response.status_code, code),
        )

    def _parse(self, operation: str, model: type[_Model], response: httpx.Response) -> _Model:
        """Read a success answer; one that does not match the API is an EVSResponseError."""
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise EVSResponseError(
                self._redact(f"unreadable {operation} answer: {where}: {first['msg']}"),
                status_code=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
                retryable=True,
            ) from None
