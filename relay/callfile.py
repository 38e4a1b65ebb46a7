"""Read a call recording for the simulator: WAV of any rate (mono, or stereo as both
tracks) or raw μ-law, returned as 8 kHz μ-law per track using the project's audio core."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from .audio import INPUT_RATE, resample_file_audio, ulaw_encode
from .errors import RelayError


class CallFileError(RelayError):
    pass


def load_call_audio(path: Path) -> dict[str, bytes]:
    """Track name → μ-law 8 kHz bytes. Stereo: left is the customer (inbound), right the agent."""
    if path.suffix.lower() in (".ulaw", ".mulaw", ".raw", ".ul"):
        return {"inbound": path.read_bytes()}
    try:
        with wave.open(str(path)) as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise CallFileError(f"{path}: not a PCM WAV file ({exc})") from None
    if width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    elif width == 1:
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float64) - 128) * 256
    elif width == 4:
        samples = np.frombuffer(frames, dtype="<i4").astype(np.float64) / 65536
    else:
        raise CallFileError(f"{path}: unsupported sample width {width}")
    if channels not in (1, 2):
        raise CallFileError(f"{path}: {channels} channels; use mono or stereo")
    per_channel = samples.reshape(-1, channels).T
    names = ["inbound", "outbound"][:channels]
    return {
        name: ulaw_encode(resample_file_audio(ch, rate, INPUT_RATE))
        for name, ch in zip(names, per_channel, strict=True)
    }
