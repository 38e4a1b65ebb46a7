"""Call audio: two channels placed by timestamp, and a file that survives a crash."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from relay.audio.dsp import ulaw_decode, ulaw_encode
from relay.records.recorder import AudioRecorder
from relay.twilio.media import Media

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
        from relay.audio.dsp import ulaw_encode
        from relay.records.recorder import AudioRecorder
        from relay.twilio.media import Media
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


# One stream's clock jumps (a timestamp from another clock, a hostile client). Run in a child
# process whose address space is capped a little above what it uses: without a bound on the
# padding, the jump fails there with MemoryError instead of taking gigabytes of the machine.
_JUMP = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys, tracemalloc
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    import numpy as np
    import soundfile as sf
    from relay.audio.dsp import ulaw_encode
    from relay.records.recorder import RATE, AudioRecorder
    from relay.twilio.media import Media

    jump_ms, path = int(sys.argv[1]), Path(sys.argv[2])
    audio = ulaw_encode(np.random.default_rng(3).normal(0, 3000, RATE * 2))
    recorder = AudioRecorder(path)

    def feed(start_ms):
        for i in range(0, len(audio), 160):
            for track in ("inbound", "outbound"):
                recorder.add(Media(track, audio[i : i + 160], start_ms + i // 8))

    feed(0)
    recorder.written()
    page = os.sysconf("SC_PAGE_SIZE")
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * page
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 512 * 2**20, resource.RLIM_INFINITY))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        feed(2000 + jump_ms)  # the call goes on after the jump
        written = asyncio.run(recorder.close())
    except BaseException as exc:
        print(json.dumps({"error": type(exc).__name__}))
        sys.exit(0)
    traced_peak = tracemalloc.get_traced_memory()[1]
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    samples, _ = sf.read(written, dtype="int16")
    tail_ok = bool(np.array_equal(samples[-len(audio) :, 0], samples[-len(audio) :, 1]))
    print(json.dumps({"grew": grew, "traced_peak": traced_peak, "samples": len(samples),
                      "discontinuities": recorder.discontinuities, "tail_ok": tail_ok}))
    """
)


@pytest.mark.parametrize(
    ("jump_ms", "padded_s"),
    [
        (55 * 3600 * 1000, 5),  # 55 hours: 2.9 GB of silence before the bound
        (10**15, 5),  # MemoryError before the bound
        (10**30, 5),  # beyond any index
        (-(10**12), 0),  # backwards: carries on where it was, never dropped as "repeats"
        (-(10**30), 0),
    ],
)
def test_a_timestamp_jump_is_a_bounded_counted_discontinuity_and_the_call_goes_on(
    tmp_path: Path, jump_ms: int, padded_s: int
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _JUMP, str(jump_ms), str(tmp_path / "jump.flac"), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["grew"] < 50 * 2**20 and result["traced_peak"] < 50 * 2**20
    assert result["discontinuities"] == 1  # one jump of the stream's clock: the second track follows
    # 2 s before, at most the gap limit of silence, the 2 s after (both tracks, still aligned).
    assert result["samples"] == 8000 * (2 + padded_s + 2) and result["tail_ok"]


def test_a_lost_frame_within_the_gap_limit_is_still_silence_in_place_not_a_discontinuity(tmp_path: Path) -> None:
    audio = ulaw_encode(np.random.default_rng(4).normal(0, 3000, 8000))
    recorder = AudioRecorder(tmp_path / "gap.flac")
    for media in frames("inbound", audio) + frames("inbound", audio, start_ms=1000 + 4000):  # a 4 s gap
        recorder.add(media)
    path = asyncio.run(recorder.close())
    assert path is not None and recorder.discontinuities == 0
    samples, _ = sf.read(path, dtype="int16")
    assert len(samples) == 8000 * 6
