"""Synthesize samples/sample_call.wav from samples/sample_call.txt (run once, by hand).

Needs espeak-ng (Debian: apt-get install espeak-ng). The result is committed, so the demo
and tests never need a speech synthesizer.

    .venv/bin/python samples/make_sample_call.py
"""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np

from relay.audio.dsp import resample_file_audio

HERE = Path(__file__).resolve().parent
RATE = 8000
GAP_S = 1.2


def turns() -> list[str]:
    lines = (HERE / "sample_call.txt").read_text().splitlines()
    return [line.split("=>")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def speak(text: str) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "-p", "45", "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        return resample_file_audio(samples, w.getframerate(), RATE)


def main() -> None:
    gap = np.zeros(int(GAP_S * RATE))
    pieces = [gap]
    for text in turns():
        pieces += [speak(text), gap]
    audio = np.concatenate(pieces)
    audio = 0.7 * 32767 * audio / np.max(np.abs(audio))
    rng = np.random.default_rng(0)
    audio += rng.normal(0, 30, len(audio))  # a little line noise, as on a phone call
    out = HERE / "sample_call.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(np.rint(audio), -32768, 32767).astype("<i2").tobytes())
    print(f"wrote {out} ({len(audio) / RATE:.1f} s)")


if __name__ == "__main__":
    main()
