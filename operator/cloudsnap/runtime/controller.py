"""What every controller shares: a work queue of keys whose steps run only while leading.

A controller keeps the latest body of each of its objects by key and says how to step one; this
base runs the steps through its `WorkQueue`, fences each on the Lease, and answers the watch's
and the Lease's hooks (``start``, ``stop``, ``start_leading``, ``stop_leading``) the same way for
every kind.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

from cloudsnap.runtime.workqueue import WorkQueue

NOT_LEADING_RETRY_SECONDS = 1.0
"""A step that finds this replica not leading comes back this much later. Losing the Lease pauses
the queue and gaining it queues every key again, but a renewal sent just before the renew
deadline and answered just after it lets the replica act again without a new start: then only
this retry brings the key back."""


class QueuedController(abc.ABC):
    """A work queue of keys, started by the watch, paused while another replica leads."""

    def __init__(self, *, name: str, max_workers: int, may_act: Callable[[], bool]) -> None:
        self._name = name
        self._may_act = may_act
        self.queue: WorkQueue[str] = WorkQueue(self.step, concurrency=max_workers)

    def start(self) -> None:
        """Start the queue once, from the first watch event (on kopf's loop, in its context)."""
        self.queue.start(self._name)

    async def stop(self) -> None:
        """Cancel the queue and the steps in flight (redone after a restart)."""
        await self.queue.stop()

    def start_leading(self) -> None:
        """This replica now holds the Lease: forget what only the leader may know, and look at
        every object again."""
        self._gained_lease()
        for key in self._keys():
            self.queue.enqueue(key)
        self.queue.resume()

    def stop_leading(self) -> None:
        """This replica lost (or gave up) the Lease: start nothing, cancel what runs."""
        self.queue.pause()
        self._lost_lease()

    async def step(self, key: str) -> float | None:
        """One step of the object ``key``, if it is still there and this replica may act;
        seconds until the next step (None: on the next change)."""
        body = self._body(key)
        if body is None:
            return None
        if not self._may_act():
            return NOT_LEADING_RETRY_SECONDS
        return await self._step(key, body)

    @abc.abstractmethod
    def _keys(self) -> Iterable[str]:
        """The keys of every object the controller knows."""

    @abc.abstractmethod
    def _body(self, key: str) -> dict[str, Any] | None:
        """The latest body of ``key``, or None once it is gone."""

    @abc.abstractmethod
    async def _step(self, key: str, body: dict[str, Any]) -> float | None:
        """The step itself, for a replica that may act."""

    @abc.abstractmethod
    def _gained_lease(self) -> None:
        """Forget what a previous leader's steps may have made stale."""

    @abc.abstractmethod
    def _lost_lease(self) -> None:
        """Forget what only a leader keeps."""
