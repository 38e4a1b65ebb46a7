"""TaskRouter events spread over two relays that share one Redis (a real server), in front of
the same fake Twilio: the balancer sends each webhook (and each Event Streams batch) to either
relay, and the end state is what one relay would reach."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from relay.taskrouter.ledger import RedisTaskLedger
from tests.conftest import RunningRelay, StartRelay, speech_like_ulaw, wait_until
from tests.fakes.media_dialer import MediaDialer
from tests.fakes.redis import RedisServer, find_redis_server
from tests.fakes.twilio_server import FakeTwilio
from tests.test_taskrouter_flow import CA, TWILIO_TOKEN, creates, event, flex_task, send, stops


@pytest.fixture
def worker_ok() -> dict[str, Any]:
    return {"contact_uri": "client:alice_40example_2Ecom", "assist": True}


async def _pair(start_relay: StartRelay, redis_url: str, **overrides: Any) -> tuple[RunningRelay, RunningRelay]:
    a = await start_relay(redis_url=redis_url, replica_id="relay-a", taskrouter_stop_grace_s=0.1, **overrides)
    b = await start_relay(redis_url=redis_url, replica_id="relay-b", taskrouter_stop_grace_s=0.1, **overrides)
    return a, b


async def _settled(*relays: RunningRelay) -> None:
    await wait_until(lambda: all(not r.state.background for r in relays), timeout_s=20)


def _running(fake: FakeTwilio) -> list[dict[str, Any]]:
    return [s for s in fake.state.media_streams.values() if s["status"] == "in-progress"]


def _stats(relay: RunningRelay) -> Any:
    assert relay.state.taskrouter is not None
    return relay.state.taskrouter.stats


async def test_a_stream_started_on_one_relay_is_stopped_by_a_wrap_up_on_the_other(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    a, b = await _pair(start_relay, redis_url)
    task = "WT" + "1" * 32
    accepted = event(fake_twilio, "reservation.accepted", task, worker="WK1", worker_attributes=worker_ok)
    assert await send(a, accepted) == 204
    assert await send(b, accepted) == 204  # the same event delivered to the other relay too
    await _settled(a, b)
    assert [call for call, _ in creates(fake_twilio)] == [CA] and len(_running(fake_twilio)) == 1
    assert _stats(b).outcomes["duplicate"] == 1

    assert await send(b, event(fake_twilio, "task.wrapup", task)) == 204
    await _settled(a, b)
    assert stops(fake_twilio) == [CA] and _running(fake_twilio) == []
    assert _stats(b).actions["stop:stopped"] == 1


async def test_an_end_on_one_relay_before_the_older_accept_on_the_other_starts_nothing(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    a, b = await _pair(start_relay, redis_url)
    task = "WT" + "2" * 32
    assert await send(b, event(fake_twilio, "task.completed", task)) == 204
    await _settled(b)
    assert await send(a, event(fake_twilio, "reservation.accepted", task, worker="WK2", worker_attributes=worker_ok))
    await _settled(a, b)
    assert creates(fake_twilio) == [] and _running(fake_twilio) == []
    assert _stats(a).outcomes["late_after_end"] == 1


async def test_an_end_on_one_relay_while_the_other_creates_the_stream_leaves_none_running(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    """The end waits on the task's shared lock while the create is in flight, then stops it."""
    fake_twilio.state.calls[CA] = "in-progress"
    fake_twilio.state.stream_create_delay_s = 0.5
    a, b = await _pair(start_relay, redis_url)
    task = "WT" + "3" * 32
    await send(a, event(fake_twilio, "reservation.accepted", task, worker="WK3", worker_attributes=worker_ok))
    await wait_until(lambda: len(creates(fake_twilio)) == 1)  # the create is in flight
    assert fake_twilio.state.media_streams == {}
    await send(b, event(fake_twilio, "task.completed", task))
    await _settled(a, b)
    assert len(fake_twilio.state.media_streams) == 1 and _running(fake_twilio) == []
    assert stops(fake_twilio) == [CA] and _stats(b).actions["stop:stopped"] == 1


async def test_without_the_lock_the_creator_finds_the_task_ended_and_stops_its_stream(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    """Relay b cannot wait for the lock (a holder that hung, or a lock that expired): it records
    the end at once. Relay a, recording its new stream, finds the task ended and stops it."""
    fake_twilio.state.calls[CA] = "in-progress"
    fake_twilio.state.stream_create_delay_s = 0.5
    a, b = await _pair(start_relay, redis_url)
    assert b.state.taskrouter is not None
    impatient = RedisTaskLedger(redis_url, lock_wait_s=0.0)
    b.state.taskrouter.ledger = impatient
    try:
        task = "WT" + "4" * 32
        await send(a, event(fake_twilio, "reservation.accepted", task, worker="WK4", worker_attributes=worker_ok))
        await wait_until(lambda: len(creates(fake_twilio)) == 1)
        await send(b, event(fake_twilio, "task.completed", task))
        await _settled(b)
        assert _stats(b).outcomes["ended_no_stream"] == 1  # it did not wait: nothing to stop yet
        await _settled(a, b)
    finally:
        await impatient.aclose()
    assert len(fake_twilio.state.media_streams) == 1 and _running(fake_twilio) == []
    assert stops(fake_twilio) == [CA]
    assert impatient.errors["lock_wait_expired"] == 1
    assert _stats(a).outcomes["ended_during_start"] == 1


async def test_a_transfer_spread_over_both_relays_keeps_the_stream_until_the_last_task_ends(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    a, b = await _pair(start_relay, redis_url)
    first, second = "WT" + "a" * 32, "WT" + "b" * 32
    await send(a, event(fake_twilio, "reservation.accepted", first, worker="WKa", worker_attributes=worker_ok))
    await _settled(a)
    await send(b, event(fake_twilio, "task.transfer-initiated", first))
    await _settled(b)
    await send(a, event(fake_twilio, "task.wrapup", first))
    await _settled(a)
    await send(b, event(fake_twilio, "reservation.accepted", second, worker="WKb", worker_attributes=worker_ok))
    await _settled(a, b)
    assert stops(fake_twilio) == [] and len(_running(fake_twilio)) == 1  # the call goes on
    await send(a, event(fake_twilio, "task.completed", second))
    await _settled(a, b)
    assert stops(fake_twilio) == [CA] and _running(fake_twilio) == []


async def test_the_wrap_up_lands_on_the_task_when_its_end_reaches_the_other_relay(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    """Twilio dials the stream to relay a; `task.wrapup` reaches relay b, which stops the stream;
    Twilio sends `stop` on a's socket and a writes the wrap-up to the task."""
    fake_twilio.state.calls[CA] = "in-progress"
    task = fake_twilio.add_task(flex_task())
    a, b = await _pair(start_relay, redis_url)
    dialer = MediaDialer(
        TWILIO_TOKEN,
        f"ws://127.0.0.1:{a.server.port}",
        f"http://127.0.0.1:{a.server.port}",
        audio=speech_like_ulaw(10.0),
    )
    fake_twilio.state.dialer = dialer
    try:
        await send(a, event(fake_twilio, "reservation.accepted", task, worker="WK9", worker_attributes=worker_ok))
        await wait_until(lambda: CA in a.state.calls, timeout_s=10)
        await send(b, event(fake_twilio, "task.wrapup", task))
        await wait_until(lambda: a.state.idle and not a.state.background and not b.state.background, timeout_s=20)
    finally:
        await dialer.aclose()
    assert stops(fake_twilio) == [CA]
    assert [s.end for s in dialer.streams.values()] == ["stopped"]
    summary = a.state.recent_summaries[-1]
    assert summary["task_sid"] == task
    assert fake_twilio.task_attributes(task)["assist_wrapup"]["call_sid"] == CA


async def test_with_redis_gone_events_are_handled_with_this_relays_view(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops after startup: no crash; the failure is logged and counted, and the relay
    handles the events as a single relay would (start, then stop on the wrap-up)."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary)
    server.start()
    try:
        fake_twilio.state.calls[CA] = "in-progress"
        relay = await start_relay(redis_url=server.url, replica_id="relay-a", taskrouter_stop_grace_s=0.1)
        server.stop()
        task = "WT" + "5" * 32
        caplog.set_level(logging.WARNING, logger="relay.taskrouter.driver")
        accepted = event(fake_twilio, "reservation.accepted", task, worker="WK5", worker_attributes=worker_ok)
        assert await send(relay, accepted) == 204
        await _settled(relay)
        assert len(_running(fake_twilio)) == 1
        assert await send(relay, accepted) == 204  # still a duplicate: this relay saw it
        assert await send(relay, event(fake_twilio, "task.wrapup", task)) == 204
        await _settled(relay)
    finally:
        server.close()
    assert _running(fake_twilio) == [] and stops(fake_twilio) == [CA]
    stats = _stats(relay)
    assert stats.outcomes["duplicate"] == 1 and stats.outcomes["error"] == 0
    assert stats.outcomes["shared_ledger_unavailable"] == 3
    assert relay.state.taskrouter is not None and sum(relay.state.taskrouter.ledger.errors.values()) >= 1
    assert any("taskrouter shared ledger unavailable" in r.getMessage() for r in caplog.records)


async def test_after_a_transfer_accepted_on_the_other_relay_the_wrap_up_goes_to_the_new_task(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    """The call's socket is on relay a; the transfer's events all reach relay b. The call's
    wrap-up follows the task that holds the call (announced by b, applied by a's bridge)."""
    fake_twilio.state.calls[CA] = "in-progress"
    first, second = fake_twilio.add_task(flex_task()), fake_twilio.add_task(flex_task())
    a, b = await _pair(start_relay, redis_url)
    dialer = MediaDialer(
        TWILIO_TOKEN,
        f"ws://127.0.0.1:{a.server.port}",
        f"http://127.0.0.1:{a.server.port}",
        audio=speech_like_ulaw(10.0),
    )
    fake_twilio.state.dialer = dialer
    try:
        await send(a, event(fake_twilio, "reservation.accepted", first, worker="WKa", worker_attributes=worker_ok))
        await wait_until(lambda: CA in a.state.calls, timeout_s=10)
        for kind, task in (("task.transfer-initiated", first), ("task.wrapup", first)):
            await send(b, event(fake_twilio, kind, task))
            await _settled(b)
        await send(b, event(fake_twilio, "reservation.accepted", second, worker="WKb", worker_attributes=worker_ok))
        await _settled(b)
        assert stops(fake_twilio) == [] and CA in a.state.calls  # the call goes on with the second worker
        await send(b, event(fake_twilio, "task.completed", second))
        await wait_until(lambda: a.state.idle and not a.state.background and not b.state.background, timeout_s=20)
    finally:
        await dialer.aclose()
    assert stops(fake_twilio) == [CA]
    assert a.state.recent_summaries[-1]["task_sid"] == second
    assert fake_twilio.task_attributes(second)["assist_wrapup"]["call_sid"] == CA
    assert "assist_wrapup" not in fake_twilio.task_attributes(first)
