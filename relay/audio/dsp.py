"""Pure audio core: G.711 μ-law codec and a streaming polyphase upsampler.

No I/O and no asyncio. Everything a call needs per track lives in a `Transcoder`:
μ-law bytes in, PCM16 little-endian bytes out, filter state carried across frames so
any chunking of the input yields the same output as one-shot processing.

The upsampler is a linear-phase "Nyquist" (L-th band) FIR: cutoff at 4 kHz, transition
band 3.4–4.6 kHz, Kaiser window. Its group delay is a whole number of input samples
(23 → 2.875 ms), which we compensate by discarding the leading transient and feeding
zeros on flush, so flushed output is exactly L × input and aligned with it.
"""

from __future__ import annotations

import functools
import math
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from scipy import signal

INPUT_RATE: Final = 8000
SUPPORTED_OUTPUT_RATES: Final = (16000, 24000)

# Half the filter length in input samples. 2*23*L+1 taps gives ~107 dB of stopband at a
# 1.2 kHz transition for both L=2 and L=3, with a delay of 23/8000 s = 2.875 ms.
_HALF_LENGTH_IN_SAMPLES: Final = 23
_STOPBAND_DB: Final = 110.0

FloatArray = npt.NDArray[np.float32]

# The clip ufunc itself: np.clip's Python wrapper costs more than the clipping on a frame.
# numpy 2 names the module np._core, numpy 1 np.core; which attribute the stubs lack depends on
# the installed numpy, hence the ignore that tolerates being unused.
_clip_ufunc: np.ufunc = (np._core if hasattr(np, "_core") else np.core).umath.clip  # type: ignore[attr-defined,unused-ignore]


# ---------------------------------------------------------------------------- μ-law


def _build_ulaw_decode_table() -> npt.NDArray[np.int16]:
    """G.711 μ-law expansion for all 256 codes (identical to ITU-T G.711 / audioop)."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


ULAW_TO_INT16: Final = _build_ulaw_decode_table()
_ULAW_TO_FLOAT: Final = ULAW_TO_INT16.astype(np.float32)

# ITU-T G.711 reference encoder (Sun's g711.c, as in audioop): it works on 14-bit
# magnitudes, which is why a naive 16-bit bias/clip encoder differs on ~400 inputs.
_ULAW_SEGMENT_ENDS: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ULAW_CLIP_14BIT: Final = 8159
_ULAW_BIAS_14BIT: Final = 0x21


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """μ-law bytes → int16 samples."""
    return ULAW_TO_INT16[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """int16-range samples → μ-law bytes, bit-exact with the G.711 reference encoder."""
    x = np.clip(np.rint(np.asarray(samples, dtype=np.float64)), -32768, 32767).astype(np.int32)
    v = x >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), _ULAW_CLIP_14BIT) + _ULAW_BIAS_14BIT
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, v, side="left").astype(np.int32)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((v >> (np.minimum(segment, 7) + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8).tobytes()


# ---------------------------------------------------------------------------- filter


@functools.cache
def design_upsampling_filter(factor: int) -> npt.NDArray[np.float64]:
    """Linear-phase Nyquist low-pass for upsampling 8 kHz by `factor`, designed once.

    Gain is `factor` so that the passband level is preserved after zero-stuffing.
    """
    if factor not in (2, 3):
        raise ValueError(f"unsupported upsampling factor {factor}")
    taps = 2 * _HALF_LENGTH_IN_SAMPLES * factor + 1
    beta = signal.kaiser_beta(_STOPBAND_DB)
    fs = INPUT_RATE * factor
    h = signal.firwin(taps, INPUT_RATE / 2, window=("kaiser", beta), fs=fs, scale=False)
    h = h * factor
    # Nyquist property: every factor-th tap off-centre is exactly zero, so input samples
    # pass through phase 0 untouched. Enforce it against round-off.
    centre = (taps - 1) // 2
    for k in range(-_HALF_LENGTH_IN_SAMPLES, _HALF_LENGTH_IN_SAMPLES + 1):
        h[centre + k * factor] = 1.0 if k == 0 else 0.0
    return np.asarray(h, dtype=np.float64)


# Inputs per GEMM row. Twilio frames (160) and 100 ms batches (800) are multiples, so
# the hot path is one well-shaped matrix product; other lengths use a row-wise tail.
_BLOCK: Final = 40


@functools.cache
def _polyphase_bank(factor: int) -> FloatArray:
    """Bank B (K × L) with B[j, p] = h[p + (K-1-j)·L]: a window of the last K inputs,
    oldest first, times B gives the L outputs belonging to the newest input."""
    h = design_upsampling_filter(factor)
    taps_per_phase = -(-len(h) // factor)
    padded = np.zeros(taps_per_phase * factor)
    padded[: len(h)] = h
    bank = padded.reshape(taps_per_phase, factor)[::-1]
    return np.ascontiguousarray(bank, dtype=np.float32)


@functools.cache
def _block_matrix(factor: int) -> FloatArray:
    """Block-Toeplitz form of the bank: one row of `_BLOCK + K - 1` inputs → `_BLOCK·L`
    outputs. Turns a tall-skinny product (N = L) into a GEMM BLAS handles well."""
    bank = _polyphase_bank(factor)
    taps = bank.shape[0]
    g = np.zeros((_BLOCK + taps - 1, _BLOCK * factor), dtype=np.float32)
    for i in range(_BLOCK):
        g[i : i + taps, i * factor : (i + 1) * factor] = bank
    return g


class StreamingUpsampler:
    """Stateful 8 kHz → 8·L kHz polyphase FIR working on float32 samples.

    `process()` accepts any length (including 0); `flush()` returns the tail so that the
    total output is exactly L × total input, aligned with the input (delay compensated).
    """

    __slots__ = ("_bank", "_block", "_delay_inputs", "_history", "_skip", "_taps", "factor")

    def __init__(self, output_rate: int = 24000) -> None:
        if output_rate not in SUPPORTED_OUTPUT_RATES:
            raise ValueError(f"output rate must be one of {SUPPORTED_OUTPUT_RATES}, got {output_rate}")
        self.factor = output_rate // INPUT_RATE
        self._bank = _polyphase_bank(self.factor)
        self._block = _block_matrix(self.factor)
        self._taps = self._bank.shape[0]
        self._delay_inputs = _HALF_LENGTH_IN_SAMPLES
        self._history: FloatArray = np.zeros(self._taps - 1, dtype=np.float32)
        self._skip = 0
        self.reset()

    @property
    def delay_seconds(self) -> float:
        """Group delay of the filter (compensated in the output timeline)."""
        return self._delay_inputs / INPUT_RATE

    def reset(self) -> None:
        self._history = np.zeros(self._taps - 1, dtype=np.float32)
        self._skip = self._delay_inputs * self.factor

    def process(self, samples: FloatArray) -> FloatArray:
        n = samples.shape[0]
        if n == 0:
            return np.empty(0, dtype=np.float32)
        extended = np.empty(self._taps - 1 + n, dtype=np.float32)
        extended[: self._taps - 1] = self._history
        extended[self._taps - 1 :] = samples
        return self._run(extended, n)

    def process_ulaw(self, codes: npt.NDArray[np.uint8]) -> FloatArray:
        """Decode μ-law codes straight into the filter's input buffer (saves a copy)."""
        n = codes.shape[0]
        if n == 0:
            return np.empty(0, dtype=np.float32)
        extended = np.empty(self._taps - 1 + n, dtype=np.float32)
        extended[: self._taps - 1] = self._history
        _ULAW_TO_FLOAT.take(codes, out=extended[self._taps - 1 :])
        return self._run(extended, n)

    def _run(self, extended: FloatArray, n: int) -> FloatArray:
        self._history = extended[n:]
        out = self._filter(extended, n)
        if self._skip:
            drop = min(self._skip, out.shape[0])
            self._skip -= drop
            out = out[drop:]
        return out

    def _filter(self, extended: FloatArray, n: int) -> FloatArray:
        taps = self._taps
        blocks, rest = divmod(n, _BLOCK)
        itemsize = extended.itemsize
        block_out: FloatArray | None = None
        if blocks:
            rows = np.ndarray((blocks, _BLOCK + taps - 1), np.float32, extended, 0, (_BLOCK * itemsize, itemsize))
            block_out = np.matmul(rows, self._block).reshape(-1)
            if not rest:  # Twilio frames and 100 ms batches: one GEMM, nothing else
                return block_out
        windows = np.ndarray((rest, taps), np.float32, extended, blocks * _BLOCK * itemsize, (itemsize, itemsize))
        tail_out: FloatArray = (windows @ self._bank).reshape(-1)
        return tail_out if block_out is None else np.concatenate((block_out, tail_out))

    def flush(self) -> FloatArray:
        """Push `delay` zeros through to emit the delayed tail, then reset.

        The leading `delay·L` outputs were skipped, so the zeros' outputs complete the
        total to exactly L × (all input) — however little input there was.
        """
        tail = self.process(np.zeros(self._delay_inputs, dtype=np.float32))
        self.reset()
        return tail


def float_to_pcm16(samples: FloatArray) -> bytes:
    """Round to nearest and clip to int16 (never wrap), little-endian bytes."""
    rounded = np.rint(samples)
    # The ufunc, not np.clip: the Python wrapper costs more than the clipping here.
    _clip_ufunc(rounded, -32768.0, 32767.0, out=rounded)
    return rounded.astype("<i2").tobytes()


def resample_file_audio(samples: npt.ArrayLike, rate: int, target: int = INPUT_RATE) -> npt.NDArray[np.float64]:
    """One-shot rational resampling of a whole recording (files, not live streams):
    polyphase with scipy's anti-aliasing filter, exact length round(n · target / rate)."""
    x = np.asarray(samples, dtype=np.float64)
    if rate == target or len(x) == 0:
        return x
    divisor = math.gcd(rate, target)
    y = signal.resample_poly(x, target // divisor, rate // divisor)
    return np.asarray(y, dtype=np.float64)


# ---------------------------------------------------------------------------- transcoders


class Transcoder(Protocol):
    """Per-track converter from Twilio's μ-law to what the model session expects."""

    @property
    def bytes_per_input_byte(self) -> int: ...

    def process(self, ulaw: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def reset(self) -> None: ...


class PcmTranscoder:
    """μ-law 8 kHz → PCM16 LE mono at 16 or 24 kHz, streaming."""

    __slots__ = ("_upsampler",)

    def __init__(self, output_rate: int = 24000) -> None:
        self._upsampler = StreamingUpsampler(output_rate)

    @property
    def bytes_per_input_byte(self) -> int:
        return 2 * self._upsampler.factor

    @property
    def delay_seconds(self) -> float:
        return self._upsampler.delay_seconds

    def process(self, ulaw: bytes) -> bytes:
        if not ulaw:
            return b""
        return float_to_pcm16(self._upsampler.process_ulaw(np.frombuffer(ulaw, dtype=np.uint8)))

    def flush(self) -> bytes:
        return float_to_pcm16(self._upsampler.flush())

    def reset(self) -> None:
        self._upsampler.reset()


class PassthroughTranscoder:
    """`audio/pcmu` sessions take Twilio's μ-law as is."""

    __slots__ = ()

    @property
    def bytes_per_input_byte(self) -> int:
        return 1

    def process(self, ulaw: bytes) -> bytes:
        return ulaw

    def flush(self) -> bytes:
        return b""

    def reset(self) -> None:
        return None


def make_transcoder(audio_format: str) -> Transcoder:
    if audio_format == "pcm24k":
        return PcmTranscoder(24000)
    if audio_format == "pcm16k":
        return PcmTranscoder(16000)
    if audio_format == "pcmu":
        return PassthroughTranscoder()
    raise ValueError(f"unknown audio format {audio_format!r}")
