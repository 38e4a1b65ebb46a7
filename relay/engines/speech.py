"""What a turn detector and a recognizer hand the offline engine (pure data).

Its own module so that both recognizers (PocketSphinx in relay/engines/local.py, Whisper in
relay/engines/whisper.py) and the engine can share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpeechBegan:
    at_sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    audio: bytes  # the utterance with pre-roll, PCM16 LE at 16 kHz


@dataclass(frozen=True, slots=True)
class Heard:
    text: str
    confidence: float  # 0–1: mean word posterior
