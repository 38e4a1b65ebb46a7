"""Read a call recording for the simulator: WAV of any rate and common encoding (mono, or
stereo as both tracks) or raw μ-law, returned as 8 kHz μ-law per track using the project's
audio core."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from relay.audio.dsp import INPUT_RATE, resample_file_audio, ulaw_encode
from relay.errors import RelayError


class CallFileError(RelayError):
    pass


def load_call_audio(path: Path) -> dict[str, bytes]:
    """Track name → μ-law 8 kHz bytes. Stereo: left is the customer (inbound), right the agent.

    WAV: integer PCM of 8, 16, 24 or 32 bits, or 32/64-bit float, at any rate (scipy reads it).
    """
    if path.suffix.lower() in (".ulaw", ".mulaw", ".raw", ".ul"):
        return {"inbound": path.read_bytes()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks (LIST, etc.) are skipped
            rate, data = wavfile.read(path)
    except (ValueError, EOFError) as exc:
        raise CallFileError(
            f"{path}: not a PCM WAV file ({exc}); accepted: WAV with 8/16/24/32-bit integer or 32/64-bit "
            "float samples, or raw 8 kHz μ-law (.ulaw)"
        ) from exc
    samples = _to_int16_scale(path, data)
    if samples.ndim == 1:
        samples = samples[:, np.newaxis]
    channels = samples.shape[1]
    if channels not in (1, 2):
        raise CallFileError(f"{path}: {channels} channels; use mono or stereo")
    names = ["inbound", "outbound"][:channels]
    return {
        name: ulaw_encode(resample_file_audio(samples[:, i], rate, INPUT_RATE)) for i, name in enumerate(names)
    }


def _to_int16_scale(path: Path, data: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Samples as float64 on the int16 scale (full scale ±32768), whatever the WAV held."""
    kind, size = data.dtype.kind, data.dtype.itemsize
    if kind == "u" and size == 1:
        offset, scale = 128.0, 256.0
    elif kind == "i" and size in (2, 4):
        # scipy returns 24-bit samples left-justified in int32, so both divide the same way.
        offset, scale = 0.0, 1.0 / (1 << (8 * size - 16))
    elif kind == "f":
        offset, scale = 0.0, 32768.0
    else:
        raise CallFileError(f"{path}: unsupported sample format {data.dtype}")
    samples: np.ndarray[Any, np.dtype[np.float64]] = (np.asarray(data, dtype=np.float64) - offset) * scale
    return samples
