"""The base every controller runs its steps on: fenced by the Lease, paused while not leading."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cloudsnap.runtime.controller import NOT_LEADING_RETRY_SECONDS, QueuedController
from tests.waiting import eventually


class Recorder(QueuedController):
    """Steps that record the keys they ran, and the Lease hooks they heard."""

    def __init__(self) -> None:
        self.leading = True
        super().__init__(name="test", max_workers=2, may_act=lambda: self.leading)
        self.bodies: dict[str, dict[str, Any]] = {}
        self.stepped: list[str] = []
        self.heard: list[str] = []

    def _keys(self) -> Iterable[str]:
        return self.bodies

    def _body(self, key: str) -> dict[str, Any] | None:
        return self.bodies.get(key)

    async def _step(self, key: str, body: dict[str, Any]) -> float | None:
        self.stepped.append(key)
        return 5.0

    def _gained_lease(self) -> None:
        self.heard.append("gained")

    def _lost_lease(self) -> None:
        self.heard.append("lost")


async def test_a_step_runs_only_for_a_known_key_while_leading() -> None:
    controller = Recorder()
    controller.bodies["a"] = {}
    assert await controller.step("gone") is None
    controller.leading = False
    assert await controller.step("a") == NOT_LEADING_RETRY_SECONDS
    assert controller.stepped == []
    controller.leading = True
    assert await controller.step("a") == 5.0
    assert controller.stepped == ["a"]


async def test_losing_the_lease_pauses_and_gaining_it_steps_every_key_again() -> None:
    controller = Recorder()
    controller.bodies.update({"a": {}, "b": {}})
    controller.start()
    try:
        controller.stop_leading()
        assert controller.heard == ["lost"]
        controller.start_leading()
        await eventually(lambda: sorted(controller.stepped) == ["a", "b"], timeout=5)
        assert controller.heard == ["lost", "gained"]
    finally:
        await controller.stop()
