"""The kopf watch: no memory kept per object, and the kopf internals it relies on still there."""

from __future__ import annotations

import inspect

import kopf
from kopf._core.reactor.inventory import ResourceMemories

from cloudsnap.runtime.watch import UnkeptMemories


async def test_kopf_keeps_no_memory_per_object() -> None:
    """Each event gets a fresh kopf memory holding our memo; none is kept after it."""
    memories = UnkeptMemories()
    memo = kopf.Memo(controller=object())
    for uid in ("a", "b", "a"):
        body = {"metadata": {"uid": uid, "name": uid, "namespace": "default"}}
        memory = await memories.recall(body, memobase=memo, noticed_by_listing=True)  # type: ignore[arg-type]
        assert memory.memo.controller is memo.controller
    assert list(memories.iter_all_memories()) == []


def test_kopf_memory_store_takes_what_unkept_memories_passes() -> None:
    """UnkeptMemories overrides a private kopf method: a kopf release that renames or reshapes it
    fails here, not in a running operator (pyproject pins kopf's minor release for this)."""
    parameters = inspect.signature(ResourceMemories.recall).parameters
    assert list(parameters) == ["self", "raw_body", "memobase", "noticed_by_listing", "ephemeral"]
    assert all(
        parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        for name in ("memobase", "noticed_by_listing", "ephemeral")
    )
