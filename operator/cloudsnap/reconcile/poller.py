"""Batched observation of known snapshots: one list call answers many waiting resources.

Every resource that wants a fresh look at its snapshot (while it is being created or deleted, or
at the slow drift resync) asks the poller of its class. Requests arriving within one batching
window are answered together by list calls filtered by id (``id=a&id=b...``), so the number of EVS
calls grows with the number of classes and rounds, not with the number of resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cloudsnap.evs import EVSClient, EVSConnectionError, EVSError
from cloudsnap.evs.models import ListSnapshotsQuery, Snapshot

# Each id costs ~40 bytes of query string; 100 keeps the request line well under the 8 KiB that
# common servers and gateways accept.
DEFAULT_IDS_PER_CALL = 100

log = logging.getLogger(__name__)


class BatchPoller:
    """Coalesces ``refresh(id)`` calls into list calls of up to ``ids_per_call`` ids."""

    def __init__(
        self,
        client: EVSClient,
        *,
        window: float = 0.2,
        ids_per_call: int = DEFAULT_IDS_PER_CALL,
    ) -> None:
        self._client = client
        self._window = window
        self._ids_per_call = ids_per_call
        self._waiting: dict[str, asyncio.Future[Snapshot | None]] = {}
        self._in_flight: dict[str, asyncio.Future[Snapshot | None]] = {}
        self._round: asyncio.Task[None] | None = None
        self._closed = False

    async def refresh(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot as EVS sees it in the next round, or None if EVS no longer has it.

        Raises the round's EVSError when the list call for this id failed.
        """
        if self._closed:
            raise _closed_error()
        future = self._waiting.get(snapshot_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Its waiters may all be gone (their steps cancelled on losing the Lease or shutting
            # down) when the round fails: the error is theirs, not an unretrieved one to log.
            future.add_done_callback(_retrieved)
            self._waiting[snapshot_id] = future
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._run_round())
        return await asyncio.shield(future)

    async def _run_round(self) -> None:
        await asyncio.sleep(self._window)
        batch, self._waiting = self._waiting, {}
        self._in_flight.update(batch)
        ids = list(batch)
        chunks = [ids[i : i + self._ids_per_call] for i in range(0, len(ids), self._ids_per_call)]
        try:
            await asyncio.gather(*(self._query(chunk, batch) for chunk in chunks))
        finally:
            for sid in ids:
                self._in_flight.pop(sid, None)
        if self._waiting:
            self._round = asyncio.create_task(self._run_round())

    async def _query(
        self, chunk: list[str], futures: dict[str, asyncio.Future[Snapshot | None]]
    ) -> None:
        try:
            found: dict[str, Snapshot] = {}
            query = ListSnapshotsQuery(ids=chunk, limit=len(chunk))
            async for snap in self._client.iter_snapshots(query):
                found[snap.id] = snap
        except EVSError as exc:
            # One line for the call, not one per resource: the resources retry quietly until
            # the failure persists (Timing.poll_failure_grace).
            log.warning("a batched poll of %d snapshot(s) failed: %s", len(chunk), exc)
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
