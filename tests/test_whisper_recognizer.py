"""The offline engine's Whisper recognizer: it hears a call, splits it at pauses, decodes on a
bounded pool and refuses model files whose digest is not the pinned one.

Needs the `offline` extra (faster-whisper and the model packages). Without it these tests skip,
except in CI (which installs the extra), where a missing extra is a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import threading
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestServer

from relay.audio.callfile import load_call_audio
from relay.audio.dsp import PcmTranscoder
from relay.cli.simulator import CallSpec, stream_call
from relay.engines.local import Heard, SpeechBegan
from relay.engines.whisper import (
    MODELS,
    ModelIntegrityError,
    SileroVad,
    WhisperRecognizer,
    choose_recognizer,
    describe_recognizer,
    read_verified,
    whisper_unavailable,
)
from relay.errors import ConfigurationError
from relay.knowledge.base import word_error_rate, words
from relay.settings import Settings
from relay.web.app import create_app
from relay.web.state import RELAY
from tests.conftest import fresh_data_dir, wait_until
from tests.test_offline_flow import expected_answers

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample_call.wav"


def require_offline_extra(model: str = "tiny.en") -> None:
    """Fail in CI (where the extra is installed), else skip with how to get it."""
    reason = whisper_unavailable(model)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the offline extra is required in CI: {reason}")
        pytest.skip(f"Whisper recognizer unavailable: {reason}; the PocketSphinx path is still tested")


def sample_turns() -> list[str]:
    lines = (ROOT / "samples" / "sample_call.txt").read_text().splitlines()
    return [line.split("=>")[0].strip() for line in lines if "=>" in line and not line.startswith("#")]


def sample_pcm16() -> bytes:
    """The bundled call's customer track as the offline engine receives it: 16 kHz PCM16."""
    transcoder = PcmTranscoder(16000)
    return transcoder.process(load_call_audio(SAMPLE)["inbound"]) + transcoder.flush()


def utterances(vad: SileroVad, pcm: bytes, chunk: int = 640) -> tuple[list[SpeechBegan], list[bytes]]:
    """Feed `pcm` in 20 ms chunks, as the bridge does."""
    began: list[SpeechBegan] = []
    ended: list[bytes] = []
    for start in range(0, len(pcm), chunk):
        for event in vad.feed(pcm[start : start + chunk]):
            if isinstance(event, SpeechBegan):
                began.append(event)
            else:
                ended.append(event.audio)
    tail = vad.flush()
    if tail is not None:
        ended.append(tail.audio)
    return began, ended


def silence(seconds: float) -> bytes:
    return bytes(2 * int(16000 * seconds))


def trimmed(pcm: bytes) -> bytes:
    """An utterance without the quiet padding the VAD keeps around it."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 500)
    return samples[loud[0] : loud[-1] + 1].tobytes()


@pytest.fixture(scope="module")
def recognizer() -> WhisperRecognizer:
    require_offline_extra()
    return WhisperRecognizer("tiny.en")


# ---------------------------------------------------------------------------- the digest check


def test_a_file_with_the_pinned_digest_is_read(tmp_path: Path) -> None:
    one, two = tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"
    one.write_bytes(b"weights, first half|")
    two.write_bytes(b"weights, second half")
    digest = hashlib.sha256(one.read_bytes() + two.read_bytes()).hexdigest()
    assert read_verified([one, two], digest, what="test model") == b"weights, first half|weights, second half"


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(bytes(range(256)) * 16)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    tampered = bytearray(model.read_bytes())
    tampered[1000] ^= 0x01  # one bit
    model.write_bytes(bytes(tampered))
    with pytest.raises(ModelIntegrityError, match=r"test model: SHA-256 [0-9a-f]{64} is not the pinned"):
        read_verified([model], digest, what="test model")


def test_parts_in_the_wrong_order_are_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "a", tmp_path / "b"
    one.write_bytes(b"first")
    two.write_bytes(b"second")
    digest = hashlib.sha256(b"firstsecond").hexdigest()
    with pytest.raises(ModelIntegrityError):
        read_verified([two, one], digest, what="test model")


def test_every_model_pins_every_file() -> None:
    for package in MODELS.values():
        assert {f.name for f in package.files} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
        assert all(len(f.sha256) == 64 and int(f.sha256, 16) >= 0 for f in package.files)


def test_an_unknown_model_is_named() -> None:
    assert whisper_unavailable("large-v9") == "unknown Whisper model 'large-v9' (known: tiny.en, base)"


def test_the_recognizer_choice() -> None:
    assert choose_recognizer("pocketsphinx", "tiny.en") == ("pocketsphinx", "RELAY_OFFLINE_RECOGNIZER=pocketsphinx")
    # auto falls back to PocketSphinx and says why; whisper refuses to start instead.
    assert choose_recognizer("auto", "large-v9") == (
        "pocketsphinx",
        "Whisper unavailable: unknown Whisper model 'large-v9' (known: tiny.en, base)",
    )
    with pytest.raises(ConfigurationError, match="RELAY_OFFLINE_RECOGNIZER=whisper, but Whisper cannot run"):
        choose_recognizer("whisper", "large-v9")
    assert describe_recognizer("pocketsphinx", "tiny.en") == "PocketSphinx (RELAY_OFFLINE_RECOGNIZER=pocketsphinx)"


def test_with_the_extra_auto_is_whisper() -> None:
    require_offline_extra()
    assert choose_recognizer("auto", "tiny.en") == ("whisper", None)
    assert describe_recognizer("whisper", "tiny.en") == "Whisper tiny.en (Silero VAD)"


async def test_a_model_file_that_differs_from_its_pin_is_refused_at_load() -> None:
    require_offline_extra()
    recognizer = WhisperRecognizer("tiny.en")
    package = recognizer.package
    # The installed config.json, checked against another digest: what a swapped file looks like.
    files = tuple(
        dataclasses.replace(f, sha256=hashlib.sha256(b"another file").hexdigest()) if f.name == "config.json" else f
        for f in package.files
    )
    recognizer.package = dataclasses.replace(package, files=files)
    with pytest.raises(ModelIntegrityError, match=r"Whisper tiny\.en config\.json"):
        await recognizer.warm_up()
    recognizer.close()


# ---------------------------------------------------------------------------- the VAD


def test_the_sample_call_splits_into_its_turns() -> None:
    require_offline_extra()
    began, ended = utterances(SileroVad(), sample_pcm16())
    assert len(began) == len(ended) == len(sample_turns())


def test_a_pause_splits_an_utterance_and_a_short_gap_does_not() -> None:
    require_offline_extra()
    _, turns = utterances(SileroVad(), sample_pcm16())
    first, second = trimmed(turns[1]), trimmed(turns[2])
    # 1 s of silence is a pause (the VAD ends a turn after 0.6 s); 0.25 s is a breath.
    _, split = utterances(SileroVad(), silence(0.5) + first + silence(1.0) + second + silence(1.0))
    _, joined = utterances(SileroVad(), silence(0.5) + first + silence(0.25) + second + silence(1.0))
    assert len(split) == 2
    assert len(joined) == 1


def test_steady_noise_is_not_speech() -> None:
    require_offline_extra()
    rng = np.random.default_rng(3)
    hiss = np.clip(rng.normal(0, 600, 16000 * 4), -32768, 32767).astype("<i2").tobytes()  # ~-35 dBFS
    began, ended = utterances(SileroVad(), hiss)
    assert began == [] and ended == []


# ---------------------------------------------------------------------------- recognition


async def test_the_sample_call_is_heard(recognizer: WhisperRecognizer) -> None:
    _, turns = utterances(recognizer.new_vad(), sample_pcm16())
    heard = await asyncio.gather(*(recognizer.transcribe(turn) for turn in turns))
    references = sample_turns()
    errors = total = 0
    for reference, result in zip(references, heard, strict=True):
        e, n = word_error_rate(reference, result.text)
        errors, total = errors + e, total + n
        assert 0.0 < result.confidence <= 1.0
    heard_words = set(words(" ".join(h.text for h in heard)))
    assert {"thanks", "call", "ordered", "jacket", "refund", "how", "long"} <= heard_words
    # tiny.en measures 27 % on this call (bench/offline_accuracy.py); the bar leaves room.
    assert errors / total < 0.35


async def test_silence_is_heard_as_nothing(recognizer: WhisperRecognizer) -> None:
    assert (await recognizer.transcribe(silence(2.0))).text == ""


class CountingRecognizer(WhisperRecognizer):
    """Counts the decodes running at once (in the pool's threads)."""

    def __init__(self) -> None:
        super().__init__("tiny.en", max_decodes=2)
        self.running = self.most = 0
        self._count = threading.Lock()

    def _transcribe_sync(self, pcm16: bytes) -> Heard:
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super()._transcribe_sync(pcm16)
        finally:
            with self._count:
                self.running -= 1


async def test_at_most_two_decodes_run_at_once() -> None:
    require_offline_extra()
    counting = CountingRecognizer()
    await counting.warm_up()
    _, turns = utterances(counting.new_vad(), sample_pcm16())
    heard = await asyncio.gather(*(counting.transcribe(turn) for turn in turns))
    counting.close()
    assert len(heard) == len(turns) and all(h.text for h in heard)
    assert counting.most == 2


async def test_the_relay_with_whisper_hears_the_sample_call_and_answers_every_question() -> None:
    """End to end through the offline engine's seam: the relay picks Whisper by setting, hears
    the bundled call and publishes the same four grounded cards PocketSphinx gives."""
    require_offline_extra()
    settings = Settings(
        engine="local",
        offline_recognizer="whisper",
        use_uvloop=False,
        host="127.0.0.1",
        port=0,
        data_dir=fresh_data_dir(),
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        state = server.app[RELAY]
        assert state.hub is not None
        hub = state.hub
        events: list[dict[str, object]] = []

        async def listen() -> None:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.port}/console/events") as r:
                async for raw in r.content:
                    if raw.startswith(b"data: "):
                        events.append(orjson.loads(raw[6:]))

        listener = asyncio.create_task(listen())
        await wait_until(lambda: hub.subscribers == 1)
        spec = CallSpec(audio=load_call_audio(SAMPLE), pace=4.0)
        result = await stream_call(f"ws://127.0.0.1:{server.port}/media", spec)
        await wait_until(lambda: any(e.get("state") == "ended" for e in events), timeout_s=60)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    finally:
        await server.close()
    assert result.close_code == 1000
    assert [e["question"] for e in events if e["type"] == "suggestion"] == expected_answers()
    finals = [e for e in events if e["type"] == "transcript" and e["final"]]
    assert len(finals) >= 4 and all(e["speaker"] == "customer" for e in finals)
