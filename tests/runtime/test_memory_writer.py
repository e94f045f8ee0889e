"""The in-memory Writer the controller tests run on keeps the contract KubeWriter keeps with a
real API server (tests/e2e/test_ownership.py checks that one): a write for a gone UID is None
and never lands on a newer object of the same name, a finalizer write at a stale
resourceVersion is Conflict, and an object being deleted goes with its last finalizer."""

from __future__ import annotations

from typing import Any

import pytest

from cloudsnap.runtime.writes import Conflict, Event
from tests.fixtures.objects import MemoryObjects

NAMESPACE = "team"


class Watched(MemoryObjects):
    """The store, with the watch events it sends kept in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def watch(self, kind: str, body: dict[str, Any]) -> None:
        self.seen.append((kind, body["metadata"]["resourceVersion"]))


def created(store: MemoryObjects, uid: str) -> dict[str, Any]:
    return store.add({"metadata": {"name": "reborn", "namespace": NAMESPACE, "uid": uid}})


def read_as(name: str, uid: str, version: str = "") -> dict[str, Any]:
    """An object as a step read it: the name, UID and resourceVersion its writes name."""
    meta = {"name": name, "namespace": NAMESPACE, "uid": uid, "resourceVersion": version}
    return {"metadata": meta}


async def recreate_under_same_name(store: MemoryObjects) -> dict[str, Any]:
    """reborn written to under its first UID, deleted and created again: the new object."""
    old = created(store, "old-uid")
    written = await store.patch_status(old, {"phase": "old"})
    assert written is not None
    assert written["status"] == {"phase": "old"}
    held = await store.set_finalizers(written, ["x.io/hold"])
    assert held is not None
    assert held["metadata"]["finalizers"] == ["x.io/hold"]
    assert int(held["metadata"]["resourceVersion"]) > int(old["metadata"]["resourceVersion"])
    store.removed("reborn")
    return created(store, "new-uid")


async def test_writes_for_a_gone_uid_are_none_and_never_land_on_its_successor() -> None:
    store = MemoryObjects()
    new = await recreate_under_same_name(store)
    version = new["metadata"]["resourceVersion"]
    writes = list(store.writes)

    assert await store.patch_status(read_as("reborn", "old-uid"), {"phase": "stale"}) is None
    stale = await store.set_finalizers(read_as("reborn", "old-uid", version), ["x.io/stale"])
    assert stale is None
    assert await store.set_finalizers(read_as("gone", "old-uid", version), []) is None

    after = store.objects["reborn"]
    assert "status" not in after
    assert "finalizers" not in after["metadata"]
    assert after["metadata"]["resourceVersion"] == version  # nothing was written at all
    assert store.writes == writes
    mine = await store.patch_status(new, {"phase": "new"})
    assert mine is not None
    assert mine["status"] == {"phase": "new"}


async def test_a_finalizer_write_at_a_stale_version_is_a_conflict() -> None:
    store = MemoryObjects()
    new = await recreate_under_same_name(store)
    with pytest.raises(Conflict):
        await store.set_finalizers(read_as("reborn", "new-uid", "1"), ["x.io/late"])
    assert "finalizers" not in store.objects["reborn"]["metadata"]
    landed = await store.set_finalizers(new, ["x.io/now"])
    assert landed is not None
    assert landed["metadata"]["finalizers"] == ["x.io/now"]


async def test_every_change_is_watched_and_a_deleting_object_goes_with_its_last_finalizer() -> None:
    store = Watched()
    body = created(store, "uid-1")
    held = await store.set_finalizers(body, ["x.io/hold"])
    assert held is not None
    store.delete("reborn")
    deleting = store.objects["reborn"]
    assert deleting["metadata"]["deletionTimestamp"]
    released = await store.set_finalizers(deleting, [])
    assert released is not None
    assert released["metadata"]["finalizers"] == []
    assert "reborn" not in store.objects
    assert store.seen == [("ADDED", "1"), ("MODIFIED", "2"), ("MODIFIED", "3"), ("DELETED", "3")]
    await store.post_event(released, Event("Normal", "Released", "gone"))
    assert store.writes == [("reborn", "finalizers"), ("reborn", "finalizers")]
    assert store.events == [("reborn", Event("Normal", "Released", "gone"))]


def test_an_object_without_finalizers_is_gone_at_once_when_deleted() -> None:
    store = Watched()
    created(store, "uid-1")
    store.delete("reborn")
    assert "reborn" not in store.objects
    assert store.seen == [("ADDED", "1"), ("DELETED", "1")]
