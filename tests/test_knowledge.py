"""Pure parts of the offline engine: knowledge files, retrieval, language model, VAD, WER."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from relay.knowledge import BM25, KnowledgeBase, KnowledgeError, build_arpa, parse_entries, word_error_rate
from relay.local_engine import EnergyVad, SpeechBegan, SpeechEnded

KNOWLEDGE = Path(__file__).resolve().parent.parent / "prompts" / "knowledge"


def test_entries_parse_with_several_phrasings() -> None:
    entries = parse_entries("# t\nQ: a?\nQ: b?\nA: c.\n\nQ: d?\nA: e.\n", "x.md")
    assert [(e.questions, e.answer) for e in entries] == [(("a?", "b?"), "c."), (("d?",), "e.")]


@pytest.mark.parametrize("text", ["A: no question\n", "Q: dangling?\n", "hello\n"])
def test_malformed_knowledge_is_refused_with_the_line(text: str) -> None:
    with pytest.raises(KnowledgeError, match=r"x\.md"):
        parse_entries(text, "x.md")


@pytest.fixture(scope="module")
def retriever() -> BM25:
    return BM25(KnowledgeBase.load(KNOWLEDGE))


@pytest.mark.parametrize(
    ("utterance", "question"),
    [
        ("i ordered a jacket last week where is my order", "Where is my order?"),
        ("can i change my delivery address", "Can I change my delivery address?"),
        ("and how long bill refund take", "How long does a refund take?"),  # recognizer slips survive
        ("also how do i get my password", "How do I reset my password?"),
        ("the thing i received is broken", "The item I received is broken."),
    ],
)
def test_questions_find_their_answer_above_the_threshold(retriever: BM25, utterance: str, question: str) -> None:
    match = retriever.search(utterance)
    assert match is not None and match.question == question and match.score >= 1.2


@pytest.mark.parametrize(
    "small_talk", ["hi and get for taking my call", "thank you that is all", "can you hear me", "hello good morning"]
)
def test_small_talk_stays_below_the_threshold(retriever: BM25, small_talk: str) -> None:
    match = retriever.search(small_talk)
    assert match is None or match.score < 1.2


def test_the_language_model_is_a_proper_distribution() -> None:
    arpa = build_arpa(["where is my order", "where is my package", "is my order late"])
    sections: dict[int, dict[tuple[str, ...], tuple[float, float]]] = defaultdict(dict)
    order = 0
    for line in arpa.splitlines():
        if line.startswith("\\") and "-grams:" in line:
            order = int(line[1])
        elif order and line.strip() and not line.startswith("\\"):
            fields = line.split("\t")
            backoff = float(fields[2]) if len(fields) > 2 else 0.0
            sections[order][tuple(fields[1].split())] = (float(fields[0]), backoff)
    assert "ngram 3=" in arpa and sections[3]
    unigrams = {w: 10**p for (w,), (p, _) in sections[1].items() if w != "<s>"}
    assert math.isclose(sum(unigrams.values()), 1.0, rel_tol=1e-6)

    def bigram(u: str, w: str) -> float:
        if (u, w) in sections[2]:
            return float(10 ** sections[2][(u, w)][0])
        return float(10 ** sections[1][(u,)][1] * unigrams[w])

    for context in ("<s>", "where", "is", "my"):  # every context sums to one with backoff
        assert math.isclose(sum(bigram(context, w) for w in unigrams), 1.0, rel_tol=1e-6)


def test_words_outside_the_dictionary_are_left_out_of_the_model() -> None:
    arpa = build_arpa(["where is my zorblax"], vocabulary={"where", "is", "my"})
    assert "zorblax" not in arpa


def test_word_error_rate() -> None:
    assert word_error_rate("where is my order", "where is my order") == (0, 4)
    assert word_error_rate("how long does a refund take", "how long bill refund take") == (2, 6)


def _tone(seconds: float, level: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return (level * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def test_vad_finds_each_utterance_with_its_preroll() -> None:
    vad = EnergyVad(silence_ms=400, preroll_ms=200)
    quiet = (np.random.default_rng(1).normal(0, 20, 16000)).astype("<i2").tobytes()
    audio = quiet + _tone(1.0, 8000) + quiet + _tone(0.5, 8000) + quiet
    events = []
    for i in range(0, len(audio), 3200):  # any chunking
        events.extend(vad.feed(audio[i : i + 3200]))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechBegan, SpeechEnded, SpeechBegan, SpeechEnded]
    first = events[1]
    assert isinstance(first, SpeechEnded)
    seconds = len(first.audio) / 32000
    assert 1.0 <= seconds <= 1.0 + 0.2 + 0.45  # the utterance, its pre-roll and the closing silence


def test_vad_flushes_speech_still_in_progress() -> None:
    vad = EnergyVad()
    vad.feed(_tone(0.5, 8000))
    tail = vad.flush()
    assert tail is not None and len(tail.audio) > 0 and vad.flush() is None
