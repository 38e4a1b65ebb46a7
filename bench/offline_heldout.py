"""The offline engine beyond its own sample call: a held-out set of synthesized calls.

    apt-get install espeak-ng        # Debian's package; the synthesizer for the set
    .venv/bin/python bench/offline_heldout.py [--gates 0.2,0.225,0.25,0.3]

Each "call" is the held-out script below spoken by one espeak-ng voice at one rate and noise
level, sent through the same path as a phone call (8 kHz μ-law, then the engine's 16 kHz
transcoder). None of these sentences is in the knowledge base or the language data: the
knowledge questions are phrased differently, and there are off-topic and small-talk turns.
Reports word error rate, and for each retrieval gate: right cards, wrong cards (per call) and
recall. The engine should prefer no card to a wrong card.

`--recognizer whisper` (the `offline` extra) measures Whisper in place of PocketSphinx
(`--whisper-model tiny.en|base`); the confidence floors then apply to Whisper's mean token
probability.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.audio.callfile import load_call_audio  # noqa: E402
from relay.audio.dsp import PcmTranscoder  # noqa: E402
from relay.engines.local import Heard, LocalConnector  # noqa: E402
from relay.knowledge.base import KnowledgeBase, word_error_rate  # noqa: E402
from relay.knowledge.retrieval import Retriever  # noqa: E402

# (what the customer says, the passage id that answers it or None)
SCRIPT: list[tuple[str, str | None]] = [
    ("Good afternoon, I hope you can help me today.", None),
    ("My parcel still has not arrived, can you check where it is?", "orders.md#where-is-my-order"),
    ("I need the delivery to go to my office instead of my home.", "orders.md#can-i-change-my-delivery-address"),
    ("The lamp I got is smashed to pieces.", "orders.md#my-package-arrived-damaged"),
    ("When does the money come back to my card?", "refunds.md#how-long-does-a-refund-take"),
    ("I would like to send the shoes back.", "refunds.md#can-i-return-my-order"),
    ("I can not log in because I forgot my password.", "account.md#how-do-i-reset-my-password"),
    ("My card expired, how do I put in the new one?", "account.md#how-do-i-update-my-credit-card"),
    ("Please end my membership at the end of the month.", "account.md#how-do-i-cancel-my-subscription"),
    ("Is the warranty valid for two years?", None),
    ("Do you have this coat in a larger size?", None),
    ("What time does your store close on Sunday?", None),
    ("Great, thanks a lot, goodbye.", None),
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3"]
RATES = [150, 180]
NOISE_SNR_DB = [None, 15.0]  # clean, and white noise at 15 dB SNR


def synthesize(text: str, voice: str, rate: int, folder: Path) -> Path:
    out = folder / f"{abs(hash((text, voice, rate)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(out), text], check=True)
    return out


def add_noise(ulaw_call: bytes, snr_db: float | None, rng: np.random.Generator) -> bytes:
    if snr_db is None:
        return ulaw_call
    from relay.audio.dsp import ulaw_decode, ulaw_encode

    samples = ulaw_decode(ulaw_call).astype(np.float64)
    power = float(np.mean(samples**2)) or 1.0
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(samples))
    return ulaw_encode(np.clip(samples + noise, -32768, 32767))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gates", default="0.2,0.225,0.25,0.3,0.35")
    parser.add_argument("--confidences", default="0,0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--recognizer", choices=["pocketsphinx", "whisper"], default="pocketsphinx")
    parser.add_argument("--whisper-model", default="tiny.en", help="tiny.en or base")
    parser.add_argument("--beam", type=int, default=5, help="Whisper beam size")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is needed: apt-get install espeak-ng", file=sys.stderr)
        return 2
    gates = [float(g) for g in args.gates.split(",")]
    engine = LocalConnector(Retriever(KnowledgeBase.load(ROOT / "prompts" / "knowledge")))
    transcribe: Callable[[bytes], Awaitable[Heard]] = engine.recognizer.transcribe
    if args.recognizer == "whisper":
        from relay.engines.whisper import WhisperRecognizer

        whisper = WhisperRecognizer(args.whisper_model, beam_size=args.beam)
        transcribe = whisper.transcribe
    print(
        f"recognizer: {args.recognizer}"
        + (f" {args.whisper_model}, beam {args.beam}" if args.recognizer == "whisper" else "")
    )
    rng = np.random.default_rng(7)
    errors = words = 0
    by_noise: dict[float | None, list[int]] = {snr: [0, 0] for snr in NOISE_SNR_DB}  # errors, words
    results: list[tuple[str | None, str | None, float, float]] = []  # expected, best, score, confidence
    calls = 0
    with tempfile.TemporaryDirectory(prefix="relay-heldout-") as tmp:
        for voice in VOICES:
            for rate in RATES:
                for snr in NOISE_SNR_DB:
                    calls += 1
                    for text, expected in SCRIPT:
                        ulaw = load_call_audio(synthesize(text, voice, rate, Path(tmp)))["inbound"]
                        transcoder = PcmTranscoder(16000)
                        pcm = transcoder.process(add_noise(ulaw, snr, rng)) + transcoder.flush()
                        heard = await transcribe(pcm)
                        e, n = word_error_rate(text, heard.text)
                        errors, words = errors + e, words + n
                        by_noise[snr][0] += e
                        by_noise[snr][1] += n
                        hits = engine.retriever.search(heard.text, k=1)
                        best = hits[0] if hits else None
                        results.append(
                            (expected, best.passage.id if best else None, best.score if best else 0.0, heard.confidence)
                        )
    await engine.aclose()
    if args.recognizer == "whisper":
        whisper.close()
    answerable = sum(1 for expected, *_ in results if expected)
    print(
        f"{calls} calls ({len(VOICES)} voices × {len(RATES)} rates × {len(NOISE_SNR_DB)} noise levels), "
        f"{len(SCRIPT)} turns each; word error rate {errors / words:.1%} ({errors}/{words} words)"
    )
    for snr, (e, n) in by_noise.items():
        print(f"  {'clean' if snr is None else f'{snr:g} dB SNR'}: word error rate {e / n:.1%} ({e}/{n} words)")
    confidences = [float(c) for c in args.confidences.split(",")]
    header = f"{'gate':>6} {'confidence':>10} {'right cards':>12} {'wrong cards':>12} {'wrong/call':>11} {'recall':>7}"
    print(header + f" {'precision':>10}")
    for gate in gates:
        for floor in confidences:
            shown = [
                (exp, got) for exp, got, score, conf in results if got is not None and score >= gate and conf >= floor
            ]
            right = sum(1 for expected, got in shown if got == expected)
            wrong = len(shown) - right
            precision = right / len(shown) if shown else 1.0
            print(
                f"{gate:6.3f} {floor:10.2f} {right:12d} {wrong:12d} {wrong / calls:11.2f} "
                f"{right / answerable:7.1%} {precision:10.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
