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

from .audio import ulaw_decode
from .twilio_media import Media

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


class AudioRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._tracks: dict[str, bytearray] = {"inbound": bytearray(), "outbound": bytearray()}
        # The stream's clock (timestamp in samples) that buffer position 0 stands for; both
        # tracks share it, so they stay aligned.
        self._origin: int | None = None
        # Per track: what a discontinuity added to its timestamps to carry on where it was.
        self._shift: dict[str, int] = {"inbound": 0, "outbound": 0}
        self._check_at = BLOCK_SAMPLES
        self._flushed = 0  # samples handed to the writer
        self._pending: list[concurrent.futures.Future[int]] = []
        self.errors = 0
        self.discontinuities = 0

    def add(self, media: Media) -> None:
        """Per frame (both tracks, 50/s each): a few integer operations and an append."""
        buf = self._tracks.get(media.track)
        if buf is None:
            return
        payload = media.payload
        if media.timestamp_ms is not None:
            position = media.timestamp_ms * 8 + self._shift[media.track]
            origin = self._origin
            if origin is None:  # the stream's first frame: its clock counts from here
                origin = self._origin = position - len(buf)
            target = position - origin
            n = len(buf)
            if target - n > GAP_LIMIT or n - target > GAP_LIMIT:
                target = self._discontinuity(media.track, target, n)
            if target > n:
                buf += _SILENCE * (target - n)  # a lost frame is silence, in its place
            elif target < n:
                if target + len(payload) <= n:
                    return  # a repeat of audio already placed
                payload = payload[n - target :]
        buf += payload
        if len(buf) >= self._check_at:
            self._flush_if_ready()

    def _discontinuity(self, track: str, target: int, n: int) -> int:
        """The track's clock jumped: pad at most GAP_LIMIT and count its later frames from here."""
        own = self._shift[track]
        for shift in self._shift.values():
            # The other track made the same jump already (one clock for both): follow it, so
            # the tracks stay aligned.
            candidate = target - own + shift
            if shift != own and -GAP_LIMIT <= candidate - n <= GAP_LIMIT:
                self._shift[track] = shift
                return candidate
        placed = n + GAP_LIMIT if target > n else n
        self._shift[track] += placed - target
        self.discontinuities += 1
        if self.discontinuities in (1, 10, 100, 1000) or self.discontinuities % 10_000 == 0:
            log.warning(
                "call audio timestamps jumped; padded to the gap limit",
                extra={"track": track, "jump_s": _clamp((target - n) // RATE), "discontinuities": self.discontinuities},
            )
        return placed

    def restart_timestamps(self) -> None:
        """A new stream for the call: its timestamps start again from zero."""
        self._origin = None
        self._shift = dict.fromkeys(self._shift, 0)

    def _flush_if_ready(self) -> None:
        lengths = [len(b) for b in self._tracks.values()]
        if min(lengths) >= BLOCK_SAMPLES or max(lengths) >= BLOCK_SAMPLES + _LAG_LIMIT:
            self._flush()
        longest = max(len(b) for b in self._tracks.values())
        self._check_at = longest + 800  # look again in 100 ms of audio, not every frame

    def _flush(self, final: bool = False) -> None:
        longest = max(len(b) for b in self._tracks.values())
        if final:
            count = longest
        else:
            ready = min(len(b) for b in self._tracks.values())
            count = max(ready, longest - _LAG_LIMIT)  # never wait more than the lag limit for a track
            count -= count % 160  # whole 20 ms frames
        if count <= 0:
            return
        chunks = []
        for buf in self._tracks.values():
            chunks.append(bytes(buf[:count]))
            del buf[:count]
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
        self._flush(final=True)
        try:
            for future in self._pending:
                await asyncio.wrap_future(future)
            samples = await asyncio.wrap_future(_WRITER.submit(_close_file, str(self.path)))
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            self.errors += 1
            log.error("call audio not fully written", extra={"path": str(self.path), "error": str(exc)})
            return str(self.path) if self._flushed else None
        return str(self.path) if samples else None
