"""The client tests' shared fixtures: a simulator that takes a moment as EVS does, and the
operator's EVS client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudsnap.evs.client import EVSClient
from evs_simulator.testing import RunningSimulator, running_simulator
from tests.fixtures.simulator import operator_client


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    """A simulator whose snapshots and disks stay ``creating`` (or ``deleting``) and whose
    rollbacks run for a moment, as EVS's do."""
    async with running_simulator(
        create_seconds=0.2,
        delete_seconds=0.2,
        volume_create_seconds=0.2,
        volume_delete_seconds=0.2,
        rollback_seconds=0.2,
    ) as running:
        yield running


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[EVSClient]:
    """The operator's client of ``sim``, with a timeout that fails a stuck call in seconds."""
    async with operator_client(sim, timeout=5.0) as evs:
        yield evs
