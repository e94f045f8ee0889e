"""A ``wait=True`` call of the client returns the object its wait found Ready and raises its
kind's failure otherwise, synchronously and in asyncio alike (without a Kubernetes API: the client
reads the objects below through a subclass of its public calls)."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from cloudsnap.api.constants import READY
from cloudsnap.api.progress import STALLED
from cloudsnap.client import (
    AsyncClient,
    Client,
    Outcome,
    Restore,
    RestoreFailed,
    Snapshot,
    SnapshotFailed,
)

NAMESPACE = "shop"


def body(name: str, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    """An object as the API server serves it, with these (type, status, reason) conditions."""
    return {
        "metadata": {"namespace": NAMESPACE, "name": name, "uid": f"uid-{name}"},
        "spec": {"volumeID": "disk-1", "snapshotName": "db"},
        "status": {
            "conditions": [
                {"type": kind, "status": status, "reason": reason, "message": f"{reason} now"}
                for kind, status, reason in conditions
            ]
        },
    }


class Canned(Client):
    """A client whose objects are made and read from memory: each read serves ``served``."""

    def __init__(self, served: dict[str, Any]) -> None:
        super().__init__(kubernetes.client.ApiClient())
        self.served = served

    def create(self, namespace: str, name: str | None, **options: Any) -> Snapshot:
        return Snapshot.of(body(name or "made"))

    def get(self, namespace: str, name: str) -> Snapshot:
        return Snapshot.of(self.served)

    def create_restore(self, namespace: str, name: str | None, **options: Any) -> Restore:
        return Restore.of(body(name or "made"))

    def get_restore(self, namespace: str, name: str) -> Restore:
        return Restore.of(self.served)


READY_BODY = body("db", (READY, "True", "Created"))
STALLED_BODY = body("db", (READY, "False", "Error"), (STALLED, "True", "SnapshotNotFound"))
PENDING_BODY = body("db", (READY, "False", "Creating"))


def test_a_snapshot_found_ready_is_returned() -> None:
    snap = Canned(READY_BODY).snapshot_claim(NAMESPACE, "data-db-0", name="db", wait=True)
    assert (snap.name, snap.ready) == ("db", True)


@pytest.mark.parametrize(
    ("served", "outcome"), [(STALLED_BODY, Outcome.FAILED), (PENDING_BODY, Outcome.TIMED_OUT)]
)
def test_a_snapshot_not_ready_raises_how_its_wait_ended(
    served: dict[str, Any], outcome: Outcome
) -> None:
    client = Canned(served)
    with pytest.raises(SnapshotFailed) as failed:
        client.snapshot_claim(NAMESPACE, "data-db-0", name="db", wait=True, timeout=0)
    assert failed.value.outcome is outcome
    assert f"cloudsnapshot {NAMESPACE}/db" in str(failed.value)


@pytest.mark.parametrize(
    ("served", "outcome"), [(STALLED_BODY, Outcome.FAILED), (PENDING_BODY, Outcome.TIMED_OUT)]
)
def test_a_restore_not_ready_raises_its_failure(served: dict[str, Any], outcome: Outcome) -> None:
    with pytest.raises(RestoreFailed) as failed:
        Canned(served).restore(NAMESPACE, name="back", snapshot="db", wait=True, timeout=0)
    assert failed.value.outcome is outcome
    assert failed.value.restore.name == "db"


async def test_the_async_restore_returns_it_ready_or_raises_its_failure() -> None:
    made = await AsyncClient(Canned(READY_BODY)).restore(NAMESPACE, snapshot="db", wait=True)
    assert made.ready
    with pytest.raises(RestoreFailed) as failed:
        await AsyncClient(Canned(STALLED_BODY)).restore(
            NAMESPACE, snapshot="db", wait=True, timeout=0
        )
    assert failed.value.outcome is Outcome.FAILED
    assert "SnapshotNotFound" in str(failed.value)
