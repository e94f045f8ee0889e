"""Start a simulator inside the caller's event loop, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from evs_simulator.admin_client import AdminClient
from evs_simulator.config import SimulatorConfig, VolumeSeed
from evs_simulator.server import serve
from evs_simulator.throttle import parse_rate_limits


@dataclass(frozen=True)
class RunningSimulator:
    """Where a running simulator listens, the credentials it accepts, and its admin client."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    project_id: str
    admin: AdminClient
    config: SimulatorConfig


@asynccontextmanager
async def running_simulator(**config: Any) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator on 127.0.0.1 (a free port unless ``port`` is given) for the block.

    Keywords are ``SimulatorConfig`` fields; ``volumes`` may hold ``VolumeSeed`` objects or the
    CLI's ``ID:SIZE:STATUS`` strings, ``rate_limits`` the CLI's ``OPERATION=RATE[/BURST],...``.
    """
    volumes = config.pop("volumes", ())
    if isinstance(config.get("rate_limits"), str):
        config["rate_limits"] = parse_rate_limits(config["rate_limits"])
    settings = SimulatorConfig(
        volumes=tuple(VolumeSeed.parse(v) if isinstance(v, str) else v for v in volumes), **config
    )
    async with serve(settings) as endpoint, aclosing(AdminClient(endpoint)) as admin:
        yield RunningSimulator(
            endpoint=endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            project_id=settings.project_id,
            admin=admin,
            config=settings,
        )
