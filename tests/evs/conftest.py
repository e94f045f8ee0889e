"""The client tests' shared fixture: the operator's EVS client of the module's ``sim``.

Each module here that asks for ``client`` defines ``sim``, the simulator with the timings its
calls need (snapshots or disks that take a moment, as EVS's do)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudsnap.evs.client import EVSClient
from evs_simulator.testing import RunningSimulator
from tests.fixtures.simulator import operator_client


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[EVSClient]:
    """The operator's client of ``sim``, with a timeout that fails a stuck call in seconds."""
    async with operator_client(sim, timeout=5.0) as evs:
        yield evs
