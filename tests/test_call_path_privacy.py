"""The bridge's side of redaction and pauses: what the model has not heard stays out of the
recording (a lagging model link), positions stay right across a pause and bounded whatever
the model does, and a pause ends on time without media."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from relay.assist.bridge import _POSITIONS_MAX, TAKEN_OVER, BridgeConfig, CallBridge
from relay.assist.privacy import PrivacyConfig
from relay.audio.dsp import ulaw_encode
from relay.model.events import ModelEvent, SpeechStarted, SpeechStopped, TranscriptCompleted, TranscriptDelta
from relay.model.link import LinkConfig
from relay.model.session import RealtimeSession, SessionConfig
from relay.records.recorder import RATE
from relay.records.service import Records
from relay.records.sqlite import SqliteStore
from relay.twilio.media import Media, Start
from relay.web.local_hub import LocalHub
from tests.conftest import wait_until
from tests.test_model_link import ScriptedConnector, ScriptedSession

CALL = "CA" + "f" * 32
FRAME = 160  # 20 ms of μ-law
CARD_LINE = "my card number is 4111 1111 1111 1111"


class SlowSession(ScriptedSession):
    """Takes appends until `stall_after`, then waits for `go`: a model behind the call."""

    def __init__(self, stall_after: int) -> None:
        super().__init__()
        self.stall_after = stall_after
        self.go = asyncio.Event()

    async def send_audio(self, audio: bytes) -> None:
        await super().send_audio(audio)
        if len(self.audio) >= self.stall_after:
            await self.go.wait()


class GatedConnector(ScriptedConnector):
    """Connects when `connect` is set (a session still connecting at call start)."""

    def __init__(self, stall_after: int = 1 << 30) -> None:
        super().__init__()
        self.connect = asyncio.Event()
        self.stall_after = stall_after

    async def open(self, config: SessionConfig) -> RealtimeSession:
        await self.connect.wait()
        self.attempts += 1
        session = SlowSession(self.stall_after)
        self.sessions.append(session)
        return session


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[Records]:
    store = SqliteStore(str(tmp_path / "relay.db"))
    records = Records(store, audio_dir=tmp_path, retention_days=0)
    records.start()
    try:
        yield records
    finally:
        await records.close(5.0)
        await store.close()


def _bridge(
    connector: ScriptedConnector,
    records: Records | None = None,
    *,
    buffer_ms: int = 10_000,
    pause_max_s: float = 180.0,
) -> tuple[CallBridge, LocalHub]:
    hub = LocalHub()
    bridge = CallBridge(
        Start(CALL, "MZ" + "f" * 32, "AC" + "0" * 32, ("inbound",)),
        connector=connector,
        session_config=SessionConfig(instructions="", audio_format="pcmu", transcription_model="t"),
        channel=hub.open(CALL),
        config=BridgeConfig(
            audio_format="pcmu",
            append_batch_ms=100,
            # A session that never connects is not waited for long at the end.
            flush_deadline_s=0.5,
            link=LinkConfig(buffer_max_bytes=buffer_ms * 8, final_response_wait_s=0.1),
            privacy=PrivacyConfig(pause_max_s=pause_max_s),
        ),
        prompt_name="default",
        recorder=records.recorder(CALL) if records is not None else None,
    )
    return bridge, hub


def _noise(seconds: float, seed: int) -> bytes:
    return ulaw_encode(np.random.default_rng(seed).normal(0, 3000, int(RATE * seconds)))


def _feed(bridge: CallBridge, audio: bytes, start_ms: int | None) -> None:
    for i in range(0, len(audio), FRAME):
        bridge.on_media(Media("inbound", audio[i : i + FRAME], None if start_ms is None else start_ms + i // 8))


def _session(connector: ScriptedConnector) -> ScriptedSession:
    return connector.sessions[-1]


async def _say(session: ScriptedSession, *events: ModelEvent) -> None:
    """The model reports `events`; returns once the link has read them all."""
    for event in events:
        session._events.put_nowait(event)
    await wait_until(lambda: session._events.empty())
    await asyncio.sleep(0)  # the link hands the last one to the bridge as it reads it


async def _recorded(bridge: CallBridge, records: Records) -> np.ndarray:
    await bridge.finish("stop")
    samples, _ = sf.read(records.audio_path(CALL), dtype="int16")
    return np.asarray(samples)


async def test_audio_the_model_has_not_heard_is_not_written_so_a_late_speech_start_is_silenced(
    records: Records,
) -> None:
    # The session connects 8 s into the call, then is slow: it reports the utterance that
    # started at ~1 s when the call is 8 s in; the recorder must not have written it.
    connector = GatedConnector(stall_after=20)  # 2 s of appends, then it stalls
    bridge, _ = _bridge(connector, records)
    _feed(bridge, _noise(8.0, seed=1), 0)
    await asyncio.sleep(0.05)
    connector.connect.set()
    await wait_until(lambda: bool(connector.sessions) and len(_session(connector).audio) >= 20)
    session = _session(connector)
    await _say(session, SpeechStarted("item_1"), SpeechStopped("item_1"))
    await _say(session, TranscriptCompleted("item_1", CARD_LINE))
    await wait_until(lambda: len(bridge.privacy.masked) == 1)
    [span] = bridge.privacy.masked
    assert 0.5 <= span.start_s < span.end_s <= 3.0  # where the model was, not where the call is
    assert isinstance(session, SlowSession)
    session.go.set()
    samples = await _recorded(bridge, records)
    assert bridge.privacy.late_masks == 0
    assert not samples[int(span.start_s * RATE) : int(span.end_s * RATE)].any()
    after = samples[int(span.end_s * RATE) + FRAME :, 0]
    assert np.count_nonzero(after) > 0.9 * len(after)  # only the span is silenced
    assert bridge.privacy.summary()["audio_written_unheard_s"] == 0


async def test_with_a_session_that_never_connects_the_recording_lags_by_the_link_buffer_only(
    records: Records,
) -> None:
    # The link keeps 8 s and drops what is older (counted: consumed, as far as positions go),
    # so the recorder holds back what the model has not heard, about 9 s, and writes the rest.
    bridge, _ = _bridge(GatedConnector(), records, buffer_ms=8000)
    audio = bridge._audio
    assert audio is not None
    for second in range(40):
        _feed(bridge, _noise(1.0, seed=second), second * 1000)
        assert max(len(t.buf) for t in audio._tracks.values()) <= 11 * RATE
    assert max(len(t.buf) for t in audio._tracks.values()) >= 9 * RATE
    summary = await bridge.finish("stop")
    assert summary["privacy"]["audio_written_unheard_s"] == 0


async def test_the_positions_of_pushed_audio_stay_bounded_without_model_events() -> None:
    # No session ever: the link buffers, then drops the oldest; nothing calls heard().
    connector = GatedConnector()
    bridge, _ = _bridge(connector)
    pipe = bridge._pipes["inbound"]
    _feed(bridge, bytes(FRAME) * 30_000, 0)  # 10 minutes, 6,000 flushes
    assert len(pipe.positions) <= 10_000 // 100 + 2  # what the 10 s buffer holds
    # A link that consumes nothing at all (a buffer larger than the bound): capped, and the
    # model's position lags rather than leads.
    bridge2, _ = _bridge(GatedConnector(), buffer_ms=600_000)
    pipe2 = bridge2._pipes["inbound"]
    _feed(bridge2, bytes(FRAME) * 30_000, 0)
    assert len(pipe2.positions) <= _POSITIONS_MAX
    assert pipe2.heard() == 0.0
    for b in (bridge, bridge2):
        await b.finish("stop")


async def test_a_span_after_a_pause_is_placed_right_for_a_client_without_timestamps(records: Records) -> None:
    connector = ScriptedConnector()
    bridge, _ = _bridge(connector, records)
    link = bridge.link
    _feed(bridge, _noise(1.0, seed=1), None)
    assert bridge.pause()
    _feed(bridge, _noise(2.0, seed=2), None)  # paused: not heard, silence on record
    assert bridge.resume()
    _feed(bridge, _noise(1.0, seed=3), None)
    await wait_until(lambda: link.counters.forwarded_frames >= 100)
    session = _session(connector)
    await _say(session, SpeechStarted("item_1"))  # heard up to 4 s: from 3 s
    _feed(bridge, _noise(1.0, seed=4), None)
    await wait_until(lambda: link.counters.forwarded_frames >= 150)
    await _say(session, SpeechStopped("item_1"), TranscriptCompleted("item_1", CARD_LINE))
    await wait_until(lambda: len(bridge.privacy.masked) == 1)
    _feed(bridge, _noise(1.0, seed=5), None)
    [span] = bridge.privacy.masked
    assert (span.start_s, span.end_s) == (3.0, 5.25)
    samples = await _recorded(bridge, records)
    assert bridge.privacy.late_masks == 0
    assert not samples[3 * RATE : int(5.25 * RATE)].any()
    assert np.count_nonzero(samples[int(5.3 * RATE) :, 0]) > 0.9 * int(0.7 * RATE)


async def test_a_pause_ends_after_pause_max_s_without_media() -> None:
    bridge, hub = _bridge(ScriptedConnector(), pause_max_s=0.05)
    _feed(bridge, bytes(FRAME) * 50, 0)
    assert bridge.pause()
    await wait_until(lambda: not bridge.privacy.paused)  # no media after the pause
    assert bridge.privacy.pause_events["expired"] == 1
    assert [m["state"] for m in hub.history(CALL) if m["type"] == "status"][-1] == "resumed"
    await bridge.finish("stop")


async def test_a_transcription_event_ends_an_expired_pause() -> None:
    now = [1000.0]
    bridge, _ = _bridge(ScriptedConnector(), pause_max_s=60.0)
    bridge._clock = lambda: now[0]
    bridge.privacy._clock = lambda: now[0]
    assert bridge.pause()
    now[0] += 61.0  # the loop's timer is a minute away; an event comes first
    bridge.on_transcription_event(TranscriptDelta("item_1", "hello"), "agent")
    assert not bridge.privacy.paused and bridge.privacy.pause_events["expired"] == 1
    await bridge.finish("stop")


async def test_a_pause_carries_over_to_a_bridge_continuing_the_call_elsewhere() -> None:
    shared: list[str] = []  # the call's shared context, as the call directory keeps it

    def bridge(seed: list[str]) -> tuple[CallBridge, LocalHub]:
        hub = LocalHub()
        made = CallBridge(
            Start(CALL, "MZ" + "f" * 32, "AC" + "0" * 32, ("inbound",)),
            connector=ScriptedConnector(),
            session_config=SessionConfig(instructions="", audio_format="pcmu", transcription_model="t"),
            channel=hub.open(CALL),
            config=BridgeConfig(audio_format="pcmu", append_batch_ms=100, link=LinkConfig(buffer_max_bytes=80_000)),
            prompt_name="default",
            seed_context=seed,
            on_context=shared.append,
        )
        return made, hub

    first, _ = bridge([])
    first._remember("Customer: I'd like to pay my bill")
    assert first.pause()
    second, hub = bridge(list(shared))  # taken over while paused
    assert second.privacy.paused
    assert [m["state"] for m in hub.history(CALL) if m["type"] == "status"] == ["started", "paused"]
    assert second.context_for_new_session() is not None
    assert all(not line.startswith("\x00") for line in second._recent)  # no control line reaches the model
    _feed(second, bytes(FRAME) * 50, 0)
    assert second.dropped["paused"] == 50 and second.link.counters.forwarded_frames == 0
    assert second.resume()
    third, _ = bridge(list(shared))  # after the resume: not paused
    assert not third.privacy.paused
    for b in (first, second, third):
        await b.finish(TAKEN_OVER if b is not third else "stop")


async def test_a_track_the_model_has_all_of_holds_the_recording_back_no_further_than_usual(
    records: Records,
) -> None:
    # Both tracks with an agent session, but only the customer speaks (no agent frames yet):
    # the agent's pipe has nothing unheard, so only the usual lag is held back.
    hub = LocalHub()
    config = SessionConfig(instructions="", audio_format="pcmu", transcription_model="t")
    connector = ScriptedConnector()
    bridge = CallBridge(
        Start(CALL, "MZ" + "f" * 32, "AC" + "0" * 32, ("inbound", "outbound")),
        connector=connector,
        session_config=config,
        agent_session_config=SessionConfig(
            instructions="", audio_format="pcmu", transcription_model="t", transcription_only=True
        ),
        channel=hub.open(CALL),
        config=BridgeConfig(audio_format="pcmu", append_batch_ms=100, link=LinkConfig(buffer_max_bytes=80_000)),
        prompt_name="default",
        recorder=records.recorder(CALL),
    )
    audio = bridge._audio
    assert audio is not None
    for second in range(12):
        _feed(bridge, _noise(1.0, seed=second), second * 1000)
        sent = (second + 1) * 50
        await wait_until(lambda: bridge.link.counters.forwarded_frames >= sent)  # noqa: B023 (awaited here)
    _feed(bridge, bytes(FRAME) * 5, 12_000)  # a flush after the link caught up
    assert max(len(t.buf) for t in audio._tracks.values()) <= 6 * RATE
    await bridge.finish("stop")
    assert audio.unheard_written == 0
