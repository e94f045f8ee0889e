"""A request written byte for byte onto a socket, for what no HTTP client would send."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def raw_request(endpoint: str, method: str, target: str) -> int:
    """Send a request line exactly as given (no client-side normalisation, no User-Agent).

    Returns the answer's status.
    """
    parts = urlsplit(endpoint)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
    return int(status_line.split()[1])
