"""The try-it-in-one-command flow: simulator → relay on the offline engine → local hub."""

from __future__ import annotations

import asyncio
import itertools
import wave
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestServer

from relay.audio.callfile import CallFileError, load_call_audio
from relay.cli.simulator import CallSpec, stream_call
from relay.settings import Settings
from relay.web.app import create_app
from relay.web.state import RELAY
from tests.conftest import fresh_data_dir, wait_until

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample_call.wav"


def expected_answers() -> list[str]:
    """The knowledge-base questions the sample call's script says its turns should produce."""
    lines = (ROOT / "samples" / "sample_call.txt").read_text().splitlines()
    targets = [line.split("=>")[1].strip() for line in lines if "=>" in line and not line.startswith("#")]
    return [t.split(": ", 1)[1] for t in targets if t != "none"]


def speech_onsets(path: Path, gap_s: float = 0.8) -> list[float]:
    """Where each turn of a recording starts (s): 10 ms windows 30 dB above its quietest,
    after at least `gap_s` of quiet."""
    from scipy.io import wavfile

    rate, samples = wavfile.read(path)
    window = rate // 100
    x = samples[: len(samples) // window * window].astype(np.float64).reshape(-1, window)
    level = 10 * np.log10(np.mean(x**2, axis=1) + 1e-9)
    loud = level > level.min() + 30
    onsets: list[float] = []
    quiet = int(gap_s * 100)
    for i, is_loud in enumerate(loud):
        if is_loud and quiet >= gap_s * 100:
            onsets.append(i / 100)
        quiet = 0 if is_loud else quiet + 1
    return onsets


def assert_times_are_audio_positions(record: dict[str, Any]) -> None:
    """The sample call's record places each line at its turn's onset in the audio and each
    card between its question and the next turn."""
    onsets = speech_onsets(SAMPLE)
    assert len(onsets) == 6 and abs(onsets[0] - 1.28) < 0.05  # the sample's turns (sample_call.txt)
    lines = [line["at_s"] for line in record["transcript"]]
    assert len(lines) == len(onsets)
    for at, onset in zip(lines, onsets, strict=True):
        assert abs(at - onset) <= 0.15, (lines, onsets)
    cards = [card["at_s"] for card in record["suggestions"]]
    assert len(cards) == 4
    for at, (question_at, next_turn) in zip(cards, itertools.pairwise(onsets[1:]), strict=True):
        assert question_at < at < next_turn, (cards, onsets)


@pytest.fixture
async def offline_relay() -> TestServer:
    settings = Settings(engine="local", use_uvloop=False, host="127.0.0.1", port=0, data_dir=fresh_data_dir())
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield server  # type: ignore[misc]
    await server.close()


async def test_the_sample_call_produces_the_expected_knowledge_base_answers(offline_relay: TestServer) -> None:
    audio = load_call_audio(SAMPLE)
    spec = CallSpec(audio=audio, pace=0)
    url = f"ws://127.0.0.1:{offline_relay.port}/media"
    events: list[dict[str, object]] = []

    async def listen() -> None:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{offline_relay.port}/console/events") as r:
            async for raw in r.content:
                if raw.startswith(b"data: "):
                    events.append(orjson.loads(raw[6:]))

    state = offline_relay.app[RELAY]
    assert state.hub is not None
    listener = asyncio.create_task(listen())
    await wait_until(lambda: state.hub is not None and state.hub.subscribers == 1)
    result = await stream_call(url, spec)
    # The call's last message is its `ended` status.
    await wait_until(
        lambda: any(e["call_sid"] == spec.call_sid and e.get("state") == "ended" for e in events), timeout_s=30
    )
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)

    assert result.close_code == 1000
    mine = [e for e in events if e["call_sid"] == spec.call_sid]
    suggestions = [e["question"] for e in mine if e["type"] == "suggestion"]
    assert suggestions == expected_answers()
    # Each card names the passage it came from, with the id the knowledge gives it.
    for card in (e for e in mine if e["type"] == "suggestion"):
        (source,) = card["sources"]
        assert source["title"] == card["question"] and source["id"] in state.knowledge.by_id
    finals = [e for e in mine if e["type"] == "transcript" and e["final"]]
    # How the recognizer segments speech may vary; every question was heard and transcribed.
    assert len(finals) >= len(suggestions) and all(e["speaker"] == "customer" for e in finals)
    summary = state.recent_summaries[-1]
    assert summary["frames_in"] == summary["frames_forwarded"] + sum(summary["frames_dropped"].values())
    # The offline wrap-up, before `ended`: each question the cards answered, and their topics.
    [wrapup] = [e for e in mine if e["type"] == "summary"]
    assert mine[-1]["state"] == "ended" and mine.index(wrapup) == len(mine) - 2
    assert wrapup["status"] == "ok" and wrapup["engine"] == "local"
    assert len(wrapup["questions"]) == len(suggestions) and all(q["answered"] for q in wrapup["questions"])
    assert set(wrapup["topics"]) == {pid.split(".")[0] for pid in _cited(mine)}
    assert wrapup["disposition"] in ("order_issue", "refund_or_return", "account_access")
    questions = [e for e in mine if e["type"] == "insight" and e["kind"] == "question"]
    assert {q["utterance_id"] for q in questions} <= {e["id"] for e in finals}
    assert summary["wrapup"]["status"] == "ok" and summary["insights"] == sum(e["type"] == "insight" for e in mine)
    # The history endpoint the console starts from holds the same call.
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{offline_relay.port}/console/calls") as r:
        calls = (await r.json())["calls"]
    assert [c["call_sid"] for c in calls] == [spec.call_sid]


async def test_unpaced_the_record_times_are_still_audio_positions(offline_relay: TestServer) -> None:
    # Sent as fast as the socket takes it, audio arrives many times faster than recognition
    # runs; the times stored are still where things happen in the audio.
    state = offline_relay.app[RELAY]
    spec = CallSpec(audio=load_call_audio(SAMPLE), pace=0)
    await stream_call(f"ws://127.0.0.1:{offline_relay.port}/media", spec)
    await wait_until(lambda: bool(state.recent_summaries), timeout_s=30)
    assert state.records is not None and await state.records.writer.idle()
    record = await state.records.store.get(spec.call_sid)
    assert record is not None and record["end_reason"] == "stop"
    assert_times_are_audio_positions(record)


def _cited(messages: list[dict[str, object]]) -> set[str]:
    return {str(s["id"]) for m in messages if m["type"] == "suggestion" for s in m["sources"]}  # type: ignore[attr-defined]


async def test_console_page_and_its_files_are_served(offline_relay: TestServer) -> None:
    base = f"http://127.0.0.1:{offline_relay.port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/console") as r:
            html = await r.text()
        assert r.status == 200 and 'data-mode="hub"' in html
        async with s.get(f"{base}/console/assets/console.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript" and "EventSource" in await r.text()
        async with s.get(f"{base}/console/assets/console.css") as r:
            assert r.status == 200 and r.content_type == "text/css"
        async with s.get(f"{base}/console/assets/..%2Fbundled.py") as r:
            assert r.status == 404


def _write_wav(path: Path, channels: int, rate: int, seconds: float) -> None:
    t = np.arange(int(rate * seconds)) / rate
    left = 8000 * np.sin(2 * np.pi * 500 * t)
    right = 8000 * np.sin(2 * np.pi * 1200 * t)
    data = np.stack([left, right][:channels], axis=1).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_wavs_of_any_rate_become_8khz_mulaw(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "call.wav"
    _write_wav(path, 1, rate, 1.0)
    audio = load_call_audio(path)
    assert list(audio) == ["inbound"] and abs(len(audio["inbound"]) - 8000) <= 1


def test_a_stereo_file_gives_both_tracks(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    _write_wav(path, 2, 16000, 0.5)
    audio = load_call_audio(path)
    assert list(audio) == ["inbound", "outbound"] and len(audio["inbound"]) == len(audio["outbound"]) == 4000


def _tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.25 * np.sin(2 * np.pi * 500 * t)  # quarter of full scale


def _write_24bit(path: Path, x: np.ndarray, rate: int) -> None:
    ints = np.round(x * (1 << 23)).astype("<i4")
    packed = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # little-endian: drop the top byte
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(rate)
        w.writeframes(packed)


@pytest.mark.parametrize("encoding", ["uint8", "int16", "int24", "int32", "float32", "float64"])
def test_common_wav_encodings_decode_to_the_same_audio(tmp_path: Path, encoding: str) -> None:
    from scipy.io import wavfile

    from relay.audio.dsp import ulaw_decode

    rate, x = 16000, _tone(16000, 0.5)
    path = tmp_path / f"{encoding}.wav"
    if encoding == "int24":
        _write_24bit(path, x, rate)
    elif encoding == "uint8":
        wavfile.write(path, rate, np.round(x * 127 + 128).astype(np.uint8))
    elif encoding.startswith("int"):
        bits = int(encoding[3:])
        wavfile.write(path, rate, np.round(x * (1 << (bits - 1))).astype(f"<i{bits // 8}"))
    else:
        wavfile.write(path, rate, x.astype(encoding))
    decoded = ulaw_decode(load_call_audio(path)["inbound"]).astype(np.float64)
    expected = 32768 * _tone(8000, 0.5)
    assert len(decoded) == len(expected)
    middle = slice(100, -100)  # away from the resampler's edges
    error = np.abs(decoded[middle] - expected[middle])
    # μ-law at a quarter of full scale is good to ~1%; 8-bit input adds its own step (256).
    assert float(np.sqrt(np.mean(error**2))) < (300 if encoding == "uint8" else 120), encoding


def test_not_a_wav_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"not a wav at all")
    with pytest.raises(CallFileError, match="not a PCM WAV"):
        load_call_audio(path)
