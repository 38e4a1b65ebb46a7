"""Pause and resume for payments, end to end over real sockets: `POST /calls/{CallSid}/pause`
and `/resume` by the call's agent or a supervisor; while paused no audio reaches the model, no
transcript is published, the recording is silence; RELAY_PAUSE_MAX_S ends a forgotten pause;
with several relays, the one not holding the call says which stream does."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from relay.cli.simulator import CallResult, CallSpec, stream_call
from tests.conftest import RunningRelay, StartRelay, qa_turns, speech_like_ulaw, tone_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_server import FakeTwilio

ALICE, BOB, SAM = "flex-token-alice", "flex-token-bob", "flex-token-sam"
ALICE_IDENTITY = "alice_40example_2Ecom"


@pytest.fixture(autouse=True)
def _agents(fake_twilio: FakeTwilio) -> None:
    fake_twilio.add_agent(ALICE, ALICE_IDENTITY, ["agent"])
    fake_twilio.add_agent(BOB, "bob_40example_2Ecom", ["agent"])
    fake_twilio.add_agent(SAM, "sam_40example_2Ecom", ["supervisor"])


async def post(relay: RunningRelay, call_sid: str, action: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.post(relay.http_url(f"/calls/{call_sid}/{action}"), headers=headers) as r,
    ):
        body: dict[str, Any] = await r.json()
        return r.status, body


def _frames_in(relay: RunningRelay, call_sid: str, at_least: int) -> bool:
    bridge = relay.state.live_bridge(call_sid)
    return bridge is not None and bridge.frames_in >= at_least


def _start_call(relay: RunningRelay, seconds: float, **parameters: str) -> tuple[CallSpec, asyncio.Task[CallResult]]:
    spec = CallSpec(
        audio={"inbound": speech_like_ulaw(seconds), "outbound": tone_ulaw(300.0, seconds=seconds)},
        pace=1.0,
        custom_parameters=parameters,
    )
    return spec, asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))


async def _metric(relay: RunningRelay, pattern: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(relay.http_url("/metrics")) as r:
        text = await r.text()
    match = re.search(pattern + r" ([0-9.e+]+)", text)
    return float(match.group(1)) if match else 0.0


async def test_a_paused_call_sends_no_audio_transcribes_nothing_and_records_silence(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(8)
    fake_realtime.behaviour.turn_every_bytes = 24_000  # a turn per half second of audio heard
    relay = await start_relay(record_audio=True, stream_track="both_tracks")
    spec, call = _start_call(relay, 5.0, WorkerIdentity=ALICE_IDENTITY)
    await wait_until(lambda: _frames_in(relay, spec.call_sid, 100))  # ~1 s of both tracks
    assert await post(relay, spec.call_sid, "pause", ALICE) == (200, {"result": True, "paused": True, "changed": True})
    assert (await post(relay, spec.call_sid, "pause", ALICE))[1]["changed"] is False
    paused_at = relay.state.calls[spec.call_sid].bridge.frames_in
    await wait_until(lambda: _frames_in(relay, spec.call_sid, paused_at + 150))  # ~1.5 s more
    assert await post(relay, spec.call_sid, "resume", ALICE) == (
        200,
        {"result": True, "paused": False, "changed": True},
    )
    await call
    await wait_until(lambda: relay.state.idle, timeout_s=20)
    assert relay.state.records is not None and await relay.state.records.writer.idle()

    summary = relay.state.recent_summaries[-1]
    dropped = summary["frames_dropped"]
    assert dropped["paused"] >= 150 and summary["frames_in"] == summary["frames_forwarded"] + sum(dropped.values())
    [pause] = summary["privacy"]["paused"]
    assert pause["end_s"] - pause["start_s"] >= 1.0
    # Sync: `paused`, then nothing transcribed or suggested until `resumed`.
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    states = [m.get("state") for m in published if m["type"] == "status"]
    assert states == ["started", "paused", "resumed", "ended"]
    kinds = [m["type"] if m["type"] != "status" else m["state"] for m in published]
    between = kinds[kinds.index("paused") + 1 : kinds.index("resumed")]
    assert between == []
    assert "transcript" in kinds[kinds.index("resumed") :]  # and afterwards the call goes on
    # The recording: silence on both channels over the pause, sound elsewhere.
    records = relay.state.records
    samples, rate = sf.read(io.BytesIO(records.audio_path(spec.call_sid).read_bytes()), dtype="int16")
    first, last = int((pause["start_s"] + 0.02) * rate), int(pause["end_s"] * rate)
    assert last - first >= rate and not samples[first:last].any()
    assert np.count_nonzero(samples[last + 160 :, 1]) > 0.9 * len(samples[last + 160 :])
    assert await _metric(relay, r'relay_pauses_total\{event="paused"\}') == 1
    assert await _metric(relay, r'relay_pauses_total\{event="resumed"\}') == 1
    assert await _metric(relay, r'relay_frames_dropped_total\{reason="paused"\}') == dropped["paused"]


async def test_a_pause_nobody_resumes_ends_after_pause_max_s(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    relay = await start_relay(pause_max_s=0.5)
    spec, call = _start_call(relay, 3.0, WorkerIdentity=ALICE_IDENTITY)
    await wait_until(lambda: _frames_in(relay, spec.call_sid, 50))
    assert (await post(relay, spec.call_sid, "pause", ALICE))[0] == 200
    await call
    await wait_until(lambda: relay.state.idle, timeout_s=20)
    statuses = [m for m in fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}") if m["type"] == "status"]
    assert [m["state"] for m in statuses] == ["started", "paused", "resumed", "ended"]
    assert statuses[2]["reason"] == "pause ended after 0.5 s"
    summary = relay.state.recent_summaries[-1]
    assert summary["frames_dropped"]["paused"] > 0 and summary["frames_forwarded"] > 50
    assert await _metric(relay, r'relay_pauses_total\{event="expired"\}') == 1


async def test_only_the_calls_agent_or_a_supervisor_may_pause_it(start_relay: StartRelay) -> None:
    relay = await start_relay()
    spec, call = _start_call(relay, 3.0, WorkerIdentity=ALICE_IDENTITY)
    unknown_agent, other = _start_call(relay, 3.0)  # no TaskRouter parameters: agent not known
    await wait_until(lambda: _frames_in(relay, spec.call_sid, 20) and _frames_in(relay, unknown_agent.call_sid, 20))
    assert (await post(relay, spec.call_sid, "pause", BOB))[0] == 403
    assert (await post(relay, spec.call_sid, "pause", None))[0] == 401
    assert (await post(relay, spec.call_sid, "pause", "not-a-token"))[0] == 401
    assert (await post(relay, spec.call_sid, "pause", SAM))[1]["paused"] is True  # a supervisor
    assert (await post(relay, spec.call_sid, "resume", BOB))[0] == 403
    assert (await post(relay, spec.call_sid, "resume", ALICE))[1]["paused"] is False  # the call's agent
    # Whose call it is not known (a stream started without the agent): a supervisor's only.
    assert (await post(relay, unknown_agent.call_sid, "pause", BOB))[0] == 403
    assert (await post(relay, unknown_agent.call_sid, "pause", SAM))[1]["paused"] is True
    assert (await post(relay, "CA" + "0" * 32, "pause", ALICE))[0] == 404
    assert (await post(relay, "CA bad", "pause", ALICE))[0] == 400
    await asyncio.gather(call, other)
    await wait_until(lambda: relay.state.idle, timeout_s=20)
    assert relay.state.stats.flex_auth["pause_denied"] == 3
    ended_paused = next(s for s in relay.state.recent_summaries if s["call_sid"] == unknown_agent.call_sid)
    assert len(ended_paused["privacy"]["paused"]) == 1  # a call that ends paused: its span is kept
    assert await _metric(relay, r'relay_pauses_total\{event="ended"\}') == 1


async def test_the_relay_not_holding_the_call_names_the_stream_that_does(
    start_relay: StartRelay, redis_url: str
) -> None:
    a = await start_relay(redis_url=redis_url, replica_id="relay-a")
    b = await start_relay(redis_url=redis_url, replica_id="relay-b")
    spec, call = _start_call(a, 2.0, WorkerIdentity=ALICE_IDENTITY)
    await wait_until(lambda: _frames_in(a, spec.call_sid, 20))
    status, body = await post(b, spec.call_sid, "pause", ALICE)
    assert status == 421 and body["owner_stream"] == spec.stream_sid
    assert (await post(a, spec.call_sid, "pause", ALICE))[1]["paused"] is True
    await call
    await wait_until(lambda: a.state.idle, timeout_s=20)
    assert (await post(b, spec.call_sid, "pause", ALICE))[0] == 404  # ended: owned by no relay
