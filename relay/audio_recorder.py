"""Dual-channel call audio (customer left, agent right) written as FLAC while the call runs.

The bridge hands every frame to `add()` (synchronous, a bytearray append); about once a
second the recorder decodes what both tracks have (μ-law → PCM16; a missing or late track is
silence) and one writer thread, shared by all calls, encodes and appends it to the call's
file. Frames are placed by their Media Streams timestamps, so a lost frame is a gap of
silence, not a shift of everything after it.

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
_SILENCE: Final = b"\xff"  # μ-law zero
_TRACK_CHANNEL: Final = {"inbound": 0, "outbound": 1}

# One thread encodes and writes every call's audio: FIFO, so one file's blocks stay in order.
_WRITER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-writer")


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
        self._file.write(block)
        self._file.flush()
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
        self._base: dict[str, int | None] = {"inbound": None, "outbound": None}
        self._flushed = 0  # samples handed to the writer
        self._file = _FlacFile(path)
        self._pending: list[concurrent.futures.Future[None]] = []
        self.errors = 0

    def add(self, media: Media) -> None:
        buf = self._tracks.get(media.track)
        if buf is None:
            return
        if media.timestamp_ms is not None:
            position = media.timestamp_ms * (RATE // 1000)
            base = self._base[media.track]
            if base is None:  # the track's first frame: its timestamps count from here
                base = self._base[media.track] = position - (self._flushed + len(buf))
            target = position - base - self._flushed
            if target > len(buf):
                buf += _SILENCE * (target - len(buf))  # a lost frame is silence, in its place
            elif target < len(buf):
                if target + len(media.payload) <= len(buf):
                    return  # a repeat of audio already placed
                media = Media(media.track, media.payload[len(buf) - target :], media.timestamp_ms)
        buf += media.payload
        if max(len(b) for b in self._tracks.values()) >= BLOCK_SAMPLES + _LAG_LIMIT or (
            min(len(b) for b in self._tracks.values()) >= BLOCK_SAMPLES
        ):
            self._flush()

    def restart_timestamps(self) -> None:
        """A new stream for the call: its timestamps start again from zero."""
        self._base = {"inbound": None, "outbound": None}

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
        block = np.zeros((count, 2), dtype=np.int16)
        for track, buf in self._tracks.items():
            chunk = bytes(buf[:count])
            del buf[:count]
            if chunk:
                block[: len(chunk), _TRACK_CHANNEL[track]] = ulaw_decode(chunk)
        self._flushed += count
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(_WRITER.submit(self._file.write, block))

    async def close(self) -> str | None:
        """Write the rest and close the file; returns its path (None if nothing was recorded)."""
        self._flush(final=True)
        done = _WRITER.submit(self._file.close)
        try:
            await asyncio.wrap_future(done)
            for future in self._pending:
                future.result()
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            self.errors += 1
            log.error("call audio not fully written", extra={"path": str(self.path), "error": str(exc)})
        return str(self.path) if self._file.samples else None
