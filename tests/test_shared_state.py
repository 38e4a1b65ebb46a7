"""Two relays sharing one Redis (real server), each on its own port, in front of the same fake
Realtime and fake Twilio: a call moving between them keeps one model session at a time, one
Sync `seq`, its context, and its records; a stream the relay started comes back after a
stream-error callback reaches either of them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from relay.cli.simulator import CallSpec, new_sid, stream_call
from relay.twilio.media import CloseCode
from tests.conftest import (
    PUBLIC_URL,
    TIME_SCALE,
    TWILIO_TOKEN,
    RunningRelay,
    StartRelay,
    qa_turns,
    speech_like_ulaw,
    wait_until,
)
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_server import FakeTwilio


async def _pair(start_relay: StartRelay, redis_url: str, **overrides: Any) -> tuple[RunningRelay, RunningRelay]:
    a = await start_relay(redis_url=redis_url, replica_id="relay-a", **overrides)
    b = await start_relay(redis_url=redis_url, replica_id="relay-b", **overrides)
    return a, b


async def test_a_duplicate_stream_on_another_replica_takes_the_call_over(
    start_relay: StartRelay, redis_url: str, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(4)
    fake_realtime.behaviour.turn_every_bytes = 48_000  # a turn per second of audio
    a, b = await _pair(start_relay, redis_url)
    call_sid = new_sid("CA")
    path = f"/ws/{call_sid}"
    first = CallSpec(audio={"inbound": speech_like_ulaw(6.0)}, call_sid=call_sid, pace=1.0, send_stop=False)
    second = CallSpec(audio={"inbound": speech_like_ulaw(2.5, seed=2)}, call_sid=call_sid, pace=1.0)

    on_a = asyncio.create_task(stream_call(a.ws_url(path), first, headers=a.signed_headers(path)))

    def heard_a_line() -> bool:
        bridge = a.state.live_bridge(call_sid)
        return bridge is not None and bridge.transcripts >= 1

    await wait_until(heard_a_line)
    on_b = await stream_call(b.ws_url(path), second, headers=b.signed_headers(path))
    replaced = await on_a

    assert replaced.close_code == CloseCode.REPLACED and "another replica" in replaced.close_reason
    assert on_b.close_code == CloseCode.NORMAL
    await wait_until(lambda: a.state.idle and b.state.idle)
    assert a.state.stats.calls_ended["taken_over"] == 1 and b.state.stats.calls_ended["stop"] == 1
    # Never two sessions at once: the first was closed when the second call's stream took over.
    assert len(fake_realtime.sessions) == 2
    first_session, second_session = fake_realtime.sessions
    assert first_session.ws.closed
    # The new session was seeded with what the call said on the other replica.
    seeded = json.dumps(second_session.context_items)
    assert "Question number 0" in seeded
    # One Sync stream, one `seq` that only increases, one `started` and one `ended`.
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{call_sid}")
    seqs = [m["seq"] for m in published]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    states = [m["state"] for m in published if m["type"] == "status" and m["state"] in ("started", "ended")]
    assert states.count("ended") == 1 and published[-1]["state"] == "ended"
    assert fake_realtime.violations == []


async def _callback(relay: RunningRelay, call_sid: str, stream_sid: str, event: str) -> int:
    form = {
        "AccountSid": "AC" + "1" * 32,
        "CallSid": call_sid,
        "StreamSid": stream_sid,
        "StreamName": f"assist_{call_sid}",
        "StreamEvent": event,
        "StreamError": "Stream - WebSocket - Connection Broken Pipe" if event == "stream-error" else "",
        "Timestamp": "2026-12-03T18:00:00Z",
    }
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC_URL}/twilio/stream-status", form)
    async with (
        aiohttp.ClientSession() as s,
        s.post(relay.http_url("/twilio/stream-status"), data=form, headers={"X-Twilio-Signature": signature}) as r,
    ):
        return r.status


async def _restart_decided(relay: RunningRelay) -> None:
    """Wait until the relay has decided whether to restart the stream the callback it just
    answered was about (the decision runs in the background, after the 204)."""
    deciding = [t for t in relay.state.background if t.get_name() == "stream-event"]
    assert deciding, "the callback started no restart decision"
    await asyncio.wait_for(asyncio.gather(*deciding), timeout=10 * TIME_SCALE)


async def test_a_stream_the_relay_started_is_restarted_by_whichever_replica_hears_it_died(
    start_relay: StartRelay, redis_url: str, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.add_agent("flex-token-agent", "alice", ["agent"])
    call_sid = new_sid("CA")
    fake_twilio.state.calls[call_sid] = "in-progress"
    a, b = await _pair(start_relay, redis_url)
    auth = {"Authorization": "Bearer flex-token-agent"}
    async with aiohttp.ClientSession() as s:
        body = {"taskSid": "WT" + "4" * 32}
        async with s.post(a.http_url(f"/calls/{call_sid}/assist"), headers=auth, json=body) as r:
            assert r.status == 200
    created = [form for kind, _, form in fake_twilio.state.rest_calls if kind == "create"]
    dead = next(iter(fake_twilio.state.media_streams))
    fake_twilio.state.media_streams[dead]["status"] = "stopped"  # the socket broke

    fake_twilio.state.sync_delay_s = 0.3  # a slow Sync must not let "degraded" trail the restart
    assert await _callback(b, call_sid, dead, "stream-error") == 204
    await wait_until(lambda: b.state.stats.stream_callbacks["restart_started"] == 1)
    # The "degraded" status was delivered (its `seq` taken) before the stream was started
    # again: whichever relay the new stream reaches numbers its messages after it.
    statuses = [m["state"] for m in fake_twilio.messages_for(f"FLEX_ASSIST_{call_sid}") if m["type"] == "status"]
    assert statuses == ["degraded"]
    fake_twilio.state.sync_delay_s = 0.0
    restarted = [form for kind, _, form in fake_twilio.state.rest_calls if kind == "create"]
    assert len(restarted) == 2 and restarted[1] == created[0]  # same URL, name and parameters

    # The same death reported twice (error, then stopped): the name is taken, no 3rd stream.
    assert await _callback(a, call_sid, dead, "stream-stopped") == 204
    await wait_until(lambda: a.state.stats.stream_callbacks["restart_already_running"] == 1)

    # Stopped on purpose: the stream-stopped callback that follows restarts nothing.
    async with aiohttp.ClientSession() as s, s.delete(a.http_url(f"/calls/{call_sid}/assist"), headers=auth) as r:
        assert r.status == 200
    assert await _callback(b, call_sid, "MZ" + "9" * 32, "stream-stopped") == 204
    await _restart_decided(b)  # a stream-stopped waits a second before deciding
    assert len([1 for kind, _, _ in fake_twilio.state.rest_calls if kind == "create"]) == 3
    assert sum(v for k, v in b.state.stats.stream_callbacks.items() if k.startswith("restart_")) == 1


async def test_without_redis_a_replica_knows_only_its_own_streams(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    """One process behaves as before: another process never restarts what it did not start."""
    fake_twilio.add_agent("flex-token-agent", "alice", ["agent"])
    call_sid = new_sid("CA")
    fake_twilio.state.calls[call_sid] = "in-progress"
    a = await start_relay()
    b = await start_relay()
    async with aiohttp.ClientSession() as s:
        auth = {"Authorization": "Bearer flex-token-agent"}
        async with s.post(a.http_url(f"/calls/{call_sid}/assist"), headers=auth) as r:
            assert r.status == 200
    dead = next(iter(fake_twilio.state.media_streams))
    fake_twilio.state.media_streams[dead]["status"] = "stopped"
    assert await _callback(b, call_sid, dead, "stream-error") == 204
    await _restart_decided(b)
    assert len([1 for kind, _, _ in fake_twilio.state.rest_calls if kind == "create"]) == 1
    assert await _callback(a, call_sid, dead, "stream-error") == 204  # the one that started it
    await wait_until(lambda: a.state.stats.stream_callbacks["restart_started"] == 1)


async def test_a_call_continued_on_another_replica_keeps_every_line_of_its_record(
    start_relay: StartRelay, redis_url: str, fake_realtime: FakeRealtimeServer, postgres: Any
) -> None:
    """Rows are keyed (call_sid, n): the second part's rows are numbered past the first's, so
    none collides with (and is silently dropped for) an earlier row."""
    fake_realtime.behaviour.turns = qa_turns(6)
    fake_realtime.behaviour.turn_every_bytes = 48_000
    database = postgres.create_database("shared_" + new_sid("x")[1:12].lower())
    a, b = await _pair(start_relay, redis_url, database_url=database)
    call_sid = new_sid("CA")
    path = f"/ws/{call_sid}"
    first = CallSpec(audio={"inbound": speech_like_ulaw(2.5)}, call_sid=call_sid, pace=0, send_stop=False)
    await stream_call(a.ws_url(path), first, headers=a.signed_headers(path), linger_s=1.0)
    second = CallSpec(audio={"inbound": speech_like_ulaw(2.5, seed=2)}, call_sid=call_sid, pace=0)
    await stream_call(b.ws_url(path), second, headers=b.signed_headers(path), linger_s=1.0)
    await wait_until(lambda: a.state.idle and b.state.idle)
    assert b.state.records is not None

    async def lines() -> list[str]:
        assert b.state.records is not None
        record = await b.state.records.store.get(call_sid)
        return [line["text"] for line in record["transcript"]] if record else []

    assert a.state.records is not None and await a.state.records.writer.idle()
    assert await b.state.records.writer.idle()
    said = [t.transcript for t in qa_turns(6)]
    got = await lines()
    assert got[:2] == said[:2] and got[2:4] == said[:2], got  # each part heard turns 0 and 1
