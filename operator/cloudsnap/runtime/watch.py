"""The kopf watch: the one module that imports kopf. It hands every watch event of the operator's
kinds to the controllers' listeners and runs the controllers' cleanups on shutdown.

Why ``@kopf.on.event`` and a work queue rather than kopf's create/update/delete handlers, timers
or daemons: a step must come back at times only the step knows (poll while creating, exponential
backoff, a slow drift resync, a schedule's next slot), and kopf can only re-run a changing handler
by storing its progress on the object (a write per retry) or by holding a daemon/timer task per
object (memory and wake-ups per resource). An event handler stores nothing on the object, so kopf
makes no bookkeeping writes at all; each controller's work queue keeps one small entry per
resource. Events go through the controllers' own writers too, fenced, so that a replica that lost
the Lease posts none either.

kopf's private modules: ``UnkeptMemories`` subclasses kopf's per-object memory store, which kopf
exports only as the type of ``kopf.operator``'s ``memories`` argument. pyproject pins kopf to the
minor release this was written against, and ``tests/runtime/test_watch.py`` fails on a kopf whose
store no longer takes the same arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import kopf
from kopf._cogs.structs.ephemera import AnyMemo
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

# Objects per page of kopf's initial listing (settings.watching.chunk_size).
LISTING_PAGE = 500

Listener = Callable[[str | None, Mapping[str, Any]], None]
"""Takes one watch event: its type (None for kopf's initial listing) and the object."""
Cleanup = Callable[[], Awaitable[None]]


class Controller(Protocol):
    """What the watch, the Lease and shutdown ask of every controller (structurally: the
    controllers do not import this module)."""

    def start(self) -> None:
        """Start its work (once; later calls do nothing), on kopf's loop and in the context kopf
        sets for its handlers, which the controller's tasks inherit."""
        ...

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take one watch event of its kind."""
        ...

    async def stop(self) -> None:
        """Start no step from now on and cancel those in flight (redone after a restart)."""
        ...

    def start_leading(self) -> None:
        """This replica holds the Lease: look at every resource again."""
        ...

    def stop_leading(self) -> None:
        """This replica lost (or gave up) the Lease: start nothing, cancel what runs."""
        ...


def listener(controller: Controller) -> Listener:
    """The controller as a listener: started by the first event it hears."""

    def listen(event_type: str | None, body: Mapping[str, Any]) -> None:
        controller.start()
        controller.observe(event_type, body)

    return listen


@dataclass(frozen=True)
class Route:
    """The events of one kind (group, version, plural) and who hears them, in order."""

    group: str
    version: str
    plural: str
    listeners: Sequence[Listener]


def configure(settings: kopf.OperatorSettings, *, max_workers: int) -> None:
    """kopf settings, each chosen on purpose (see the module docstring for the storage choice)."""
    settings.peering.standalone = True  # no KopfPeering objects, no RBAC for them
    # Events go through our own writers, fenced like every other write; kopf posts none, and
    # none of its log lines.
    settings.posting.enabled = False
    # Server-side watch timeout well under the client one, so idle watches are renewed cleanly.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    # The initial listing in pages: in one response, 10,000 CloudSnapshots are tens of megabytes
    # of JSON decoded at once, a peak the process keeps as resident memory after a restart.
    settings.watching.chunk_size = LISTING_PAGE
    # kopf keeps a worker, its queue and the object's last raw event (the whole object, managed
    # fields and all) per object until it has been idle this long: at start, every listed object
    # at once. Our handler only hands the event over, so a worker is cheap to start again (kopf
    # 1.45 no longer batches events, so there is no batch window to set).
    settings.queueing.idle_timeout = 0.5
    settings.execution.max_workers = max_workers


class UnkeptMemories(ResourceMemories):
    """kopf's memory of each object, made for its event and not kept.

    kopf keeps about 1 KiB per object (error throttling, daemon and index state, a memo copy)
    for features an operator of event handlers alone never uses; the controllers keep what they
    need. At 10,000 resources that was 10 MiB of resident memory.
    """

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )


def registry(routes: Sequence[Route], cleanups: Sequence[Cleanup]) -> kopf.OperatorRegistry:
    """A registry holding only these routes' event handlers and these cleanups, in order."""
    reg = kopf.OperatorRegistry()
    kopf.on.login(registry=reg)(kopf.login_via_client)
    for number, cleanup in enumerate(cleanups):
        kopf.on.cleanup(registry=reg, id=f"cleanup-{number}")(_cleanup_handler(cleanup))
    for route in routes:
        kopf.on.event(
            route.group, route.version, route.plural, registry=reg, id=f"{route.plural}-events"
        )(_event_handler(route.listeners))
    return reg


async def watch(
    routes: Sequence[Route],
    *,
    cleanups: Sequence[Cleanup],
    namespaces: Sequence[str],
    clusterwide: bool,
    max_workers: int,
    ready: asyncio.Event,
    identity: str,
) -> None:
    """Watch until SIGINT/SIGTERM; ``ready`` is set once every watch has listed its objects.

    ``identity`` is the replica's own (``--identity``): kopf would otherwise make one from the
    user's name, which a uid without a passwd entry does not have."""
    settings = kopf.OperatorSettings()
    configure(settings, max_workers=max_workers)
    await kopf.operator(
        registry=registry(routes, cleanups),
        settings=settings,
        standalone=True,
        clusterwide=clusterwide,
        namespaces=list(namespaces),
        ready_flag=ready,
        memories=UnkeptMemories(),
        identity=identity,  # type: ignore[arg-type]  # kopf types it as a private NewType of str
    )


def _event_handler(listeners: Sequence[Listener]) -> Callable[..., Awaitable[None]]:
    async def on_event(event: Mapping[str, Any], **_: Any) -> None:
        for listener in listeners:
            listener(event.get("type"), event["object"])

    return on_event


def _cleanup_handler(cleanup: Cleanup) -> Callable[..., Awaitable[None]]:
    async def on_cleanup(**_: Any) -> None:
        await cleanup()

    return on_cleanup
