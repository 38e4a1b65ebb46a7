"""Offline recognizers on live-paced calls: transcript delay, real-time factor, CPU and memory.

    apt-get install espeak-ng        # the synthesizer for the calls
    .venv/bin/python bench/whisper_bench.py --recognizer whisper --calls 1,4
    .venv/bin/python bench/whisper_bench.py --recognizer pocketsphinx --calls 1,4

Each call is the held-out script (bench/offline_heldout.py) spoken by one espeak-ng voice, turns
separated by `--pause` seconds, at `--snr` dB of white noise, sent as 8 kHz μ-law in 20 ms frames
at real-time pace through the relay's transcoder, the recognizer's VAD and the recognizer, as
the offline engine runs them (one decode queue per call). Reported per run:

- turns and finals (a VAD that merges turns gives fewer finals than turns);
- word error rate of the call's finals against its script;
- delay: from the end of a turn's speech in the audio to its final transcript, p50/p95;
- real-time factor: transcription wall time (queueing included) per second of utterance audio;
- CPU per call (share of one core over the call) and resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.offline_heldout import SCRIPT, VOICES, add_noise, synthesize  # noqa: E402
from relay.audio.callfile import load_call_audio  # noqa: E402
from relay.audio.dsp import PcmTranscoder, ulaw_decode, ulaw_encode  # noqa: E402
from relay.engines.local import EnergyVad, Heard, Recognizer, SpeechBegan, SpeechEnded  # noqa: E402
from relay.knowledge.base import KnowledgeBase, word_error_rate  # noqa: E402

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law


class Vad(Protocol):
    def feed(self, pcm: bytes) -> list[SpeechBegan | SpeechEnded]: ...
    def flush(self) -> SpeechEnded | None: ...


class AnyRecognizer(Protocol):
    async def transcribe(self, pcm16: bytes) -> Heard: ...
    async def warm_up(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Call:
    voice: str
    ulaw: bytes
    turn_ends_s: list[float]  # where each turn's speech ends in the call audio
    reference: str


@dataclass
class CallResult:
    finals: list[str] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    decode_s: float = 0.0
    utterance_audio_s: float = 0.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build_call(voice: str, rate: int, pause_s: float, snr: float | None, folder: Path, seed: int) -> Call:
    rng = np.random.default_rng(seed)
    pieces: list[npt.NDArray[np.int16]] = [np.zeros(int(0.5 * 8000), dtype=np.int16)]
    ends: list[float] = []
    at = len(pieces[0])
    for text, _ in SCRIPT:
        speech = ulaw_decode(load_call_audio(synthesize(text, voice, rate, folder))["inbound"])
        loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > 300)
        last = int(loud[-1]) + 1 if len(loud) else len(speech)
        ends.append((at + last) / 8000)
        pieces += [speech, np.zeros(int(pause_s * 8000), dtype=np.int16)]
        at += len(speech) + int(pause_s * 8000)
    ulaw = ulaw_encode(np.concatenate(pieces))
    return Call(voice, add_noise(ulaw, snr, rng), ends, " ".join(text for text, _ in SCRIPT))


async def run_call(call: Call, recognizer: AnyRecognizer, vad: Vad, started: float) -> CallResult:
    result = CallResult()
    transcoder = PcmTranscoder(16000)
    order = asyncio.Lock()  # one decode queue per call, as the offline engine has
    tasks: list[asyncio.Task[None]] = []

    async def final(audio: bytes, fed_s: float) -> None:
        async with order:
            begun = time.perf_counter()
            heard = await recognizer.transcribe(audio)
            done = time.perf_counter()
        result.decode_s += done - begun
        result.utterance_audio_s += len(audio) / 32000
        result.finals.append(heard.text)
        # The turn this utterance closes: the last one whose speech ended before the VAD spoke.
        ended = [end for end in call.turn_ends_s if end <= fed_s]
        if ended:
            result.delays_s.append(done - (started + ended[-1]))

    def handle(events: list[SpeechBegan | SpeechEnded], fed_s: float) -> None:
        for event in events:
            if isinstance(event, SpeechEnded):
                tasks.append(asyncio.create_task(final(event.audio, fed_s)))

    for index in range(0, len(call.ulaw), FRAME_BYTES):
        due = started + index / 8000
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = call.ulaw[index : index + FRAME_BYTES]
        handle(vad.feed(transcoder.process(frame)), (index + len(frame)) / 8000)
    tail = vad.flush()
    if tail is not None:
        handle([tail], len(call.ulaw) / 8000)
    await asyncio.gather(*tasks)
    return result


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recognizer", choices=["whisper", "pocketsphinx"], default="whisper")
    parser.add_argument("--model", default="tiny.en", help="Whisper model: tiny.en or base")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--calls", default="1,4")
    parser.add_argument("--rate", type=int, default=160)
    parser.add_argument("--pause", type=float, default=1.5)
    parser.add_argument("--snr", type=float, default=None, help="white noise at this SNR (dB); default clean")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is needed: apt-get install espeak-ng", file=sys.stderr)
        return 2
    before = rss_mb()
    recognizer: AnyRecognizer
    if args.recognizer == "whisper":
        from relay.engines.whisper import WhisperRecognizer

        whisper = WhisperRecognizer(args.model, beam_size=args.beam)
        recognizer, new_vad = whisper, whisper.new_vad
        label = f"whisper {args.model} (beam {args.beam})"
    else:
        recognizer = Recognizer(KnowledgeBase.load(ROOT / "prompts" / "knowledge"))
        new_vad, label = EnergyVad, "pocketsphinx"
    await recognizer.warm_up()
    loaded = rss_mb()
    print(f"{label}: resident memory {before:.0f} MB before the recognizer, {loaded:.0f} MB loaded")
    print(
        f"{'calls':>5} {'turns':>6} {'finals':>7} {'WER':>6} {'delay p50':>10} {'delay p95':>10} "
        f"{'RTF':>6} {'CPU/call':>9} {'peak RSS':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="relay-whisper-bench-") as tmp:
        for count in [int(c) for c in args.calls.split(",")]:
            calls = [
                build_call(VOICES[i % len(VOICES)], args.rate, args.pause, args.snr, Path(tmp), seed=i)
                for i in range(count)
            ]
            cpu = time.process_time()
            started = time.perf_counter() + 0.1
            results = await asyncio.gather(*(run_call(c, recognizer, new_vad(), started) for c in calls))
            cpu = time.process_time() - cpu
            duration = max(len(c.ulaw) for c in calls) / 8000
            errors = words = 0
            for call, result in zip(calls, results, strict=True):
                e, n = word_error_rate(call.reference, " ".join(result.finals))
                errors, words = errors + e, words + n
            delays = [d for r in results for d in r.delays_s]
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rtf = sum(r.decode_s for r in results) / max(1e-9, sum(r.utterance_audio_s for r in results))
            print(
                f"{count:5d} {count * len(SCRIPT):6d} {sum(len(r.finals) for r in results):7d} "
                f"{errors / words:6.1%} {percentile(delays, 50):9.2f}s {percentile(delays, 95):9.2f}s "
                f"{rtf:6.3f} {cpu / duration / count:9.1%} {peak_mb:7.0f}MB"
            )
    recognizer.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
