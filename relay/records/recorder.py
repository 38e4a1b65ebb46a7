"""Dual-channel call audio (customer left, agent right) written as FLAC while the call runs.

The bridge hands every frame to `add()` (synchronous, a bytearray append); about once a
second the recorder cuts what both tracks have (a missing or late track is silence) and one
writer thread, shared by all calls, decodes (μ-law → PCM16), encodes and appends it to the
call's file. Frames are placed by their Media Streams timestamps, so a lost frame is a gap of
silence, not a shift of everything after it. Cost, measured in the load bench at 100 two-track
calls: about 10 µs of CPU per frame (decoding and FLAC encoding included); it is off by default.

Timestamps come from the caller's side of the socket and are not trusted: a jump of more than
`GAP_LIMIT` (forwards or backwards, any size) is a discontinuity, counted in `discontinuities`;
the track is padded with at most `GAP_LIMIT` of silence and carries on from there, so memory
per call stays bounded whatever the timestamps say.

Redaction (`hold_back`): spans of the call can be silenced after the fact, when an
utterance's final transcript turns out to hold a card number. The recorder keeps the newest
audio back (at least `min_lag_s`, and from the start of every utterance still open, `hold`,
until its final is in, `release`), so a span is silenced before it is ever written: nothing to
rewrite, and a crashed process never leaves the digits on disk. Bounded: audio older than
`max_hold_s` is written whatever is open (a span that comes later than that is counted in
`late_masks`); at 8 kHz μ-law that is 16 kB a second and track, 0.5 MB a call at 30 s.
Paused calls (payments) record silence in place of the audio (`add(silent=True)`).

A crash keeps what was written: after each block the FLAC header's sample count is set to
the samples already encoded (whole 4,096-sample FLAC blocks), so an unclosed file decodes up
to its last block; a normal end closes the file with its exact length and checksum.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path
from typing import Final

import numpy as np
import soundfile as sf

from relay.audio.dsp import ulaw_decode
from relay.twilio.media import Media

log = logging.getLogger("relay.audio_record")

RATE: Final = 8000
BLOCK_SAMPLES: Final = RATE  # one write per second of audio
FLAC_BLOCK: Final = 4096  # libFLAC's block size at libsndfile's default level
_LAG_LIMIT: Final = 2 * RATE  # a track this far behind the other is padded with silence
# Lost frames are silence in their place up to this gap; a longer jump (a timestamp from
# another clock, a hostile client) is a discontinuity: padded to this much, then re-anchored.
GAP_LIMIT: Final = 5 * RATE
_SILENCE: Final = b"\xff"  # μ-law zero

# One thread encodes and writes every call's audio: FIFO, so a file's blocks stay in order.
# (A separate process was measured too: sharing the relay's core, it cost the loop more.)
_WRITER: Final = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-writer")
_OPEN: dict[str, _FlacFile] = {}  # touched by the writer thread only


def _write_block(path: str, left: bytes, right: bytes, count: int) -> int:
    block = np.zeros((count, 2), dtype=np.int16)
    if left:
        block[: len(left), 0] = ulaw_decode(left)
    if right:
        block[: len(right), 1] = ulaw_decode(right)
    file = _OPEN.get(path)
    if file is None:
        file = _OPEN[path] = _FlacFile(Path(path))
    file.write(block)
    return file.samples


def _close_file(path: str) -> int:
    file = _OPEN.pop(path, None)
    if file is None:
        return 0
    file.close()
    return file.samples


def _clamp(value: int) -> int:
    """A number a JSON log line can carry (timestamps are the client's, of any size)."""
    return max(-(2**53), min(2**53, value))


def set_encoded_length(path: Path, samples: int) -> None:
    """Write the 36-bit total-samples field of the FLAC STREAMINFO block (bytes 18–25)."""
    with path.open("r+b") as fh:
        fh.seek(18)
        value = int.from_bytes(fh.read(8), "big")
        mask = (1 << 36) - 1
        value = (value & ~mask) | (samples & mask)
        fh.seek(18)
        fh.write(value.to_bytes(8, "big"))


class _FlacFile:
    """Runs on the writer thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = 0
        self._file: sf.SoundFile | None = None

    def write(self, block: np.ndarray) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(self.path, "w", samplerate=RATE, channels=2, format="FLAC", subtype="PCM_16")
        # libsndfile hands encoded frames straight to the OS (no fsync per block: a crash of the
        # process, not of the machine, is what the header count below protects against).
        self._file.write(block)
        self.samples += len(block)
        set_encoded_length(self.path, self.samples - self.samples % FLAC_BLOCK)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # exact length and MD5
            self._file = None


class _Track:
    """One channel's unwritten audio, and what a discontinuity added to its timestamps to
    carry on where it was."""

    __slots__ = ("buf", "shift")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.shift = 0


class AudioRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._tracks: dict[str, _Track] = {"inbound": _Track(), "outbound": _Track()}
        # The stream's clock (timestamp in samples) that buffer position 0 stands for; both
        # tracks share it, so they stay aligned.
        self._origin: int | None = None
        self._check_at = BLOCK_SAMPLES
        self._flushed = 0  # samples handed to the writer
        self._pending: list[concurrent.futures.Future[int]] = []
        self.errors = 0
        self.discontinuities = 0
        # Redaction: the first frame's position (call time 0 in samples), the hold-back
        # window (0: off), open utterances' starts, and spans to silence, all in absolute
        # samples (buffer position + `_flushed`).
        self._zero: int | None = None
        self._min_lag = 0
        self._max_hold = 0
        self._holds: dict[str, int] = {}
        # Per track, where the model has not heard yet (`hold_unheard`): kept back too.
        self._unheard: dict[str, int] = {}
        self._masks: list[tuple[int, int]] = []
        self.late_masks = 0
        self.holds_expired = 0
        self.unheard_written = 0  # samples written past the bound before the model heard them

    def add(self, media: Media, *, silent: bool = False) -> None:
        """Per frame (both tracks, 50/s each): a few integer operations and an append.
        `silent`: the frame's place is kept, its sound is not (a paused call)."""
        track = self._tracks.get(media.track)
        if track is None:
            return
        buf = track.buf
        payload = _SILENCE * len(media.payload) if silent else media.payload
        if media.timestamp_ms is not None:
            position = media.timestamp_ms * 8 + track.shift
            origin = self._origin
            if origin is None:  # the stream's first frame: its clock counts from here
                origin = self._origin = position - len(buf)
                if self._zero is None:
                    self._zero = position
            target = position - origin
            n = len(buf)
            if target - n > GAP_LIMIT or n - target > GAP_LIMIT:
                target = self._discontinuity(media.track, track, target, n)
            if target > n:
                buf += _SILENCE * (target - n)  # a lost frame is silence, in its place
            elif target < n:
                if target + len(payload) <= n:
                    return  # a repeat of audio already placed
                payload = payload[n - target :]
        buf += payload
        if len(buf) >= self._check_at:
            self._flush_if_ready()

    def _discontinuity(self, name: str, track: _Track, target: int, n: int) -> int:
        """The track's clock jumped: pad at most GAP_LIMIT and count its later frames from here."""
        own = track.shift
        for other in self._tracks.values():
            # The other track made the same jump already (one clock for both): follow it, so
            # the tracks stay aligned.
            candidate = target - own + other.shift
            if other.shift != own and -GAP_LIMIT <= candidate - n <= GAP_LIMIT:
                track.shift = other.shift
                return candidate
        placed = n + GAP_LIMIT if target > n else n
        track.shift += placed - target
        self.discontinuities += 1
        if self.discontinuities in (1, 10, 100, 1000) or self.discontinuities % 10_000 == 0:
            log.warning(
                "call audio timestamps jumped; padded to the gap limit",
                extra={"track": name, "jump_s": _clamp((target - n) // RATE), "discontinuities": self.discontinuities},
            )
        return placed

    def restart_timestamps(self) -> None:
        """A new stream for the call: its timestamps start again from zero."""
        self._origin = None
        for track in self._tracks.values():
            track.shift = 0

    # ------------------------------------------------------------------ redaction

    def hold_back(self, min_lag_s: float, max_hold_s: float) -> None:
        """Keep at least `min_lag_s` of the newest audio unwritten, and open utterances up to
        `max_hold_s`, so spans found later can still be silenced."""
        self._min_lag = int(min_lag_s * RATE)
        self._max_hold = max(self._min_lag, int(max_hold_s * RATE))

    def _sample(self, at_s: float, track: str = "inbound") -> int:
        """A call-time position (seconds, the bridge's clock: the stream's timestamps) as an
        absolute sample: shifted like the track's frames since its last discontinuity."""
        t = self._tracks.get(track)
        return max(0, round(at_s * RATE) + (t.shift if t is not None else 0) - (self._zero or 0))

    def hold(self, key: str, at_s: float, track: str = "inbound") -> None:
        """An utterance started at `at_s`: write nothing from there until `release(key)`."""
        if self._max_hold and (key in self._holds or len(self._holds) < 256):  # bounded: utterances that never end
            self._holds[key] = max(self._flushed, self._sample(at_s, track))

    def hold_unheard(self, track: str, at_s: float | None) -> None:
        """The model has heard `track` up to `at_s` (less the margin for a late speech start):
        write nothing from there on; moved on as the model hears more (None: it has heard it
        all). Bounded like every hold."""
        if at_s is None:
            self._unheard.pop(track, None)
        elif self._max_hold:
            self._unheard[track] = max(self._flushed, self._sample(at_s, track))

    def release(self, key: str) -> None:
        self._holds.pop(key, None)

    def mask(self, start_s: float, end_s: float, track: str = "inbound") -> bool:
        """Silence both channels over [start_s, end_s) (positions on `track`'s clock); False if
        part of it was written already (counted in `late_masks`)."""
        first, last = self._sample(start_s, track), self._sample(end_s, track)
        if last <= first:
            return True
        late = first < self._flushed
        if late:
            self.late_masks += 1
            late_s = (self._flushed - first) / RATE
            log.warning("a redacted span was already written to the call audio", extra={"late_s": late_s})
        if last > self._flushed:
            self._masks.append((max(first, self._flushed), last))
        return not late

    def _writable(self, longest: int) -> int:
        """How many buffered samples may be written now (hold-back)."""
        limit = longest - self._min_lag
        if self._holds:
            limit = min(limit, min(self._holds.values()) - self._flushed)
        if self._unheard:
            limit = min(limit, min(self._unheard.values()) - self._flushed)
        floor = longest - self._max_hold
        if limit < floor:  # held past the bound: write anyway, and forget the holds it passes
            limit = floor
            expired = [k for k, at in self._holds.items() if at < self._flushed + floor]
            for key in expired:
                del self._holds[key]
            self.holds_expired += len(expired)
        return max(0, limit)

    def _silence_masked(self, chunk: bytes) -> bytes:
        """`chunk` (starting at `_flushed`) with the masked spans in it silenced."""
        start, end = self._flushed, self._flushed + len(chunk)
        if not any(a < end and b > start for a, b in self._masks):
            return chunk
        out = bytearray(chunk)
        for a, b in self._masks:
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                out[lo - start : hi - start] = _SILENCE * (hi - lo)
        return bytes(out)

    # ------------------------------------------------------------------ writing

    def _ready_count(self) -> int:
        lengths = [len(t.buf) for t in self._tracks.values()]
        longest = max(lengths)
        count = max(min(lengths), longest - _LAG_LIMIT)  # never wait more than the lag limit for a track
        if self._max_hold:
            count = min(count, self._writable(longest))
        return count - count % 160  # whole 20 ms frames

    def _flush_if_ready(self) -> None:
        count = self._ready_count()
        if count >= BLOCK_SAMPLES:
            if self._unheard:  # held past the bound: written before the model heard it, counted
                unheard = max(self._flushed, min(self._unheard.values()))
                self.unheard_written += max(0, self._flushed + count - unheard)
            self._flush(count)
        longest = max(len(t.buf) for t in self._tracks.values())
        self._check_at = longest + 800  # look again in 100 ms of audio, not every frame

    def _flush(self, count: int | None = None) -> None:
        """Write `count` samples of each track (None: everything, at the end of the call)."""
        if count is None:
            count = max(len(t.buf) for t in self._tracks.values())
        if count <= 0:
            return
        chunks = []
        for track in self._tracks.values():
            buf = track.buf
            chunk = bytes(buf[:count])
            chunks.append(self._silence_masked(chunk) if self._masks else chunk)
            del buf[:count]
        self._masks = [(a, b) for a, b in self._masks if b > self._flushed + count]
        self._flushed += count
        if self._origin is not None:
            self._origin += count  # buffer position 0 moved on by `count` samples
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(_WRITER.submit(_write_block, str(self.path), chunks[0], chunks[1], count))

    def written(self) -> None:
        """Block until every block handed over so far is written (tests)."""
        for future in self._pending:
            future.result()

    async def close(self) -> str | None:
        """Write the rest and close the file; returns its path (None if nothing was recorded)."""
        self._flush()
        try:
            for future in self._pending:
                await asyncio.wrap_future(future)
            samples = await asyncio.wrap_future(_WRITER.submit(_close_file, str(self.path)))
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            self.errors += 1
            log.error("call audio not fully written", extra={"path": str(self.path), "error": str(exc)})
            return str(self.path) if self._flushed else None
        return str(self.path) if samples else None
