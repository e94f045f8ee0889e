"""Bind the application to a socket and tear it down cleanly, hung requests included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from evs_simulator.app import Simulator
from evs_simulator.config import SimulatorConfig


@asynccontextmanager
async def serve(config: SimulatorConfig) -> AsyncIterator[str]:
    """Listen until the block ends; yields the endpoint ``http://HOST:PORT``."""
    async with serving(Simulator(config)) as endpoint:
        yield endpoint


@asynccontextmanager
async def serving(simulator: Simulator) -> AsyncIterator[str]:
    """Serve ``simulator`` until the block ends (a test that inspects its store holds it);
    yields the endpoint ``http://HOST:PORT``."""
    config = simulator.config
    runner = web.AppRunner(
        simulator.application(),
        access_log=logging.getLogger("evs_simulator.access") if config.access_log else None,
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        simulator.stop()
        await runner.cleanup()
