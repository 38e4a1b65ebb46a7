"""The per-task lock: events of one task run one at a time, in arrival order, also when a third
event arrives in the instant between the first releasing the lock and the second resuming."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from relay.settings import Settings
from relay.taskrouter.driver import DriverConfig, TaskRouterDriver
from relay.taskrouter.events import TaskEvent
from relay.taskrouter.ledger import TaskLocks
from relay.taskrouter.policy import compile_policy
from relay.twilio.stream_control import StreamControl

WS = "WS" + "4" * 32
WT = "WT" + "1" * 32


class HeldDriver(TaskRouterDriver):
    """The driver's own serialisation, with each event's work held open until the test says."""

    def __init__(self, tasks: list[asyncio.Future[Any]]) -> None:
        def spawn(coro: Coroutine[Any, Any, Any]) -> None:
            tasks.append(asyncio.ensure_future(coro))

        async def end_call(call_sid: str, reason: str) -> bool:
            return False

        super().__init__(
            DriverConfig(compile_policy("true"), compile_policy("false"), "assist_opt_out"),
            stream_control=StreamControl(None, Settings()),
            client=None,
            live_bridge=lambda call_sid: None,
            end_call=end_call,
            spawn=spawn,
        )
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: list[str] = []
        self.inside = 0
        self.most_inside = 0

    async def process(self, event: TaskEvent) -> None:
        self.entered.append(event.event_id)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await self.gates.setdefault(event.event_id, asyncio.Event()).wait()
        finally:
            self.inside -= 1


def _event(n: int, kind: str) -> TaskEvent:
    return TaskEvent(event_id=f"EV{n}", event_type=kind, workspace_sid=WS, task_sid=WT)


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("turns_before_third", range(6))
async def test_a_third_event_arriving_as_the_first_releases_never_runs_beside_the_second(
    turns_before_third: int,
) -> None:
    tasks: list[asyncio.Future[Any]] = []
    driver = HeldDriver(tasks)
    first, second, third = (
        _event(1, "reservation.accepted"),
        _event(2, "task.wrapup"),
        _event(3, "task.completed"),
    )
    for e in (first, second, third):
        driver.gates[e.event_id] = asyncio.Event()
    driver.submit([first, second])
    await _turns(3)
    assert driver.entered == ["EV1"] and driver.inside == 1  # the second waits

    driver.gates["EV1"].set()  # the first finishes: the lock goes to the second, which has not resumed yet
    await _turns(turns_before_third)
    driver.submit([third])
    await _turns(10)  # time enough for the second and (wrongly) the third to both be inside
    observed = driver.most_inside
    for gate in driver.gates.values():
        gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    assert observed == 1, "two events of one task ran at the same time"
    assert driver.entered == ["EV1", "EV2", "EV3"]  # in arrival order
    assert driver.stats.outcomes["error"] == 0


async def test_task_locks_are_forgotten_once_no_one_holds_or_waits() -> None:
    locks = TaskLocks()
    order: list[int] = []

    async def hold(n: int, key: str) -> None:
        async with locks.hold(key):
            order.append(n)
            await asyncio.sleep(0)

    await asyncio.gather(*(hold(n, "WT-a" if n % 2 else "WT-b") for n in range(6)))
    assert order == [0, 1, 2, 3, 4, 5]
    assert len(locks) == 0  # no lock left behind per task

    waiter = asyncio.ensure_future(hold(9, "WT-c"))
    async with locks.hold("WT-c"):
        await _turns(2)
        waiter.cancel()  # a waiter that gives up also leaves nothing behind
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(locks) == 0
