"""Offline engine: the same session seam as the OpenAI adapter, on this machine only.

Recognition is Whisper behind the Silero VAD (relay/engines/whisper.py) when the `offline`
extra is installed, else PocketSphinx (its en-us acoustic model ships in the PyPI package)
behind an energy VAD, with a trigram language model built at startup from the knowledge base
(RELAY_OFFLINE_RECOGNIZER chooses). A passage is picked by the relay's retrieval
(relay/knowledge/retrieval.py). It emits the same `ModelEvent`s as the Realtime adapter, so the bridge,
publisher and metrics run unchanged. It is a real recognizer and real retrieval, measured by
`bench/offline_accuracy.py`, `bench/offline_heldout.py` and `bench/whisper_bench.py`; it is
meant for evaluation and demos, not for call volume (a few concurrent calls per machine).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from relay.engines.speech import Heard, SpeechBegan, SpeechEnded
from relay.knowledge.base import KnowledgeBase, build_arpa
from relay.knowledge.retrieval import DEFAULT_MIN_SCORE, Retriever
from relay.model.events import (
    ModelEvent,
    ResponseDone,
    ResponseStarted,
    ResponseTextDone,
    SessionClosed,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
)
from relay.model.session import RealtimeConnectError, RealtimeSession, SessionClosedError, SessionConfig

log = logging.getLogger("relay.engines.local")

SAMPLE_RATE = 16000
FRAME = 320  # 20 ms at 16 kHz


# ---------------------------------------------------------------------------- VAD (pure)


class EnergyVad:
    """Adaptive-floor energy detector with hysteresis, on 20 ms frames.

    Speech starts when a frame is `start_db` above the noise floor (and above an absolute
    floor) for `min_speech_frames`; it ends after `silence_ms` below `stop_db`.
    """

    def __init__(
        self,
        *,
        start_db: float = 14.0,
        stop_db: float = 9.0,
        min_speech_frames: int = 3,
        silence_ms: int = 600,
        preroll_ms: int = 300,
        absolute_floor_dbfs: float = -55.0,
        max_utterance_s: float = 20.0,
    ) -> None:
        self._start_db, self._stop_db = start_db, stop_db
        self._min_speech = min_speech_frames
        self._silence_frames = silence_ms // 20
        self._preroll = preroll_ms // 20
        self._absolute = absolute_floor_dbfs
        self._max_frames = int(max_utterance_s * 50)
        self._floor = -70.0
        self._pending = np.empty(0, dtype=np.int16)
        self._history: list[npt.NDArray[np.int16]] = []
        self._utterance: list[npt.NDArray[np.int16]] = []
        self._loud_run = 0
        self._quiet_run = 0
        self._in_speech = False
        self._position = 0

    def feed(self, pcm: bytes) -> list[SpeechBegan | SpeechEnded]:
        samples = np.concatenate((self._pending, np.frombuffer(pcm, dtype="<i2")))
        usable = len(samples) - len(samples) % FRAME
        self._pending = samples[usable:]
        events: list[SpeechBegan | SpeechEnded] = []
        for start in range(0, usable, FRAME):
            frame = samples[start : start + FRAME]
            event = self._frame(frame)
            if event is not None:
                events.append(event)
            self._position += FRAME
        return events

    def _frame(self, frame: npt.NDArray[np.int16]) -> SpeechBegan | SpeechEnded | None:
        energy = float(np.mean(frame.astype(np.float64) ** 2))
        level = 10 * np.log10(energy / 32768.0**2 + 1e-12)
        if not self._in_speech:
            self._history.append(frame)
            if len(self._history) > self._preroll + self._min_speech:
                self._history.pop(0)
            if level > max(self._floor + self._start_db, self._absolute):
                self._loud_run += 1
                if self._loud_run >= self._min_speech:
                    self._in_speech = True
                    self._utterance = list(self._history)
                    self._quiet_run = 0
                    return SpeechBegan(self._position - (len(self._history) - 1) * FRAME)
            else:
                self._loud_run = 0
                # Track the floor: fall fast, rise slowly.
                self._floor = level if level < self._floor else 0.98 * self._floor + 0.02 * level
            return None
        self._utterance.append(frame)
        if level < max(self._floor + self._stop_db, self._absolute):
            self._quiet_run += 1
        else:
            self._quiet_run = 0
        if self._quiet_run >= self._silence_frames or len(self._utterance) >= self._max_frames:
            return self._end()
        return None

    def _end(self) -> SpeechEnded:
        audio = np.concatenate(self._utterance).astype("<i2").tobytes()
        self._in_speech = False
        self._utterance = []
        self._history = []
        self._loud_run = self._quiet_run = 0
        return SpeechEnded(audio)

    def flush(self) -> SpeechEnded | None:
        return self._end() if self._in_speech else None


# ---------------------------------------------------------------------------- recognizer


_FILLERS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "++NOISE++"})


class TurnDetector(Protocol):
    def feed(self, pcm: bytes) -> list[SpeechBegan | SpeechEnded]: ...

    def flush(self) -> SpeechEnded | None: ...


class SpeechRecognizer(Protocol):
    """What the offline engine needs of a recognizer (PocketSphinx here, Whisper in
    relay/engines/whisper.py)."""

    name: str
    vocabulary_words: frozenset[str]

    async def transcribe(self, pcm16: bytes) -> Heard: ...

    async def warm_up(self) -> None: ...

    def new_vad(self) -> TurnDetector: ...

    def close(self) -> None: ...

    async def close_when_idle(self) -> None: ...


class Recognizer:
    """PocketSphinx with an in-domain LM and a dictionary cut down to its words.

    Runs on one worker thread that owns the decoder (PocketSphinx is not thread-safe).
    """

    name = "pocketsphinx"

    def __init__(self, kb: KnowledgeBase) -> None:
        from pocketsphinx import get_model_path

        model = Path(get_model_path()) / "en-us"
        self._hmm = str(model / "en-us")
        full_dict = model / "cmudict-en-us.dict"
        pronunciations: dict[str, list[str]] = {}
        with full_dict.open(encoding="utf-8") as handle:
            for line in handle:
                word, _, phones = line.strip().partition(" ")
                base = word.split("(")[0]
                pronunciations.setdefault(base, []).append(f"{word} {phones}")
        arpa = build_arpa(kb.sentences(), vocabulary=set(pronunciations))
        vocabulary = {
            line.split("\t")[1]
            for line in arpa.splitlines()
            if line.count("\t") == 2 and " " not in line.split("\t")[1]
        }
        self._dir = tempfile.TemporaryDirectory(prefix="relay-asr-")
        self._lm = Path(self._dir.name) / "domain.lm"
        self._lm.write_text(arpa, encoding="utf-8")
        self._dict = Path(self._dir.name) / "domain.dict"
        lines = [p for w in sorted(vocabulary) if w in pronunciations for p in pronunciations[w]]
        self._dict.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.vocabulary_words = frozenset(vocabulary)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")
        self._decoder: Any = None

    def _ensure_decoder(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Config, Decoder

            config = Config(
                hmm=self._hmm, lm=str(self._lm), dict=str(self._dict), samprate=SAMPLE_RATE, loglevel="FATAL"
            )
            self._decoder = Decoder(config)
        return self._decoder

    def _transcribe_sync(self, pcm16: bytes) -> Heard:
        decoder = self._ensure_decoder()
        decoder.start_utt()
        decoder.process_raw(pcm16, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        if hypothesis is None:
            return Heard("", 0.0)
        # Confidence: the mean posterior of the words the decoder chose (fillers left out).
        posteriors = [float(s.prob) for s in decoder.seg() if s.word.split("(")[0] not in _FILLERS]
        return Heard(str(hypothesis.hypstr), sum(posteriors) / len(posteriors) if posteriors else 0.0)

    async def transcribe(self, pcm16: bytes) -> Heard:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._transcribe_sync, pcm16)

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_decoder)

    def new_vad(self) -> EnergyVad:
        return EnergyVad()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._dir.cleanup()

    async def close_when_idle(self) -> None:
        """Close after the transcriptions already queued on this recognizer are done."""
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self._dir.cleanup()


def make_recognizer(
    kb: KnowledgeBase, choice: str = "pocketsphinx", whisper_model: str = "tiny.en"
) -> SpeechRecognizer:
    """PocketSphinx unless Whisper is asked for (`whisper`, or `auto` with the extra installed)."""
    from relay.engines.whisper import WhisperRecognizer, choose_recognizer

    kind, reason = choose_recognizer(choice, whisper_model)
    if kind == "whisper":
        return WhisperRecognizer(whisper_model)
    log.info("offline recognizer: pocketsphinx", extra={"reason": reason})
    return Recognizer(kb)


# ---------------------------------------------------------------------------- the seam


class LocalConnector:
    def __init__(
        self,
        retriever: Retriever,
        *,
        min_score: float = DEFAULT_MIN_SCORE,
        min_confidence: float = 0.0,
        recognizer: str = "pocketsphinx",
        whisper_model: str = "tiny.en",
    ) -> None:
        """`retriever` is the relay's (one index per knowledge base, shared with the tool);
        `recognizer` is RELAY_OFFLINE_RECOGNIZER (`auto`, `whisper` or `pocketsphinx`)."""
        self.retriever = retriever
        self.recognizer: SpeechRecognizer = make_recognizer(retriever.knowledge, recognizer, whisper_model)
        self.min_score = min_score
        self.min_confidence = min_confidence
        self._ids = itertools.count(1)

    @property
    def kb(self) -> KnowledgeBase:
        return self.retriever.knowledge

    async def use_knowledge(self, retriever: Retriever) -> None:
        """Swap in a reloaded knowledge base (and its index): a new language model, built off
        the event loop. Turns already being transcribed finish on the old recognizer."""
        if not isinstance(self.recognizer, Recognizer):
            self.retriever = retriever  # Whisper's open vocabulary does not depend on the knowledge
            return
        recognizer = await asyncio.get_running_loop().run_in_executor(None, Recognizer, retriever.knowledge)
        await recognizer.warm_up()
        old = self.recognizer
        self.retriever, self.recognizer = retriever, recognizer
        await old.close_when_idle()

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_local_{next(self._ids):06d}"

    async def open(self, config: SessionConfig) -> RealtimeSession:
        if config.audio_format != "pcm16k":
            raise RealtimeConnectError("the local engine takes 16 kHz PCM", fatal=True)
        return LocalSession(self, answer=not config.transcription_only)

    async def aclose(self) -> None:
        self.recognizer.close()


class LocalSession:
    def __init__(self, engine: LocalConnector, *, answer: bool = True) -> None:
        self._engine = engine
        self._answer_turns = answer
        self._vad = engine.recognizer.new_vad()
        # One decode queue per call: its turns are transcribed in order, and a call never
        # holds more than one of the recognizer's workers while other calls wait.
        self._decode_order = asyncio.Lock()
        self._queue: asyncio.Queue[ModelEvent] = asyncio.Queue()
        self._closed = False
        self._item: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def send_audio(self, audio: bytes) -> None:
        if self._closed:
            raise SessionClosedError("session closed")
        events = self._vad.feed(audio)
        for event in events:
            if isinstance(event, SpeechBegan):
                self._item = self._engine.next_id("item")
                self._queue.put_nowait(SpeechStarted(self._item))
            else:
                self._turn_ended(event.audio)
        if events:
            # Let the reader deliver them before the sender goes on: the bridge times a turn
            # by the audio sent so far, which must not run ahead when audio comes faster
            # than real time (a remote model's events carry that lag as network latency).
            await asyncio.sleep(0)

    def _turn_ended(self, utterance: bytes) -> None:
        item = self._item or self._engine.next_id("item")
        self._item = None
        self._queue.put_nowait(SpeechStopped(item))
        # As the Realtime API does: the turn's response starts when the turn ends, so the
        # answer is tied to its turn however long recognition takes.
        response = self._engine.next_id("resp") if self._answer_turns else None
        if response is not None:
            self._queue.put_nowait(ResponseStarted(response))
        task = asyncio.create_task(self._answer(item, utterance, response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, item: str, utterance: bytes, response: str | None) -> None:
        engine = self._engine
        async with self._decode_order:
            heard = await engine.recognizer.transcribe(utterance)
        text = heard.text
        self._queue.put_nowait(TranscriptCompleted(item, text))
        if response is None:
            return
        hits = engine.retriever.search(text, k=1, min_score=engine.min_score)
        if hits and heard.confidence < engine.min_confidence:
            hits = []  # a card from words the recognizer was unsure of is more often wrong than right
        if hits:
            passage = hits[0].passage
            body = {
                "question": passage.title,
                "answer": passage.text,
                "sources": [passage.id],
                "score": round(hits[0].score, 3),
            }
        else:
            body = {}
        self._queue.put_nowait(ResponseTextDone(response, engine.next_id("item"), orjson.dumps(body).decode()))
        self._queue.put_nowait(ResponseDone(response, "completed", None))

    async def add_context(self, text: str) -> None:
        return None  # retrieval is stateless: nothing to re-seed

    async def send_tool_result(self, call_id: str, output: str, *, more_tools: bool) -> None:
        return None  # the offline engine retrieves by itself and never calls tools

    async def end_turn(self, *, respond: bool) -> None:
        tail = self._vad.flush()  # the utterance in progress ends here
        if tail is not None:
            self._turn_ended(tail.audio)

    async def events(self) -> AsyncIterator[ModelEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, SessionClosed):
                return

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tail = self._vad.flush()
        if tail is not None:
            self._turn_ended(tail.audio)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queue.put_nowait(SessionClosed(1000, "closed"))
