"""Pure parts of the offline engine: knowledge files, retrieval, language model, VAD, WER."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from relay.engines.local import EnergyVad, SpeechBegan, SpeechEnded
from relay.knowledge.base import (
    KnowledgeBase,
    KnowledgeError,
    Limits,
    build_arpa,
    parse_article,
    parse_entries,
    parse_knowledge_file,
    word_error_rate,
)

KNOWLEDGE = Path(__file__).resolve().parent.parent / "prompts" / "knowledge"


def test_entries_parse_with_several_phrasings() -> None:
    entries = parse_entries("# t\nQ: a?\nQ: b?\nA: c.\n\nQ: d?\nA: e.\n", "x.md")
    assert [(e.questions, e.text) for e in entries] == [(("a?", "b?"), "c."), (("d?",), "e.")]


@pytest.mark.parametrize("text", ["A: no question\n", "Q: dangling?\n", "hello\n"])
def test_malformed_knowledge_is_refused_with_the_line(text: str) -> None:
    with pytest.raises(KnowledgeError, match=r"x\.md"):
        parse_entries(text, "x.md")


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


# ------------------------------------------------------------------ articles and passages

ARTICLE = """---
title: Returns policy
tags: [returns, refunds]
---
Everything about sending items back.

# Returning an item

Customers have 30 days to return unused items.

Print the label from the order screen.

## Exchanges
### Exchanges

Swap sizes free of charge.

## Empty heading

## Exchanges

A second section with the same heading keeps a distinct id.
"""


def test_an_article_becomes_passages_with_stable_ids_titles_and_tags() -> None:
    passages = parse_knowledge_file(ARTICLE, "policies/returns.md")
    assert [(p.id, p.title, p.line) for p in passages] == [
        ("policies/returns.md#returns-policy", "Returns policy", 5),
        ("policies/returns.md#returning-an-item", "Returning an item", 7),
        ("policies/returns.md#exchanges", "Exchanges", 14),
        ("policies/returns.md#exchanges-2", "Exchanges", 20),
    ]
    assert (
        passages[1].text == "Customers have 30 days to return unused items.\n\nPrint the label from the order screen."
    )
    assert all(p.tags == ("returns", "refunds") for p in passages)
    assert passages[0].phrasings() == ("Returns policy",)
    # Ids come from headings, not positions: a section added above leaves the others' ids alone.
    again = parse_knowledge_file(
        ARTICLE.replace("# Returning", "# New\n\nNew text.\n\n# Returning"), "policies/returns.md"
    )
    assert {p.id for p in passages} <= {p.id for p in again}


def test_qa_files_keep_their_format_and_get_ids_from_their_first_question() -> None:
    (first, second) = parse_knowledge_file("# t\nQ: Where is my order?\nQ: b?\nA: c.\n\nQ: d?\nA: e.\n", "x.md")
    assert (first.id, first.title, first.text, first.questions, first.line) == (
        "x.md#where-is-my-order",
        "Where is my order?",
        "c.",
        ("Where is my order?", "b?"),
        2,
    )
    assert second.id == "x.md#d"


def test_a_long_section_splits_on_paragraphs() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(6)]
    text = "# Long\n\n" + "\n\n".join(paragraphs)
    passages = parse_article(text, "long.md", Limits(max_passage_chars=400))
    assert [p.id for p in passages] == ["long.md#long", "long.md#long-2", "long.md#long-3"]
    assert all(len(p.text) <= 400 for p in passages)
    assert "\n\n".join(p.text for p in passages) == "\n\n".join(s.strip() for s in paragraphs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ntitle: x\n# no end\n", r"a\.md:1: front matter is not closed"),
        ("---\ntitle: [unclosed\n---\n# H\n\ntext\n", r"a\.md:\d+: front matter is not valid YAML"),
        ("---\n- a list\n---\n# H\n\ntext\n", r"a\.md:2: front matter must be a mapping"),
        ("---\ntags: {a: 1}\n---\n# H\n\ntext\n", r"a\.md:2: tags must be"),
        ("---\ntitle: 5\n---\n# H\n\ntext\n", r"a\.md:2: title must be text"),
        ("# H\n\n" + "x" * 2001 + "\n", r"a\.md:1: a paragraph of 2001 characters is over the 2000-character"),
    ],
)
def test_broken_articles_are_refused_with_path_and_line(text: str, message: str) -> None:
    with pytest.raises(KnowledgeError, match=message):
        parse_knowledge_file(text, "a.md")


def test_a_folder_loads_recursively_with_limits(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "returns.md").write_text(ARTICLE)
    (tmp_path / "faq.md").write_text("Q: Where is my order?\nA: Check tracking.\n")
    (tmp_path / "_everyday.txt").write_text("hello there\n")
    (tmp_path / "_draft.md").write_text("# Not loaded\n\ntext\n")
    kb = KnowledgeBase.load(tmp_path)
    assert [p.id for p in kb.passages][:2] == ["faq.md#where-is-my-order", "policies/returns.md#returns-policy"]
    assert kb.phrases == ("hello there",) and "Not loaded" not in {p.title for p in kb.passages}
    with pytest.raises(KnowledgeError, match="4 files, over the limit of 2"):
        KnowledgeBase.load(tmp_path, Limits(max_files=2))
    with pytest.raises(KnowledgeError, match="bytes of knowledge, over the limit of 100"):
        KnowledgeBase.load(tmp_path, Limits(max_total_bytes=100))
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe")
    with pytest.raises(KnowledgeError, match=r"bad\.md: not UTF-8"):
        KnowledgeBase.load(tmp_path)
