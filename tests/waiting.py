"""`eventually`: how every async test waits for something to become true.

It lives apart from the fixtures so that any test may import it without loading the processes,
clusters and clients those fixtures bring along.
"""

from __future__ import annotations

import asyncio
import inspect
import linecache
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIRST_POLL = 0.01
"""The first pause: an in-memory controller settles within a few of these."""
LAST_POLL = 0.25
"""The pause the polls grow to: a probe that runs kubectl or calls a process is not hammered."""
GROWTH = 1.5


async def eventually(
    probe: Callable[[], Any], *, timeout: float = 60.0, what: str | None = None
) -> Any:
    """Poll `probe` (sync or async) until it returns something truthy, and return that.

    Polls after 10 ms at first, then less and less often, every 0.25 s from about half a second
    on. Fails after `timeout` seconds naming `what` (by default where the probe is written) and
    the last value the probe returned.
    """
    deadline = time.monotonic() + timeout
    pause = FIRST_POLL
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            waited_for = what if what is not None else describe(probe)
            raise AssertionError(
                f"gave up after {timeout:g}s waiting for {waited_for} (last: {value!r})"
            )
        await asyncio.sleep(pause)
        pause = min(pause * GROWTH, LAST_POLL)


def describe(probe: Callable[[], Any]) -> str:
    """The probe as a failure message can name it: where it is written and, for a lambda, the
    line it is written on."""
    name = getattr(probe, "__qualname__", None) or repr(probe)
    code = getattr(probe, "__code__", None)
    if code is None:
        return name
    where = f"{Path(code.co_filename).name}:{code.co_firstlineno}"
    line = linecache.getline(code.co_filename, code.co_firstlineno).strip()
    if getattr(probe, "__name__", None) == "<lambda>" and line:
        return f"`{line}` ({where})"
    return f"{name} ({where})"
