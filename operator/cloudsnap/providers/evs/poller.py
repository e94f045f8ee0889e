"""Batched observation of known snapshots: one list call answers many waiting resources.

Every resource that wants a fresh look at its snapshot (while it is being created or deleted, or
at the slow drift resync) asks the poller of its class. Requests are answered together in rounds:
a round gathers for a short window, and starts no sooner than ``spacing`` after the previous one,
so resources polling every ``spacing`` seconds, however staggered their creates were, fall into
the same rounds after their first. A round asks by id (``id=a&id=b...``, up to 100 a call) or,
when it waits for many and the whole account fits one page, lists the account in one page of up to
1000, which then also answers, for a poll interval, the asks content with a recent look (snapshots
being created): the number of EVS calls grows with classes and rounds, not resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import EVSConnectionError, EVSError
from cloudsnap.evs.models import ListSnapshotsQuery, Snapshot
from cloudsnap.runtime.workqueue import waiting_on_others

# Each id costs ~40 bytes of query string; 100 keeps the request line well under the 8 KiB that
# common servers and gateways accept.
DEFAULT_IDS_PER_CALL = 100
# EVS's largest list page (docs/evs.md). Only a listing that fits one page answers a round: paging
# by offset can skip a snapshot when another is deleted meanwhile, and skipped reads as gone.
PAGE_SIZE = 1000
# A round with this many waiters lists the whole account when it fits a page: one call either way,
# and the listing also answers the asks that come a moment later (``recent``). Fewer are asked for
# by id, to not read a page of a thousand for a handful.
LISTING_WAITERS = 20

log = logging.getLogger(__name__)


class BatchPoller:
    """Coalesces ``refresh(id)`` calls into rounds of few list calls."""

    def __init__(
        self,
        client: EVSClient,
        *,
        window: float = 0.2,
        spacing: float = 0.0,
        ids_per_call: int = DEFAULT_IDS_PER_CALL,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._window = window
        self._spacing = spacing
        self._ids_per_call = ids_per_call
        self._page_size = page_size
        self._clock = clock
        self._last_round = -math.inf
        # Snapshots in the account at the last whole listing (None: not listed yet) ...
        self._account_size: int | None = None
        # ... and that listing, with when its round began, for the asks that may take it.
        self._listing: tuple[float, dict[str, Snapshot]] | None = None
        self._waiting: dict[str, asyncio.Future[Snapshot | None]] = {}
        self._in_flight: dict[str, asyncio.Future[Snapshot | None]] = {}
        self._round: asyncio.Task[None] | None = None
        self._closed = False

    async def refresh(self, snapshot_id: str, *, recent: bool = False) -> Snapshot | None:
        """The snapshot as EVS sees it in the next round, or None if EVS no longer has it.

        ``recent``: the last whole listing of the account will do if its round began within
        ``spacing``: resources whose steps come after the round answered need no round of
        their own.
        Raises the round's EVSError when the list call for this id failed.
        """
        if self._closed:
            raise _closed_error()
        if recent and self._listing is not None:
            began, listed = self._listing
            if self._clock() - began < self._spacing:
                return listed.get(snapshot_id)
        future = self._waiting.get(snapshot_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Its waiters may all be gone (their steps cancelled on losing the Lease or shutting
            # down) when the round fails: the error is theirs, not an unretrieved one to log.
            future.add_done_callback(_retrieved)
            self._waiting[snapshot_id] = future
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._run_round())
        async with waiting_on_others():  # up to ``spacing``: the worker serves others meanwhile
            return await asyncio.shield(future)

    async def _run_round(self) -> None:
        await asyncio.sleep(max(self._window, self._last_round + self._spacing - self._clock()))
        self._last_round = self._clock()
        self._listing = None
        batch, self._waiting = self._waiting, {}
        self._in_flight.update(batch)
        ids = list(batch)
        try:
            if self._listing_is_cheaper(len(ids)):
                ids = await self._list_account(batch)
            chunks = [
                ids[i : i + self._ids_per_call] for i in range(0, len(ids), self._ids_per_call)
            ]
            await asyncio.gather(*(self._query(chunk, batch) for chunk in chunks))
        finally:
            for sid in batch:
                self._in_flight.pop(sid, None)
        if self._waiting:
            self._round = asyncio.create_task(self._run_round())

    def _listing_is_cheaper(self, waiting: int) -> bool:
        """Whether one page of the whole account serves ``waiting`` ids better than asking by id."""
        fits = self._account_size is None or self._account_size < self._page_size
        return waiting >= min(LISTING_WAITERS, self._ids_per_call + 1) and fits

    async def _list_account(self, futures: dict[str, asyncio.Future[Snapshot | None]]) -> list[str]:
        """Answer the round from one page of the whole account; the ids it could not answer
        (the account outgrew a page) are left to ask for by id."""
        try:
            page = await self._client.list_snapshots(ListSnapshotsQuery(limit=self._page_size))
        except EVSError as exc:
            _failed(len(futures), exc)
            for future in futures.values():
                _settle(future, exc)
            return []
        self._account_size = page.count
        listed = {snap.id: snap for snap in page.snapshots}
        if page.next_offset is not None:
            for sid in listed.keys() & futures.keys():
                _settle(futures[sid], listed[sid])
            return [sid for sid in futures if sid not in listed]
        self._listing = (self._last_round, listed)
        for sid, future in futures.items():
            _settle(future, listed.get(sid))
        return []

    async def _query(
        self, chunk: list[str], futures: dict[str, asyncio.Future[Snapshot | None]]
    ) -> None:
        try:
            found: dict[str, Snapshot] = {}
            query = ListSnapshotsQuery(ids=chunk, limit=len(chunk))
            async for snap in self._client.iter_snapshots(query):
                found[snap.id] = snap
        except EVSError as exc:
            _failed(len(chunk), exc)
            for sid in chunk:
                _settle(futures[sid], exc)
            return
        for sid in chunk:
            _settle(futures[sid], found.get(sid))

    async def aclose(self) -> None:
        """Stop the pending round; every waiter, queued or in a list call, gets a retryable
        error at once instead of waiting forever on a poller that is gone."""
        self._closed = True
        pending = {**self._in_flight, **self._waiting}
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round
        for future in pending.values():
            _settle(future, _closed_error())
        self._waiting.clear()
        self._in_flight.clear()
        self._listing = None


def _failed(waiting: int, exc: EVSError) -> None:
    """One line for the call, not one per resource: the resources retry quietly until the
    failure persists (Timing.poll_failure_grace)."""
    log.warning("a batched poll of %d snapshot(s) failed: %s", waiting, exc)


def _closed_error() -> EVSConnectionError:
    return EVSConnectionError(
        "the class's EVS client was replaced (class or Secret changed); retrying", retryable=True
    )


def _retrieved(future: asyncio.Future[Snapshot | None]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Snapshot | None], outcome: Snapshot | EVSError | None) -> None:
    if future.done():
        return
    if isinstance(outcome, EVSError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
