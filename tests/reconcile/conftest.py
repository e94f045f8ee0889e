"""Fixtures of the reconcile tests: the real simulator plus in-memory classes and Secrets."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from cloudsnap.handlers import FINALIZER
from cloudsnap.reconcile import Accounts, Backoff, EVSConnector, Reconciler, Timing
from cloudsnap.reconcile.ratelimit import Adaptation
from evs_simulator.testing import RunningSimulator
from tests.reconcile.harness import SECRET_NAME, FakeCluster, World

# Short intervals so a test sees several steps in a fraction of a second; resync and blocked
# retries are an hour so a test that waits for them would fail, not pass slowly.
FAST = Timing(
    poll=0.05,
    resync=3600.0,
    blocked=3600.0,
    jitter=0.0,
    backoff=Backoff(base=0.01, cap=0.05),
    absence_grace=0.3,
    create_doubt=1.0,
    step_deadline=10.0,
    poll_failure_grace=2.0,
)
CLASS = "sim"
# The simulator throttles only when a test tells it to: start at its pace, not a cloud's.
UNTHROTTLED = Adaptation(initial=1000.0)


@pytest.fixture
def fake(evs_sim: RunningSimulator) -> FakeCluster:
    cluster = FakeCluster()
    cluster.add_class(CLASS, endpoint=evs_sim.endpoint, project_id=evs_sim.project_id)
    cluster.secrets[SECRET_NAME] = {
        "accessKey": evs_sim.access_key,
        "secretKey": evs_sim.secret_key,
    }
    return cluster


@pytest.fixture
async def accounts(fake: FakeCluster) -> AsyncIterator[Accounts]:
    accounts = Accounts(
        fake,
        fake,
        timeout=5.0,
        poll_window=0.02,
        poll_spacing=FAST.poll,
        adaptation=UNTHROTTLED,
    )
    yield accounts
    await accounts.aclose()


@pytest.fixture
def reconciler(accounts: Accounts, fake: FakeCluster) -> Reconciler:
    return Reconciler(
        EVSConnector(accounts),
        finalizer=FINALIZER,
        volumes=fake,
        timing=FAST,
        rng=random.Random(7),
    )


@pytest.fixture
async def world(reconciler: Reconciler) -> AsyncIterator[World]:
    async with World(reconciler) as world:
        yield world


@pytest.fixture
async def volume(evs_sim: RunningSimulator) -> str:
    """An available 10 GB disk."""
    return str((await evs_sim.admin.add_volume(size=10, status="available"))["id"])
