"""The pure audio core: exact G.711, streaming equals one-shot, filter quality, int16 safety."""

from __future__ import annotations

import audioop

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from relay.audio import dsp as audio


def test_ulaw_decode_matches_g711_for_all_256_codes() -> None:
    codes = bytes(range(256))
    reference = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype=np.int16)
    assert np.array_equal(audio.ulaw_decode(codes), reference)
    # Spot values from the G.711 table: 0x00 → -32124, 0x80 → 32124, 0xFF/0x7F → 0.
    assert audio.ULAW_TO_INT16[0x00] == -32124 and audio.ULAW_TO_INT16[0x80] == 32124
    assert audio.ULAW_TO_INT16[0xFF] == 0 and audio.ULAW_TO_INT16[0x7F] == 0


def test_ulaw_encode_is_bit_exact_with_the_reference_encoder_for_every_int16() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int16)
    assert audio.ulaw_encode(samples) == audioop.lin2ulaw(samples.tobytes(), 2)


def test_encode_then_decode_round_trips_codes() -> None:
    decoded = audio.ulaw_decode(bytes(range(256)))
    reencoded = np.frombuffer(audio.ulaw_encode(decoded), dtype=np.uint8)
    # 0x7F and 0xFF both decode to 0; the encoder picks 0xFF for zero.
    expected = np.arange(256, dtype=np.uint8)
    expected[0x7F] = 0xFF
    assert np.array_equal(reencoded, expected)


@pytest.mark.parametrize("rate", [24000, 16000])
def test_filter_is_linear_phase_flat_and_rejects_images(rate: int) -> None:
    factor = rate // 8000
    h = audio.design_upsampling_filter(factor)
    assert np.allclose(h, h[::-1])  # symmetric: linear phase
    freqs, response = signal.freqz(h / factor, worN=1 << 15, fs=rate)
    passband = 20 * np.log10(np.abs(response[freqs <= 3400]))
    stopband = 20 * np.log10(np.abs(response[freqs >= 4600]))
    assert passband.max() < 0.01 and passband.min() > -0.01
    assert stopband.max() < -75
    assert audio.design_upsampling_filter(factor) is h  # designed once


@pytest.mark.parametrize("rate", [24000, 16000])
def test_sinad_of_a_1khz_tone_exceeds_100db(rate: int) -> None:
    n = 16000
    t = np.arange(n) / 8000
    tone = (0.5 * 32768 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    up = audio.StreamingUpsampler(rate)
    out = np.concatenate([up.process(tone[i : i + 160]) for i in range(0, n, 160)] + [up.flush()])
    assert len(out) == (rate // 8000) * n
    settle = rate // 10
    y = out[settle:-settle].astype(np.float64)
    tt = np.arange(len(out))[settle:-settle] / rate
    basis = np.column_stack([np.sin(2 * np.pi * 1000 * tt), np.cos(2 * np.pi * 1000 * tt)])
    fit, *_ = np.linalg.lstsq(basis, y, rcond=None)
    residual = y - basis @ fit
    sinad = 10 * np.log10(np.sum((basis @ fit) ** 2) / np.sum(residual**2))
    assert sinad > 100
    # Delay compensated: the output is in phase with the input (no time shift).
    assert abs(fit[1]) < 1e-2 * abs(fit[0])


def test_delay_is_under_three_milliseconds() -> None:
    assert audio.StreamingUpsampler(24000).delay_seconds <= 0.003
    assert audio.StreamingUpsampler(16000).delay_seconds <= 0.003


def test_input_samples_pass_through_phase_zero() -> None:
    x = np.random.default_rng(3).standard_normal(400).astype(np.float32) * 1000
    up = audio.StreamingUpsampler(24000)
    y = np.concatenate([up.process(x), up.flush()])
    assert np.allclose(y[::3], x, atol=1e-2)


def test_pcm16_conversion_rounds_and_clips_without_wrapping() -> None:
    values = np.array([0.4, 0.5, 1.5, -0.5, -1.6, 32767.4, 32768.0, 40000.0, -32768.6, -50000.0], np.float32)
    out = np.frombuffer(audio.float_to_pcm16(values), dtype="<i2")
    assert out.tolist() == [0, 0, 2, 0, -2, 32767, 32767, 32767, -32768, -32768]


def test_transcoder_outputs_pcm16le_at_three_times_the_rate() -> None:
    tc = audio.PcmTranscoder(24000)
    ulaw = audio.ulaw_encode(8000 * np.sin(np.arange(800) / 5))
    out = tc.process(ulaw) + tc.flush()
    assert len(out) == 800 * 3 * 2
    assert tc.bytes_per_input_byte == 6


def test_reset_starts_a_new_stream() -> None:
    tc = audio.PcmTranscoder(24000)
    ulaw = audio.ulaw_encode(8000 * np.sin(np.arange(480) / 5))
    first = tc.process(ulaw) + tc.flush()
    tc.process(audio.ulaw_encode(np.full(300, 9000)))
    tc.reset()
    assert tc.process(ulaw) + tc.flush() == first


def test_passthrough_for_pcmu() -> None:
    tc = audio.make_transcoder("pcmu")
    assert tc.process(b"\x01\x02") == b"\x01\x02" and tc.flush() == b""


# ------------------------------------------------------------------ properties

chunkings = st.lists(st.integers(min_value=0, max_value=700), min_size=0, max_size=25)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=4000),
    chunkings,
    st.sampled_from([24000, 16000]),
    st.integers(min_value=0, max_value=2**31),
)
def test_any_chunking_gives_the_same_output_and_exact_length(n: int, cuts: list[int], rate: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    one = audio.PcmTranscoder(rate)
    whole = one.process(codes) + one.flush()
    streaming = audio.PcmTranscoder(rate)
    parts, position = [], 0
    for size in cuts:
        parts.append(streaming.process(codes[position : position + size]))
        position += size
    parts.append(streaming.process(codes[position:]))
    parts.append(streaming.flush())
    chunked = b"".join(parts)
    assert len(whole) == n * (rate // 8000) * 2
    a = np.frombuffer(whole, dtype="<i2").astype(np.int32)
    b = np.frombuffer(chunked, dtype="<i2").astype(np.int32)
    assert len(a) == len(b)
    assert (np.abs(a - b).max() if len(a) else 0) <= 1


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=3000), st.integers(min_value=0, max_value=2**31))
def test_loud_input_never_wraps(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Full-scale alternating codes drive the filter's overshoot past int16.
    codes = np.where(rng.random(n) < 0.5, 0x00, 0x80).astype(np.uint8).tobytes()
    out = audio.PcmTranscoder(24000).process(codes)
    up = audio.StreamingUpsampler(24000)
    ideal = up.process(audio.ULAW_TO_INT16[np.frombuffer(codes, np.uint8)].astype(np.float32))
    pcm = np.frombuffer(out, dtype="<i2")
    assert len(pcm) == len(ideal)
    # Wherever the float output is beyond full scale, the int16 output is pinned, not wrapped.
    assert np.all(pcm[ideal > 32767] == 32767)
    assert np.all(pcm[ideal < -32768] == -32768)
