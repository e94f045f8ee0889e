"""Network failures against real loopback sockets become typed, retryable errors.

Each case is a tiny asyncio server on 127.0.0.1 that misbehaves in one precise way at the byte
level (never answers, hangs up, cuts the body short, sends corrupt gzip), which is what a proxy or
an overloaded gateway really does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hack.cluster.controlplane import free_port
from hack.cluster.pki import generate

from cloudsnap.evs.auth import AKSKAuth
from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import (
    EVSAPIError,
    EVSConnectionError,
    EVSError,
    EVSResponseError,
    EVSTimeoutError,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve ``handler`` on a free loopback port; yields the endpoint URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    await reader.read()  # until the client gives up and closes
    writer.close()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.close()


async def cuts_body_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b'{"snapshot": {"id"')
    await writer.drain()
    writer.close()


async def corrupt_gzip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    body = b"definitely not gzip"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()
    writer.close()


async def not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    body = json.dumps({"itemNotFound": {"code": "EVS.5404", "message": "gone"}}).encode()
    head = f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    writer.write(head + body)
    await writer.drain()
    writer.close()


def client_for(endpoint: str, calls: list[tuple[str, str]], timeout: float = 5.0) -> EVSClient:
    return EVSClient(
        endpoint,
        AKSKAuth("AK", "SK", "proj"),
        "proj",
        timeout=timeout,
        observer=lambda operation, result, _seconds: calls.append((operation, result)),
    )


async def test_hanging_server_times_out_typed() -> None:
    calls: list[tuple[str, str]] = []
    async with raw_server(never_answers) as endpoint, client_for(endpoint, calls, 0.3) as client:
        with pytest.raises(EVSTimeoutError) as caught:
            await client.show_snapshot("abc")
    assert caught.value.retryable
    assert caught.value.status_code is None
    assert calls == [("show", "timeout")]


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [(hangs_up, EVSConnectionError), (cuts_body_short, EVSConnectionError)],
    ids=["hangs-up", "truncated-body"],
)
async def test_dropped_connections_are_typed(handler: Handler, error_type: type[EVSError]) -> None:
    calls: list[tuple[str, str]] = []
    async with raw_server(handler) as endpoint, client_for(endpoint, calls) as client:
        with pytest.raises(error_type) as caught:
            await client.show_snapshot("abc")
    assert caught.value.retryable
    assert calls == [("show", "connection_error")]


async def test_cancelled_request_is_not_counted() -> None:
    """Cancellation passes through untouched and the observer records no made-up outcome."""
    arrived = asyncio.Event()

    async def signals_then_waits(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        arrived.set()
        await never_answers(reader, writer)

    calls: list[tuple[str, str]] = []
    async with raw_server(signals_then_waits) as endpoint, client_for(endpoint, calls) as client:
        task = asyncio.create_task(client.show_snapshot("abc"))
        async with asyncio.timeout(5):
            await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert calls == []


async def test_refused_connection_is_typed() -> None:
    calls: list[tuple[str, str]] = []
    async with client_for(f"http://127.0.0.1:{free_port()}", calls) as client:
        with pytest.raises(EVSConnectionError, match="ConnectError") as caught:
            await client.list_snapshots()
    assert caught.value.retryable
    assert calls == [("list", "connection_error")]


async def test_undecodable_content_encoding_is_a_response_error() -> None:
    calls: list[tuple[str, str]] = []
    async with raw_server(corrupt_gzip) as endpoint, client_for(endpoint, calls) as client:
        with pytest.raises(EVSResponseError, match="undecodable show answer") as caught:
            await client.show_snapshot("abc")
    assert caught.value.retryable


@pytest.mark.parametrize("trust", ["pem-text", "ca-file", "system", "off"])
async def test_tls_verification_follows_verify(tmp_path: Path, trust: str) -> None:
    """A private CA is trusted when given as PEM text or file, refused by the system store."""
    pki = generate(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(pki.serving_cert, pki.serving_key)
    choices: dict[str, bool | str] = {
        "pem-text": pki.ca_cert.read_text(),
        "ca-file": str(pki.ca_cert),
        "system": True,
        "off": False,
    }
    verify = choices[trust]
    async with (
        raw_server(not_found, serving) as endpoint,
        # Guarded as the operator's clients are: the TLS stream is wrapped after the handshake.
        EVSClient(
            endpoint, AKSKAuth("AK", "SK", "p"), "p", verify=verify, guard=lambda: True
        ) as client,
    ):
        if trust == "system":
            with pytest.raises(EVSConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.show_snapshot("abc")
        else:
            with pytest.raises(EVSAPIError, match=r"EVS\.5404"):
                await client.show_snapshot("abc")
