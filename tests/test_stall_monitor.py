"""The event-loop stall monitor: a blocked loop is recorded with what blocked it; an idle loop
records nothing; the relay runs without it unless RELAY_STALL_MONITOR_MS is set."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp

from relay.settings import Settings
from relay.web.stall_monitor import Stall, StallMonitor
from tests.conftest import TIME_SCALE, StartRelay, wait_until
from tests.fakes.tooling import scrape_metrics

TESTS = str(Path(__file__).resolve().parent) + "/"


def block_the_loop_sleeping(seconds: float) -> None:
    time.sleep(seconds)  # releases the GIL: the watchdog samples freely


def block_the_loop_spinning(cpu_seconds: float) -> None:
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:  # holds the GIL: sampled at each switch interval
        pass


def more_than(monitor: StallMonitor, seen: int) -> bool:
    return len(monitor.recent) > seen


async def stall_of(monitor: StallMonitor, block: Callable[[], None], name: str) -> Stall:
    """The stall `block()` caused, named with `name`. A loaded machine can take the CPU away
    during a block (the stall is then rightly put down to that): a few tries."""
    for _ in range(5):
        seen = len(monitor.recent)
        block()
        await wait_until(partial(more_than, monitor, seen))
        await asyncio.sleep(0.02)  # the watchdog's next turn
        named = [s for s in list(monitor.recent)[seen:] if name in s.cause]
        if named:
            return named[0]
    raise AssertionError(f"no stall named {name}: {list(monitor.recent)}")


async def test_a_blocking_call_is_recorded_with_its_function_name() -> None:
    monitor = StallMonitor(0.005, roots=(TESTS,))
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        sleeping = await stall_of(monitor, partial(block_the_loop_sleeping, 0.03), "block_the_loop_sleeping")
    finally:
        monitor.stop()
    # Asleep in a system call on the loop: blocked, and named by the function that called it.
    assert sleeping.cause == "blocked: tests/test_stall_monitor.py:block_the_loop_sleeping"
    # Lateness of the heartbeat: the block, less the part of a beat period it overlapped.
    assert sleeping.duration_s >= 0.03 - 0.002 and sleeping.samples >= 1
    assert sleeping.stack[0] == "tests/test_stall_monitor.py:block_the_loop_sleeping"
    totals = monitor.totals()
    assert sum(t.count for t in totals.values()) == len(monitor.recent)
    assert totals[sleeping.cause].seconds >= 0.028


async def test_computing_on_the_loop_is_named_by_its_code() -> None:
    monitor = StallMonitor(0.005, roots=(TESTS,))
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        spinning = await stall_of(monitor, partial(block_the_loop_spinning, 0.03), "block_the_loop_spinning")
    finally:
        monitor.stop()
    assert spinning.cause == "tests/test_stall_monitor.py:block_the_loop_spinning"
    assert spinning.loop_cpu_s >= 0.03 and spinning.samples >= 1


async def test_library_code_is_named_below_the_project_frame() -> None:
    monitor = StallMonitor(0.005, roots=(TESTS,))
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        stall = await stall_of(monitor, block_the_loop_via_the_library, "block_the_loop_via_the_library")
    finally:
        monitor.stop()
    # The innermost project frame first, then the library function that was running.
    cause = stall.cause
    assert cause == (
        "blocked: tests/test_stall_monitor.py:block_the_loop_via_the_library > threading.py:Condition.wait"
    )


def block_the_loop_via_the_library() -> None:
    threading.Event().wait(0.03)


async def test_an_idle_loop_records_no_stall() -> None:
    # The threshold leaves room for a loaded machine's scheduling; the heartbeat's own
    # period (20 ms, above the threshold) must not count as lateness.
    monitor = StallMonitor(0.015 * TIME_SCALE, beat_s=0.02)
    monitor.start()
    try:
        await asyncio.sleep(0.5)
    finally:
        monitor.stop()
    assert list(monitor.recent) == []
    assert monitor.totals() == {}


async def test_off_by_default(start_relay: StartRelay) -> None:
    assert Settings().stall_monitor_ms == 0
    relay = await start_relay()
    assert "relay-stall-monitor" not in {t.name for t in threading.enumerate()}
    async with aiohttp.ClientSession() as http:
        values = await scrape_metrics(http, relay.http_url("/metrics"))
    assert not [k for k in values if k.startswith("relay_loop_stall")]


async def test_on_it_exports_stalls_by_cause(start_relay: StartRelay) -> None:
    relay = await start_relay(stall_monitor_ms=5)
    assert "relay-stall-monitor" in {t.name for t in threading.enumerate()}
    async with aiohttp.ClientSession() as http:
        values: dict[str, float] = {}

        async def scraped() -> bool:
            values.update(await scrape_metrics(http, relay.http_url("/metrics")))
            return any("block_the_loop_sleeping" in k for k in values)

        for _ in range(5):  # a loaded machine may put one block down to the CPU taken away
            block_the_loop_sleeping(0.05)  # outside the project's folders: named by its own frame
            for _ in range(int(25 * TIME_SCALE)):
                if await scraped():
                    break
                await asyncio.sleep(0.02)
            else:
                continue
            break
    cause = 'cause="blocked: tests/test_stall_monitor.py:block_the_loop_sleeping"'
    assert values[f"relay_loop_stalls_total{{{cause}}}"] >= 1
    assert values[f"relay_loop_stall_seconds_total{{{cause}}}"] >= 0.048
    assert values[f'relay_loop_stall_duration_seconds_bucket{{{cause},le="+Inf"}}'] >= 1
