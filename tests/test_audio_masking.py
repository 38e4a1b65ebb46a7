"""The recorder's side of redaction: spans silenced before they are written (audio held back
while an utterance's final is due), bounded memory, and silence for a paused call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import soundfile as sf

from relay.audio.dsp import ulaw_encode
from relay.records.recorder import RATE, AudioRecorder
from relay.twilio.media import Media


def _feed(recorder: AudioRecorder, audio: bytes, start_ms: int = 0, *, silent: bool = False) -> None:
    for i in range(0, len(audio), 160):
        for track in ("inbound", "outbound"):
            recorder.add(Media(track, audio[i : i + 160], start_ms + i // 8), silent=silent)


def _noise(seconds: float, seed: int = 1) -> bytes:
    return ulaw_encode(np.random.default_rng(seed).normal(0, 3000, int(RATE * seconds)))


def _unwritten(recorder: AudioRecorder) -> int:
    return max(len(t.buf) for t in recorder._tracks.values())


def test_an_utterance_held_until_its_final_is_silenced_before_it_is_written(tmp_path: Path) -> None:
    recorder = AudioRecorder(tmp_path / "call.flac")
    recorder.hold_back(min_lag_s=1.0, max_hold_s=20.0)
    _feed(recorder, _noise(3.0))
    recorder.hold("customer:item_1", 2.0)  # speech started at 2 s
    _feed(recorder, _noise(7.0, seed=2), start_ms=3000)  # its final takes 7 s to come
    recorder.written()
    assert _unwritten(recorder) >= 8 * RATE  # held from 2 s on, nothing from there written yet
    assert recorder.mask(2.0, 4.5)
    recorder.release("customer:item_1")
    _feed(recorder, _noise(2.0, seed=3), start_ms=10_000)
    assert _unwritten(recorder) < 3 * RATE  # released: written up to the lag and a block
    path = asyncio.run(recorder.close())
    assert path is not None and recorder.late_masks == 0
    samples, _ = sf.read(path, dtype="int16")
    assert len(samples) == 12 * RATE
    assert not samples[2 * RATE : int(4.5 * RATE)].any()
    assert (
        np.count_nonzero(samples[: 2 * RATE]) > 0.9 * 4 * RATE and samples[int(4.5 * RATE) :].all(axis=1).mean() > 0.9
    )


def test_the_hold_is_bounded_and_a_span_past_it_is_counted_late(tmp_path: Path) -> None:
    recorder = AudioRecorder(tmp_path / "call.flac")
    recorder.hold_back(min_lag_s=1.0, max_hold_s=5.0)
    recorder.hold("customer:never_ends", 0.0)
    for second in range(20):
        _feed(recorder, _noise(1.0, seed=second), start_ms=second * 1000)
        assert _unwritten(recorder) <= 6 * RATE + 800  # the bound, whatever is open
    assert recorder.holds_expired == 1
    assert not recorder.mask(0.5, 1.5)  # written already: counted, not silently missed
    assert recorder.late_masks == 1
    assert recorder.mask(19.2, 19.9)  # within the newest second, still unwritten: silenced
    path = asyncio.run(recorder.close())
    assert path is not None
    samples, _ = sf.read(path, dtype="int16")
    assert not samples[int(19.2 * RATE) : int(19.9 * RATE)].any() and samples[RATE : int(1.5 * RATE)].any()


def test_audio_the_model_has_not_heard_is_held_to_the_bound_then_written_and_counted(tmp_path: Path) -> None:
    recorder = AudioRecorder(tmp_path / "call.flac")
    recorder.hold_back(min_lag_s=1.0, max_hold_s=5.0)
    recorder.hold_unheard("inbound", 0.0)  # the model never hears anything
    for second in range(20):
        _feed(recorder, _noise(1.0, seed=second), start_ms=second * 1000)
        assert _unwritten(recorder) <= 6 * RATE + 800  # bounded whatever the model does
    assert _unwritten(recorder) >= 5 * RATE  # ...and held to the bound, not the 1 s lag
    assert 13 * RATE <= recorder.unheard_written <= 15 * RATE
    # A hold is never behind what was written: moved there, it holds from there on.
    recorder.hold_unheard("inbound", 0.0)
    assert recorder._unheard["inbound"] == recorder._flushed
    asyncio.run(recorder.close())


def test_a_span_after_a_timestamp_discontinuity_lands_where_its_audio_was_placed(tmp_path: Path) -> None:
    recorder = AudioRecorder(tmp_path / "call.flac")
    recorder.hold_back(min_lag_s=10.0, max_hold_s=30.0)
    _feed(recorder, _noise(3.0))
    # The clock jumps an hour: the recorder pads GAP_LIMIT (5 s) and carries on at 8 s.
    _feed(recorder, _noise(4.0, seed=2), start_ms=3_600_000)
    assert recorder.discontinuities == 1
    assert recorder.mask(3600.5, 3601.5)  # positions on the stream's clock, as the bridge gives them
    path = asyncio.run(recorder.close())
    assert path is not None
    samples, _ = sf.read(path, dtype="int16")
    assert len(samples) == 12 * RATE
    assert not samples[int(8.5 * RATE) : int(9.5 * RATE)].any()
    assert np.count_nonzero(samples[8 * RATE : int(8.5 * RATE), 0]) > 0.9 * RATE / 2
    assert np.count_nonzero(samples[int(9.5 * RATE) :, 0]) > 0.9 * 2.5 * RATE


def test_a_paused_stretch_is_recorded_as_silence_in_its_place(tmp_path: Path) -> None:
    recorder = AudioRecorder(tmp_path / "call.flac")
    _feed(recorder, _noise(1.0))
    _feed(recorder, _noise(2.0, seed=2), start_ms=1000, silent=True)
    _feed(recorder, _noise(1.0, seed=3), start_ms=3000)
    path = asyncio.run(recorder.close())
    assert path is not None
    samples, _ = sf.read(path, dtype="int16")
    assert len(samples) == 4 * RATE
    assert not samples[RATE : 3 * RATE].any() and samples[:RATE].any() and samples[3 * RATE :].any()
