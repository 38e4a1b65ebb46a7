"""Call audio: two channels placed by timestamp, and a file that survives a crash."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

from relay.audio import ulaw_decode, ulaw_encode
from relay.audio_recorder import AudioRecorder
from relay.twilio_media import Media

ROOT = Path(__file__).resolve().parent.parent


def frames(track: str, audio: bytes, *, skip: set[int] = frozenset(), start_ms: int = 0) -> list[Media]:  # type: ignore[assignment]
    return [
        Media(track, audio[i : i + 160], start_ms + i // 8) for i in range(0, len(audio), 160) if i // 160 not in skip
    ]


def test_tracks_land_left_and_right_and_a_lost_frame_is_silence_in_its_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    customer = ulaw_encode(rng.normal(0, 3000, 8000 * 3))
    agent = ulaw_encode(rng.normal(0, 3000, 8000 * 3))
    recorder = AudioRecorder(tmp_path / "call.flac")
    lost = {10, 11, 50}
    for a, b in zip(frames("inbound", customer, skip=lost), frames("outbound", agent), strict=False):
        recorder.add(a)
        recorder.add(b)
    for b in frames("outbound", agent)[len(frames("inbound", customer, skip=lost)) :]:
        recorder.add(b)
    path = asyncio.run(recorder.close())
    assert path is not None
    samples, rate = sf.read(path, dtype="int16")
    assert rate == 8000 and samples.shape == (len(agent), 2)
    expected_left = ulaw_decode(customer).copy()
    for k in lost:
        expected_left[k * 160 : (k + 1) * 160] = 0
    assert np.array_equal(samples[:, 0], expected_left)
    assert np.array_equal(samples[:, 1], ulaw_decode(agent))


def test_a_crashed_process_leaves_a_file_that_decodes_up_to_its_last_block(tmp_path: Path) -> None:
    path = tmp_path / "crash.flac"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from relay.audio import ulaw_encode
        from relay.audio_recorder import AudioRecorder
        from relay.twilio_media import Media
        audio = ulaw_encode(np.random.default_rng(2).normal(0, 3000, 8000 * 6))
        recorder = AudioRecorder(__import__("pathlib").Path({str(path)!r}))
        for i in range(0, len(audio), 160):
            recorder.add(Media("inbound", audio[i : i + 160], i // 8))
        recorder.written()  # the blocks handed over so far are in the file
        os._exit(0)  # no close: like a crash
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    samples, _ = sf.read(path, dtype="int16")
    # Blocks are handed over once a track is 3 s ahead of the other (here the agent never
    # speaks): 4 s of 6 were written, and the file decodes to whole FLAC blocks of them.
    assert 8000 * 3 <= len(samples) <= 8000 * 4 and samples.shape[1] == 2
