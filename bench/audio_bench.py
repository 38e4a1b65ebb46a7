"""Audio benchmark: the relay's streaming transcoder against what people use instead.

Run by hand (not in CI):  .venv/bin/python bench/audio_bench.py [--rate 24000] [--seconds 60]

Feeds a minute of generated speech-like audio (μ-law, 8 kHz) in 20 ms frames and in 100 ms
batches through each method, and prints per method: µs per 20 ms frame (decode + resample +
int16), audio-seconds per CPU-second, algorithmic delay, SINAD on a 1 kHz tone at −6 dBFS,
worst image above 4.6 kHz (tones 300–3400 Hz), and the max difference between 20 ms streaming
and one-shot output. Every method shares the same μ-law table decode and int16 conversion.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

from relay.audio import dsp as audio

warnings.filterwarnings("ignore", category=DeprecationWarning)

FloatArray = np.ndarray


class Method:
    name = ""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.factor = rate // 8000

    def process(self, x: FloatArray) -> FloatArray:
        raise NotImplementedError

    def flush(self) -> FloatArray:
        return np.empty(0, np.float32)

    def one_shot(self, x: FloatArray) -> FloatArray:
        return np.concatenate([self.process(x), self.flush()])


class RelayCore(Method):
    name = "relay polyphase (this core)"

    def __init__(self, rate: int) -> None:
        super().__init__(rate)
        self.up = audio.StreamingUpsampler(rate)

    def process(self, x: FloatArray) -> FloatArray:
        return self.up.process(x)

    def flush(self) -> FloatArray:
        return self.up.flush()


class ResamplePolyPerFrame(Method):
    name = "scipy resample_poly per frame"

    def process(self, x: FloatArray) -> FloatArray:
        if len(x) == 0:
            return np.empty(0, np.float32)
        return signal.resample_poly(x, self.factor, 1).astype(np.float32)


class Soxr(Method):
    def __init__(self, rate: int, quality: str) -> None:
        super().__init__(rate)
        import soxr

        self.quality = quality
        self.name = f"soxr stream {quality}"
        self.stream = soxr.ResampleStream(8000, rate, 1, dtype="float32", quality=quality)

    def process(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.stream.resample_chunk(x.astype(np.float32)), dtype=np.float32)

    def flush(self) -> FloatArray:
        return np.asarray(self.stream.resample_chunk(np.empty(0, np.float32), last=True), dtype=np.float32)


class AudioopRatecv(Method):
    name = "audioop.ratecv"

    def __init__(self, rate: int) -> None:
        super().__init__(rate)
        try:
            import audioop
        except ImportError:  # Python ≥ 3.13: the audioop-lts backport
            import audioop  # type: ignore[no-redef]
        self.audioop = audioop
        self.state = None

    def process(self, x: FloatArray) -> FloatArray:
        pcm = np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()
        out, self.state = self.audioop.ratecv(pcm, 2, 1, 8000, self.rate, self.state)
        return np.frombuffer(out, dtype="<i2").astype(np.float32)


def methods(rate: int) -> list[Callable[[], Method]]:
    found: list[Callable[[], Method]] = [lambda: RelayCore(rate), lambda: ResamplePolyPerFrame(rate)]
    try:
        import soxr  # noqa: F401

        found += [lambda: Soxr(rate, "HQ"), lambda: Soxr(rate, "LQ")]
    except ImportError:
        print("(soxr not installed: pip install -e '.[bench]')", file=sys.stderr)
    try:
        import audioop  # noqa: F401

        found.append(lambda: AudioopRatecv(rate))
    except ImportError:
        print("(audioop not available)", file=sys.stderr)
    return found


# ---------------------------------------------------------------------------- signals


def speech_like(seconds: float, seed: int = 11) -> bytes:
    """Voiced pulse trains with wandering pitch, formant-ish filtering and syllable envelopes."""
    rng = np.random.default_rng(seed)
    n = int(8000 * seconds)
    t = np.arange(n) / 8000
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.3 * t) + 10 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    phase = 2 * np.pi * np.cumsum(pitch) / 8000
    voiced = np.sign(np.sin(phase)) * 0.3 + 0.05 * rng.standard_normal(n)
    b, a = signal.butter(4, [300, 3400], btype="band", fs=8000)
    shaped = signal.lfilter(b, a, voiced)
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t) + 0.3, 0, None)
    x = shaped * envelope
    x = 0.5 * x / np.max(np.abs(x))
    return audio.ulaw_encode(32767 * x)


def decode(ulaw: bytes) -> FloatArray:
    return audio.ULAW_TO_INT16[np.frombuffer(ulaw, np.uint8)].astype(np.float32)


# ---------------------------------------------------------------------------- measures


@dataclass
class Row:
    name: str
    us_per_frame: float
    us_per_frame_batched: float
    realtime_factor: float
    delay_ms: float
    sinad_db: float
    worst_image_db: float
    stream_vs_oneshot_lsb: float


def timed(make: Callable[[], Method], ulaw: bytes, frame: int) -> float:
    """Seconds of CPU per input sample for decode + resample + int16 (best of 3)."""
    chunks = [ulaw[i : i + frame] for i in range(0, len(ulaw), frame)]
    table = audio.ULAW_TO_INT16.astype(np.float32)
    best = float("inf")
    for _ in range(3):
        method = make()
        start = time.process_time()
        for chunk in chunks:
            out = method.process(table.take(np.frombuffer(chunk, np.uint8)))
            audio.float_to_pcm16(out)
        best = min(best, time.process_time() - start)
    return best / len(ulaw)


def stream(method: Method, x: FloatArray, frame: int = 160) -> FloatArray:
    parts = [method.process(x[i : i + frame]) for i in range(0, len(x), frame)]
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def delay_ms(make: Callable[[], Method], rate: int) -> float:
    """Input-to-output latency: output withheld at the end of input, plus timeline shift."""
    factor = rate // 8000
    n = 8000
    x = np.zeros(n, np.float32)
    x[n // 2] = 20000.0
    out = stream(make(), x)
    withheld = factor * n - len(out)
    ideal = factor * (n // 2)
    peak = int(np.argmax(np.abs(out))) if len(out) else ideal
    return 1000 * ((peak - ideal) + withheld) / rate


def sinad_db(make: Callable[[], Method], rate: int) -> float:
    n = 8000 * 2
    t = np.arange(n) / 8000
    tone = (32768 * 10 ** (-6 / 20) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = make().one_shot(tone).astype(np.float64)
    settle = rate // 5
    y = y[settle : len(y) - settle]
    tt = (np.arange(len(y)) + settle) / rate
    basis = np.column_stack([np.sin(2 * np.pi * 1000 * tt), np.cos(2 * np.pi * 1000 * tt), np.ones_like(tt)])
    fit, *_ = np.linalg.lstsq(basis, y, rcond=None)
    fitted = basis[:, :2] @ fit[:2]
    residual = y - basis @ fit
    return float(10 * np.log10(np.sum(fitted**2) / np.sum(residual**2)))


def worst_image_db(make: Callable[[], Method], rate: int) -> float:
    worst = -200.0
    n = 8000
    for f in (300, 1000, 2000, 3000, 3400):
        t = np.arange(n) / 8000
        tone = (16384 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        y = make().one_shot(tone).astype(np.float64)
        y = y[len(y) // 4 : 3 * len(y) // 4]
        spectrum = np.abs(np.fft.rfft(y * signal.windows.blackmanharris(len(y))))
        freqs = np.fft.rfftfreq(len(y), 1 / rate)
        fundamental = spectrum.max()
        worst = max(worst, float(20 * np.log10(spectrum[freqs > 4600].max() / fundamental + 1e-20)))
    return worst


def stream_vs_oneshot(make: Callable[[], Method], x: FloatArray) -> float:
    method = make()
    streamed = np.concatenate([stream(method, x), method.flush()])
    whole = make().one_shot(x)
    n = min(len(streamed), len(whole))
    a = np.clip(np.rint(streamed[:n]), -32768, 32767)
    b = np.clip(np.rint(whole[:n]), -32768, 32767)
    length_gap = abs(len(streamed) - len(whole))
    return float(np.abs(a - b).max()) + (float("inf") if length_gap > 0 and n == 0 else 0.0)


def run(rate: int, seconds: float) -> list[Row]:
    ulaw = speech_like(seconds)
    x = decode(ulaw)
    rows = []
    for make in methods(rate):
        name = make().name
        per_sample = timed(make, ulaw, 160)
        per_sample_batched = timed(make, ulaw, 800)
        rows.append(
            Row(
                name=name,
                us_per_frame=per_sample * 160 * 1e6,
                us_per_frame_batched=per_sample_batched * 160 * 1e6,
                realtime_factor=1 / (per_sample * 8000),
                delay_ms=delay_ms(make, rate),
                sinad_db=sinad_db(make, rate),
                worst_image_db=worst_image_db(make, rate),
                stream_vs_oneshot_lsb=stream_vs_oneshot(make, x),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=24000, choices=[16000, 24000])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    rows = run(args.rate, args.seconds)
    print(f"μ-law 8 kHz → PCM16 {args.rate // 1000} kHz, {args.seconds:.0f} s of speech-like audio")
    header = (
        f"{'method':32} {'µs/20ms':>8} {'µs/20ms@100ms':>14} {'x realtime':>10} {'delay ms':>9} "
        f"{'SINAD dB':>9} {'image dB':>9} {'stream≠1shot LSB':>17}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:32} {r.us_per_frame:8.1f} {r.us_per_frame_batched:14.1f} {r.realtime_factor:10.0f} "
            f"{r.delay_ms:9.2f} {r.sinad_db:9.1f} {r.worst_image_db:9.1f} {r.stream_vs_oneshot_lsb:17.0f}"
        )
    core = rows[0]
    naive = next((r for r in rows if r.name.startswith("scipy")), None)
    hq = next((r for r in rows if r.name.endswith("HQ")), None)
    if naive:
        print(f"\nrelay vs per-frame resample_poly: {naive.us_per_frame / core.us_per_frame:.1f}× faster")
    if hq:
        print(
            f"relay vs soxr HQ per frame: {core.us_per_frame / hq.us_per_frame:.2f}× the time, "
            f"{hq.delay_ms / core.delay_ms:.1f}× less delay"
        )


if __name__ == "__main__":
    main()
