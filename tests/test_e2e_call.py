"""End to end over real sockets: Twilio-like caller → relay → fake Realtime + fake Sync."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from relay.cli.simulator import CallSpec, stream_call
from relay.twilio.media import CloseCode
from tests.conftest import QUESTION_ANSWER, StartRelay, qa_turns, speech_like_ulaw, tone_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer, Turn
from tests.fakes.twilio_server import FakeTwilio

PCM24K_BYTES_PER_ULAW_BYTE = 6


async def test_call_publishes_transcripts_and_suggestions_in_seq_order(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(2)
    fake_realtime.behaviour.turn_every_bytes = 48_000  # one turn per second of audio
    relay = await start_relay()
    audio = speech_like_ulaw(2.5)
    spec = CallSpec(audio={"inbound": audio}, pace=0)

    result = await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())

    assert result.close_code == CloseCode.NORMAL
    await wait_until(lambda: relay.state.idle)
    stream = f"FLEX_ASSIST_{spec.call_sid}"
    assert [name for name, _ in fake_twilio.state.stream_creates] == [stream]
    published = fake_twilio.messages_for(stream)
    assert [m["seq"] for m in published] == list(range(1, len(published) + 1))
    assert all(m["v"] == 1 and m["call_sid"] == spec.call_sid for m in published)
    kinds = [m["type"] for m in published]
    assert kinds[0] == "status" and published[0]["state"] == "started"
    assert kinds[-1] == "status" and published[-1]["state"] == "ended"
    suggestions = [m for m in published if m["type"] == "suggestion"]
    assert len(suggestions) == 2
    expected = json.loads(QUESTION_ANSWER)
    for s in suggestions:
        assert s["question"] == expected["question"] and s["answer"] == expected["answer"]
        assert json.loads(s["transcript"]) == expected  # the field the existing plugin parses
    finals = [m for m in published if m["type"] == "transcript" and m["final"]]
    assert [m["text"] for m in finals] == [t.transcript for t in qa_turns(2)]
    assert all(m["speaker"] == "customer" and "transcript" not in m for m in finals)
    # The model got every sample: 3 PCM samples (6 bytes) per μ-law byte, flushed exactly.
    assert fake_realtime.violations == []
    assert len(fake_realtime.audio()) == len(audio) * PCM24K_BYTES_PER_ULAW_BYTE


async def test_session_update_comes_first_and_is_ga_shaped(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay(transcription_model="gpt-transcribe")
    spec = CallSpec(audio={"inbound": speech_like_ulaw(0.5)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)

    session = fake_realtime.sessions[0]
    assert session.client_events[0] == "session.update"
    assert set(session.client_events[1:]) == {"input_audio_buffer.append"}
    config = session.session_config
    assert config is not None and config["type"] == "realtime"
    assert config["output_modalities"] == ["text"]
    audio_input = config["audio"]["input"]
    assert audio_input["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_input["transcription"]["model"] == "gpt-transcribe"
    assert audio_input["turn_detection"]["type"] == "server_vad"
    assert "You assist a human contact-center agent" in config["instructions"]


async def test_a_1khz_tone_arrives_as_1khz_at_24khz(start_relay: StartRelay, fake_realtime: FakeRealtimeServer) -> None:
    relay = await start_relay()
    tone = tone_ulaw(1000.0, seconds=1.0)
    spec = CallSpec(audio={"inbound": tone}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)

    pcm = np.frombuffer(fake_realtime.audio(), dtype="<i2").astype(np.float64)
    assert len(pcm) == 3 * len(tone)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak_hz = np.argmax(spectrum) * 24000 / len(pcm)
    assert abs(peak_hz - 1000.0) < 2.0
    # Nothing of substance above the telephone band: images are filtered out.
    freqs = np.fft.rfftfreq(len(pcm), 1 / 24000)
    image_db = 20 * np.log10(spectrum[freqs > 4600].max() / spectrum.max())
    assert image_db < -60


async def test_pcmu_setting_passes_mulaw_through_unchanged(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay(audio_format="pcmu")
    audio = speech_like_ulaw(1.0)
    spec = CallSpec(audio={"inbound": audio}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    assert fake_realtime.sessions[0].session_config["audio"]["input"]["format"] == {"type": "audio/pcmu"}  # type: ignore[index]
    assert fake_realtime.audio() == audio


async def test_minimal_client_with_unaligned_unpaced_payloads(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay(media_api_key="minimal-client-key-123")
    audio = speech_like_ulaw(1.3)
    spec = CallSpec(audio={"inbound": audio}, minimal=True, pace=0, frame_bytes=768)
    result = await stream_call(relay.ws_url(), spec, headers={"apikey": "minimal-client-key-123"})
    # The client never sends stop: it just closes. The relay finishes the call anyway.
    await wait_until(lambda: relay.state.idle)
    assert result.frames_sent == -(-len(audio) // 768)
    assert fake_realtime.violations == []
    assert len(fake_realtime.audio()) == len(audio) * PCM24K_BYTES_PER_ULAW_BYTE


async def test_both_tracks_each_get_their_own_session_and_speaker(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(1)
    fake_realtime.behaviour.agent_turns = [Turn("Let me check that order for you", "")]
    fake_realtime.behaviour.turn_every_bytes = 24_000
    relay = await start_relay()
    customer = tone_ulaw(1000.0, seconds=0.6)
    agent = tone_ulaw(300.0, seconds=0.6)
    spec = CallSpec(audio={"inbound": customer, "outbound": agent}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)

    by_type = {s.session_config["type"]: s for s in fake_realtime.sessions}  # type: ignore[index]
    assert set(by_type) == {"realtime", "transcription"} and fake_realtime.violations == []
    for session, tone, freq in ((by_type["realtime"], customer, 1000.0), (by_type["transcription"], agent, 300.0)):
        pcm = np.frombuffer(bytes(session.audio), dtype="<i2").astype(np.float64)
        assert len(pcm) == 3 * len(tone)  # each track its own transcoder, flushed exactly
        assert abs(np.argmax(np.abs(np.fft.rfft(pcm))) * 24000 / len(pcm) - freq) < 5.0
    assert by_type["transcription"].responses == []  # the agent's turns are never answered
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    finals = {(m["speaker"], m["text"]) for m in published if m["type"] == "transcript" and m["final"]}
    assert finals == {("customer", qa_turns(1)[0].transcript), ("agent", "Let me check that order for you")}
    assert [m["type"] for m in published].count("suggestion") == 1
    summary = relay.state.recent_summaries[-1]
    assert summary["frames_in"] == summary["frames_forwarded"] == 60
    assert summary["agent_transcription"]["connects"] == 1


async def test_agent_track_is_counted_not_assisted_when_transcription_is_off(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay(transcribe_agent=False)
    spec = CallSpec(audio={"inbound": tone_ulaw(1000.0, 0.4), "outbound": tone_ulaw(300.0, 0.4)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    summary = relay.state.recent_summaries[-1]
    assert len(fake_realtime.sessions) == 1
    assert summary["frames_dropped"] == {"track_not_assisted": 20} and summary["frames_forwarded"] == 20


async def test_a_later_stream_for_the_same_call_continues_the_seq(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    """Assist toggled off and on: the second segment must not restart `seq` at 1, or a
    browser de-duplicating by `seq` would drop it."""
    fake_realtime.behaviour.turns = qa_turns(2)
    fake_realtime.behaviour.turn_every_bytes = 24_000
    relay = await start_relay()
    first = CallSpec(audio={"inbound": speech_like_ulaw(0.8)}, pace=0)
    await stream_call(relay.ws_url(), first, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    second = CallSpec(audio={"inbound": speech_like_ulaw(0.8, seed=3)}, pace=0, call_sid=first.call_sid)
    await stream_call(relay.ws_url(), second, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle and len(relay.state.recent_summaries) == 2)
    seqs = [m["seq"] for m in fake_twilio.messages_for(f"FLEX_ASSIST_{first.call_sid}")]
    assert seqs == list(range(1, len(seqs) + 1))
    states = [m["state"] for m in fake_twilio.messages_for(f"FLEX_ASSIST_{first.call_sid}") if m["type"] == "status"]
    assert states == ["started", "ended", "started", "ended"]


async def test_a_suggestions_sources_are_resolved_against_the_knowledge(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    (tmp_path / "refunds.md").write_text("# Refund timing\n\nRefunds take five to seven business days.\n")
    answer = {
        "question": "How long does a refund take?",
        "answer": "Five to seven business days.",
        "sources": ["refunds.md#refund-timing", "made-up.md#nowhere"],
    }
    fake_realtime.behaviour.turns = [Turn(transcript="how long does a refund take", answer=json.dumps(answer))]
    fake_realtime.behaviour.turn_every_bytes = 48_000
    relay = await start_relay(knowledge_dir=tmp_path)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(1.5)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    (suggestion,) = [m for m in fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}") if m["type"] == "suggestion"]
    # Only what the knowledge holds reaches the agent; the made-up id is dropped and counted.
    assert suggestion["sources"] == [{"id": "refunds.md#refund-timing", "title": "Refund timing"}]
    assert json.loads(suggestion["transcript"]) == {"question": answer["question"], "answer": answer["answer"]}
    assert relay.state.recent_summaries[-1]["events"]["sources_unknown"] == 1


async def test_a_call_that_ends_mid_utterance_still_gets_that_turn_transcribed_and_answered(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    # The customer is still talking when the call ends: server VAD never saw the end of the
    # turn. The relay commits the buffer and asks for the answer before closing the session.
    fake_realtime.behaviour.open_turn = Turn("And one last thing, can I get a refund?", QUESTION_ANSWER)
    relay = await start_relay()
    spec = CallSpec(audio={"inbound": speech_like_ulaw(1.0)}, pace=1.0)  # real time: VAD has heard the start
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=15)

    [session] = fake_realtime.sessions
    events = session.client_events
    assert events.index("input_audio_buffer.commit") < events.index("response.create")
    assert fake_realtime.violations == []
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    finals = [m["text"] for m in published if m["type"] == "transcript" and m["final"]]
    assert finals == ["And one last thing, can I get a refund?"]
    assert [m["question"] for m in published if m["type"] == "suggestion"] == ["Can I get a refund?"]
    summary = relay.state.recent_summaries[-1]
    assert summary["turns_ended_at_close"] == 1 and summary["suggestions"] == 1


async def test_both_append_writers_put_the_same_valid_events_on_the_wire(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    """Appends written as pre-built frames below the SDK (the default) and through its
    `send_raw` reach the model as the same validated events and the same audio."""
    audio = speech_like_ulaw(1.5)
    received: dict[str, bytes] = {}
    for writer in ("frames", "sdk"):
        fake_realtime.sessions.clear()
        relay = await start_relay(append_writer=writer)
        spec = CallSpec(audio={"inbound": audio}, pace=0)
        result = await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
        assert result.close_code == CloseCode.NORMAL
        await wait_until(lambda: relay.state.idle)  # noqa: B023 - awaited inside the iteration
        (session,) = fake_realtime.sessions
        assert session.appends >= 2 and session.client_events.count("input_audio_buffer.append") == session.appends
        received[writer] = bytes(session.audio)
    assert fake_realtime.violations == []
    assert received["frames"] == received["sdk"] and len(received["frames"]) == len(audio) * 6
