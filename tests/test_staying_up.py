"""Chaos: refused connects, drops, stalls, expiry, rollover, error codes; drain; metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest

from relay.cli.simulator import CallSpec, sign_upgrade, stream_call
from tests.conftest import (
    OPENAI_KEY,
    PUBLIC_URL,
    TIME_SCALE,
    TWILIO_TOKEN,
    RunningRelay,
    StartRelay,
    coverage,
    expected_pcm,
    fresh_data_dir,
    qa_turns,
    speech_like_ulaw,
    wait_until,
)
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.tooling import free_port, scrape_metrics
from tests.fakes.twilio_server import FakeTwilio


async def _run_call(relay: RunningRelay, seconds: float, pace: float, seed: int = 5) -> tuple[bytes, dict]:  # type: ignore[type-arg]
    audio = speech_like_ulaw(seconds, seed=seed)
    spec = CallSpec(audio={"inbound": audio}, pace=pace)
    result = await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    assert result.close_code == 1000
    await wait_until(lambda: relay.state.idle, timeout_s=30)
    summary = relay.state.recent_summaries[-1]
    # Every frame received is forwarded or counted as dropped with a reason.
    assert summary["frames_in"] == summary["frames_forwarded"] + sum(summary["frames_dropped"].values())
    return audio, summary


def _lost(audio: bytes, fake: FakeRealtimeServer) -> tuple[int, int]:
    """(bytes of the call's audio no session heard, bytes heard twice) across all sessions."""
    return coverage(expected_pcm(audio), [bytes(s.audio) for s in fake.sessions])


def _report(name: str, lost: int, duplicated: int, summary: dict) -> None:  # type: ignore[type-arg]
    print(
        f"\n[chaos] {name}: lost {lost} B, re-sent {duplicated} B, connects {summary['model_connects']}, "
        f"reconnects {summary['model_reconnects']}, rollovers {summary['model_rollovers']}"
    )


def _statuses(fake_twilio: FakeTwilio, call_sid: str) -> list[str]:
    return [m["state"] for m in fake_twilio.messages_for(f"FLEX_ASSIST_{call_sid}") if m["type"] == "status"]


async def test_refused_connects_are_retried_while_audio_waits(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.refuse_connects = 3
    relay = await start_relay()
    audio, summary = await _run_call(relay, 1.5, pace=3.0)
    lost, duplicated = _lost(audio, fake_realtime)
    _report("refused connects x3", lost, duplicated, summary)
    assert lost == 0 and len(fake_realtime.sessions) == 1
    assert fake_realtime.refused == 3
    call = summary["call_sid"]
    assert _statuses(fake_twilio, call) == ["started", "degraded", "recovered", "ended"]
    # The agent's status and the summary say which host failed and how.
    host = fake_realtime.base_url.split("//", 1)[1].split("/", 1)[0]
    (degraded,) = [m for m in fake_twilio.messages_for(f"FLEX_ASSIST_{call}") if m.get("state") == "degraded"]
    assert degraded["reason"] == f"model_unavailable: {host}: connect refused with HTTP 503"
    assert summary["model_errors"] == {f"connect:{host}: connect refused with HTTP 503": 3}


async def test_an_unreachable_model_host_is_named_in_the_status(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    port = free_port()  # nothing listens on it
    relay = await start_relay(openai_base_url=f"http://127.0.0.1:{port}/v1", reconnect_max_attempts=1)
    _, summary = await _run_call(relay, 0.5, pace=3.0)
    reasons = [
        m["reason"] for m in fake_twilio.messages_for(f"FLEX_ASSIST_{summary['call_sid']}") if m["type"] == "status"
    ]
    assert f"model_unavailable: 127.0.0.1:{port}: connection refused" in reasons


async def test_dropped_connections_reconnect_reconfigure_reseed_and_lose_nothing(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    behaviour = fake_realtime.behaviour
    behaviour.turns = qa_turns(4)
    behaviour.turn_every_bytes = 24_000
    behaviour.drop_after_appends = [6, 8]  # session 0 drops after 6 appends, session 1 after 8
    relay = await start_relay()
    audio, summary = await _run_call(relay, 3.0, pace=3.0)
    sessions = fake_realtime.sessions
    lost, duplicated = _lost(audio, fake_realtime)
    _report("drops after 6 and 8 appends", lost, duplicated, summary)
    assert len(sessions) == 3 and summary["model_reconnects"] == 2
    assert lost == 0
    assert fake_realtime.violations == []
    for session in sessions:  # each new session is configured before any audio
        assert session.client_events[0] == "session.update" and session.configured
    reseeded = [item["content"][0]["text"] for s in sessions[1:] for item in s.context_items]
    assert any("Customer: Question number 0" in text for text in reseeded)


async def test_a_stalled_model_never_stalls_the_twilio_side(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    fake_realtime.behaviour.stall_after_appends = 3
    fake_realtime.behaviour.stall_seconds = 1.2
    relay = await start_relay()
    audio = speech_like_ulaw(2.5, seed=8)
    spec = CallSpec(audio={"inbound": audio}, pace=2.0, record_send_times=True)
    task = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))
    await wait_until(lambda: bool(relay.state.calls))
    await wait_until(lambda: bool(fake_realtime.sessions) and fake_realtime.sessions[0].appends >= 3)
    bridge = next(iter(relay.state.calls.values())).bridge
    before, appends_before = bridge.frames_in, fake_realtime.sessions[0].appends
    # The model reads nothing for 1.2 s; 40 frames take 0.4 s at this pace. They must be
    # read while it is stalled: the model's count has not moved when they are in.
    await wait_until(lambda: bridge.frames_in - before >= 40)
    assert fake_realtime.sessions[0].appends == appends_before
    result = await task
    await wait_until(lambda: relay.state.idle, timeout_s=30)
    summary = relay.state.recent_summaries[-1]
    lost, duplicated = _lost(audio, fake_realtime)
    _report("stall 1.2 s", lost, duplicated, summary)
    assert result.close_code == 1000 and lost == 0
    gaps = [b - a for a, b in zip(result.send_times, result.send_times[1:], strict=False)]
    assert max(gaps) < 0.2 * TIME_SCALE  # the caller was never held up


MALFORMED_EVENTS: list[dict[str, object]] = [
    {"type": "response.created", "response": "resp_x"},
    {"type": "response.done", "response": ["resp_x"]},
    {"type": "error", "error": "boom"},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": 7, "transcript": {"t": 1}},
    {"type": "session.updated", "session": 42},
    {"type": "conversation.item.added", "item": "x"},  # a field the relay does not read
    {"type": "conversation.item.input_audio_transcription.delta", "item_id": "i", "delta": "d", "usage": "x"},
]


async def test_malformed_server_events_mid_call_are_counted_and_the_session_carries_on(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    fake_realtime.behaviour.turns = qa_turns(2)
    fake_realtime.behaviour.turn_every_bytes = 36_000
    relay = await start_relay()
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0, seed=9)}, pace=2.0)
    task = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))
    await wait_until(lambda: bool(fake_realtime.sessions) and fake_realtime.sessions[0].appends >= 2)
    for event in MALFORMED_EVENTS:
        await fake_realtime.send_unchecked(fake_realtime.sessions[0], dict(event))
    result = await task
    await wait_until(lambda: relay.state.idle, timeout_s=30)
    summary = relay.state.recent_summaries[-1]
    assert result.close_code == 1000
    assert len(fake_realtime.sessions) == 1 and summary["model_reconnects"] == 0  # the reader lived on
    assert summary["model_errors"] == {"malformed_event": 5}
    assert summary["suggestions"] == 2  # both turns after the bad events were answered


async def test_an_expired_session_is_replaced_without_loss(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    fake_realtime.behaviour.expire_after_s = 0.8
    relay = await start_relay()
    audio, summary = await _run_call(relay, 3.0, pace=1.5)
    lost, duplicated = _lost(audio, fake_realtime)
    _report("session_expired every 0.8 s", lost, duplicated, summary)
    assert len(fake_realtime.sessions) >= 2 and lost == 0
    assert summary["model_errors"].get("session_expired", 0) >= 1


async def test_rollover_at_a_turn_boundary_loses_nothing_and_duplicates_nothing(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    behaviour = fake_realtime.behaviour
    behaviour.turns = qa_turns(3)
    behaviour.repeat_turns = True
    behaviour.turn_every_bytes = 24_000  # a turn boundary every 0.5 s of audio
    relay = await start_relay(session_max_age_s=0.7)
    audio, summary = await _run_call(relay, 3.0, pace=1.5)
    sessions = fake_realtime.sessions
    lost, duplicated = _lost(audio, fake_realtime)
    _report("rollover every 0.7 s", lost, duplicated, summary)
    assert summary["model_rollovers"] >= 1 and summary["model_reconnects"] == 0
    assert lost == 0 and duplicated == 0
    suggestions = [
        m for m in fake_twilio.messages_for(f"FLEX_ASSIST_{summary['call_sid']}") if m["type"] == "suggestion"
    ]
    ids = [m["id"] for m in suggestions]
    assert len(ids) == len(set(ids)) == sum(len(s.responses) for s in sessions)


@pytest.mark.parametrize(
    ("error_type", "code", "sessions", "assisted"),
    [
        ("server_error", "server_error", 2, True),  # retryable: reconnect
        ("invalid_request_error", "conversation_already_has_active_response", 1, True),  # ignorable
        ("invalid_request_error", "input_audio_buffer_commit_empty", 1, True),  # ignorable
        ("invalid_request_error", "invalid_api_key", 1, False),  # fatal for the call
    ],
)
async def test_server_errors_are_classified(
    start_relay: StartRelay,
    fake_realtime: FakeRealtimeServer,
    fake_twilio: FakeTwilio,
    error_type: str,
    code: str,
    sessions: int,
    assisted: bool,
) -> None:
    fake_realtime.behaviour.errors_on_connect = [(error_type, code)]
    relay = await start_relay()
    if code == "server_error":
        # Only the first session errors; the fake applies the script to every session, so
        # clear it once the first has been served.
        async def clear() -> None:
            await wait_until(lambda: len(fake_realtime.sessions) >= 1)
            fake_realtime.behaviour.errors_on_connect = []

        clearing = asyncio.create_task(clear())
    audio, summary = await _run_call(relay, 1.0, pace=3.0)
    if code == "server_error":
        await clearing
    assert len(fake_realtime.sessions) == sessions
    statuses = _statuses(fake_twilio, summary["call_sid"])
    if assisted:
        lost, _ = _lost(audio, fake_realtime)
        assert lost == 0 and summary["assist_failed"] is None
    else:
        assert summary["assist_failed"] and "degraded" in statuses
        assert summary["frames_dropped"].get("assist_unavailable", 0) > 0


async def test_a_slow_session_setup_times_out_and_is_retried(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    fake_realtime.behaviour.delay_session_updated_s = 1.0
    fake_realtime.behaviour.slow_sessions = 1
    relay = await start_relay(realtime_connect_timeout_s=0.3)
    audio, summary = await _run_call(relay, 1.5, pace=3.0)
    lost, _ = _lost(audio, fake_realtime)
    assert summary["model_connects"] == 1 and lost == 0
    assert len(fake_realtime.sessions) == 2


async def test_a_sender_that_fell_behind_catches_up_in_fewer_appends_without_changing_the_audio(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    # The session takes 0.6 s to be ready while the caller streams at real-time pace:
    # ~6 batches queue, then go out as one append (at most 1 s of audio each).
    fake_realtime.behaviour.delay_session_updated_s = 0.6
    relay = await start_relay()
    audio, summary = await _run_call(relay, 2.0, pace=1.0)
    lost, duplicated = _lost(audio, fake_realtime)
    assert lost == 0 and duplicated == 0
    (session,) = fake_realtime.sessions
    assert bytes(session.audio) == expected_pcm(audio)  # byte for byte, in order
    assert summary["appends_merged"] >= 1
    batches = 20  # 2 s of 100 ms batches
    assert summary["appends"] < batches
    largest = max(size for _, size in session.append_times)
    assert 4 * 4800 <= largest <= 48_000  # several batches joined, never more than 1 s


async def test_buffer_overflow_drops_oldest_audio_and_counts_it(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    fake_realtime.behaviour.refuse_connects = 1000  # the model never comes
    relay = await start_relay(audio_buffer_max_ms=300, reconnect_max_attempts=2)
    _, summary = await _run_call(relay, 1.0, pace=0)
    dropped = summary["frames_dropped"]
    # 1 s of audio arrives at once into a 300 ms buffer while no session exists: at least the
    # oldest 700 ms (35 of 50 frames) are evicted as they arrive (what stays fits the bound;
    # the resampler's delay makes batch sizes differ by a few samples), never all of it.
    assert 35 <= dropped["buffer_overflow"] < 50
    assert summary["frames_forwarded"] == 0 and sum(dropped.values()) == summary["frames_in"] == 50


# ------------------------------------------------------------------ metrics


async def test_metrics_move_as_the_call_does(start_relay: StartRelay, fake_realtime: FakeRealtimeServer) -> None:
    fake_realtime.behaviour.turns = qa_turns(2)
    fake_realtime.behaviour.turn_every_bytes = 24_000
    relay = await start_relay()

    async def scrape() -> dict[str, float]:
        async with aiohttp.ClientSession() as session:
            return await scrape_metrics(session, relay.http_url("/metrics"))

    before = await scrape()
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0)}, pace=2.0)
    task = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))
    await wait_until(lambda: bool(relay.state.calls))
    bridge = next(iter(relay.state.calls.values())).bridge
    await wait_until(lambda: bridge.frames_in >= 20)  # well into the call (100 frames)
    during = await scrape()
    await task
    await wait_until(lambda: relay.state.idle)
    after = await scrape()

    assert before["relay_active_calls"] == 0 and during["relay_active_calls"] == 1 and after["relay_active_calls"] == 0
    assert 0 < during["relay_frames_in_total"] < after["relay_frames_in_total"] == 100
    assert after["relay_frames_forwarded_total"] == 100
    assert after["relay_realtime_connects_total"] == 1
    assert after["relay_suggestions_total"] == 2 and after["relay_transcripts_total"] == 2
    assert after["relay_sync_published_total"] > during.get("relay_sync_published_total", 0)
    assert after['relay_calls_ended_total{reason="stop"}'] == 1
    assert after["relay_suggestion_latency_seconds_count"] == 2
    assert after["relay_event_loop_lag_seconds_count"] > 0
    # Every 100 ms batch was sent as it arrived: the newest audio's send delay is recorded,
    # and on an idle loopback it is far below one batch.
    send_p50 = after['relay_audio_send_delay_recent_seconds{quantile="0.5"}']
    send_max = after['relay_audio_send_delay_recent_seconds{quantile="1.0"}']
    assert 0 < send_p50 <= send_max < 0.1 * TIME_SCALE


# ------------------------------------------------------------------ drain


async def test_sigterm_drains_a_real_server_process(fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fake_realtime.base_url,
        "TWILIO_ACCOUNT_SID": fake_twilio.state.account_sid,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "TWILIO_SYNC_SERVICE_SID": fake_twilio.state.sync_service_sid,
        "TWILIO_SYNC_BASE_URL": fake_twilio.base_url,
        "TWILIO_API_BASE_URL": fake_twilio.base_url,
        "TWILIO_IAM_BASE_URL": fake_twilio.base_url,
        "RELAY_PUBLIC_URL": PUBLIC_URL,
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_DRAIN_DEADLINE_S": "10",
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_DATA_DIR": str(fresh_data_dir()),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli.main", "serve", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            headers = {"X-Twilio-Signature": sign_upgrade(TWILIO_TOKEN, "wss://relay.example.test/media")}
            spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0)}, pace=1.0)
            call = asyncio.create_task(stream_call(f"ws://127.0.0.1:{port}/media", spec, headers=headers))
            stream = f"FLEX_ASSIST_{spec.call_sid}"
            await wait_until(lambda: any(m.get("state") == "started" for m in fake_twilio.messages_for(stream)))
            proc.send_signal(signal.SIGTERM)

            async def ready_status() -> int:
                async with session.get(f"{base}/readyz") as r:
                    return r.status

            while await ready_status() != 503:  # readiness flips on the loop's next turn
                assert not call.done(), "readiness must turn 503 while the call still runs"
                await asyncio.sleep(0.01)
            try:
                async with session.ws_connect(f"ws://127.0.0.1:{port}/media", headers=headers):
                    raise AssertionError("a new stream was accepted while draining")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503
            result = await call  # the running call finishes normally (1000, not the deadline's 1001)
            assert result.close_code == 1000
        code = await asyncio.wait_for(proc.wait(), timeout=15 * TIME_SCALE)
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    sync = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    assert sync[-1]["type"] == "status" and sync[-1]["state"] == "ended"


async def test_calls_past_the_drain_deadline_close_with_1001_and_a_status(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    from relay.web.app import drain

    relay = await start_relay()
    spec = CallSpec(audio={"inbound": speech_like_ulaw(5.0)}, pace=1.0)
    call = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))
    await wait_until(lambda: bool(relay.state.calls))
    await drain(relay.state, deadline_s=0.3)
    result = await call
    assert result.close_code == 1001
    messages = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    assert (messages[-1]["state"], messages[-1]["reason"]) == ("ended", "server_shutdown")
