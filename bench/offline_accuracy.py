"""Offline engine accuracy on the bundled sample call (run by hand).

    .venv/bin/python bench/offline_accuracy.py [--file samples/sample_call.wav]

Runs the relay's own path: WAV → 8 kHz μ-law → 16 kHz (audio core) → energy VAD →
PocketSphinx → character n-gram TF-IDF retrieval. Prints word error rate against the script, with the
in-domain language model and with PocketSphinx's general English model, and the retrieval
hit rate against the answers the script expects. `--recognizer whisper` (the `offline` extra)
runs the Silero VAD and Whisper in place of the energy VAD and the in-domain PocketSphinx.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.audio.callfile import load_call_audio  # noqa: E402
from relay.audio.dsp import PcmTranscoder  # noqa: E402
from relay.engines.local import EnergyVad, Heard, LocalConnector, SpeechEnded  # noqa: E402
from relay.engines.whisper import SileroVad, WhisperRecognizer  # noqa: E402
from relay.knowledge.base import KnowledgeBase, word_error_rate  # noqa: E402
from relay.knowledge.retrieval import Retriever  # noqa: E402


def script(path: Path) -> list[tuple[str, str | None]]:
    turns = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            text, _, target = line.partition("=>")
            target = target.strip()
            turns.append((text.strip(), None if target == "none" else target.split(": ", 1)[1]))
    return turns


def general_model_transcribe(utterances: list[bytes]) -> list[str]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    out = []
    for audio in utterances:
        decoder.start_utt()
        decoder.process_raw(audio, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        out.append(hyp.hypstr if hyp else "")
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=str(ROOT / "samples" / "sample_call.wav"))
    parser.add_argument("--script", default=str(ROOT / "samples" / "sample_call.txt"))
    parser.add_argument("--recognizer", choices=["pocketsphinx", "whisper"], default="pocketsphinx")
    parser.add_argument("--whisper-model", default="tiny.en", help="tiny.en or base")
    args = parser.parse_args()

    turns = script(Path(args.script))
    ulaw = load_call_audio(Path(args.file))["inbound"]
    transcoder = PcmTranscoder(16000)
    pcm = transcoder.process(ulaw) + transcoder.flush()
    engine = LocalConnector(Retriever(KnowledgeBase.load(ROOT / "prompts" / "knowledge")))
    transcribe: Callable[[bytes], Awaitable[Heard]] = engine.recognizer.transcribe
    vad: EnergyVad | SileroVad = EnergyVad()
    if args.recognizer == "whisper":
        whisper = WhisperRecognizer(args.whisper_model)
        await whisper.warm_up()
        transcribe, vad = whisper.transcribe, whisper.new_vad()
    utterances = [e.audio for e in vad.feed(pcm) if isinstance(e, SpeechEnded)]
    if (last := vad.flush()) is not None:
        utterances.append(last.audio)
    print(f"recognizer: {args.recognizer}" + (f" {args.whisper_model}" if args.recognizer == "whisper" else ""))
    print(f"{len(utterances)} utterances found by the VAD, {len(turns)} turns in the script")

    started = time.process_time()
    domain = [(await transcribe(u)).text for u in utterances]
    domain_cpu = time.process_time() - started
    general = general_model_transcribe(utterances)

    errors_d = errors_g = total = hits = expected_hits = false_alarms = 0
    print(f"{'reference':45} | {'in-domain LM':40} | general LM")
    for (reference, target), hyp_d, hyp_g in zip(turns, domain, general, strict=False):
        e_d, n = word_error_rate(reference, hyp_d)
        e_g, _ = word_error_rate(reference, hyp_g)
        errors_d, errors_g, total = errors_d + e_d, errors_g + e_g, total + n
        found = engine.retriever.search(hyp_d, k=1, min_score=engine.min_score)
        answered = found[0].passage.title if found else None
        if target is not None:
            expected_hits += 1
            hits += answered == target
        elif answered is not None:
            false_alarms += 1
        print(f"{reference[:45]:45} | {hyp_d[:40]:40} | {hyp_g[:40]}")
    print()
    print(f"word error rate, {args.recognizer:13}: {errors_d / total:6.1%}  ({errors_d}/{total} words)")
    print(f"word error rate, general LM   : {errors_g / total:6.1%}  ({errors_g}/{total} words)")
    print(f"retrieval hit rate            : {hits}/{expected_hits}  (suggestions on small talk: {false_alarms})")
    audio_s = len(pcm) / 32000
    print(f"recognition CPU               : {domain_cpu:.2f} s for {audio_s:.1f} s of call audio")
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
