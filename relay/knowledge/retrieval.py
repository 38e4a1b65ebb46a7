"""One retrieval over the knowledge passages for both engines, and how it is measured.

Chosen by measurement (bench/retrieval_eval.py, tests/test_retrieval.py): TF-IDF over
character n-grams (3–5, within words; scikit-learn's `TfidfVectorizer`) of each passage's
phrasings and text, ranked by cosine similarity. Character n-grams match what a phone
transcript garbles ("pass word", "credit cart") and word forms ("returning" / "return")
that word-level BM25 misses; on the labelled set it beat the hand-written BM25, bm25s and
rank-bm25 on hit@1, hit@3, MRR and right calls (figures in the README).

`evaluate()` scores any retriever on a labelled question set: hit@1, hit@3 and MRR over the
answerable questions, and the share of right calls (the right passage above the score gate,
or nothing for a question the knowledge cannot answer) at the best gate on the set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from relay.knowledge.base import KnowledgeBase, Passage, words

# Below this cosine similarity a question gets no passage. Measured on the labelled set: the
# best off-topic question scores 0.219 and the weakest right answer 0.229; the gate sits
# between (a narrow margin: a larger labelled set from real calls should recalibrate it).
DEFAULT_MIN_SCORE = 0.225


@dataclass(frozen=True, slots=True)
class Hit:
    passage: Passage
    score: float  # cosine similarity, 0 to 1


def _document(passage: Passage) -> str:
    return " ".join(words(" ".join([*passage.phrasings(), passage.text])))


NGRAMS = (3, 5)


def char_wb_ngrams(text: str, low: int = NGRAMS[0], high: int = NGRAMS[1]) -> list[str]:
    """scikit-learn's `char_wb` analyzer on text already lower-cased and single-spaced: the
    n-grams of each word padded with a space on both sides; a padded word no longer than n
    counts once, whole, and ends that word's n-grams."""
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        size = len(padded)
        for n in range(low, high + 1):
            if size <= n:
                grams.append(padded)
                break
            grams.extend([padded[i : i + n] for i in range(size - n + 1)])
    return grams


class Retriever:
    """Fitting uses scikit-learn (once per knowledge load); a query is scored here, on the
    event loop, by the same arithmetic as `TfidfVectorizer.transform` followed by the cosine
    against every passage: ~0.05 ms instead of ~0.5 ms (scikit-learn's per-call validation
    and sparse-matrix building were most of it). tests/test_retrieval.py checks the scores
    against scikit-learn's."""

    def __init__(self, kb: KnowledgeBase) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.knowledge = kb
        self._passages = kb.passages
        self._vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAMS, sublinear_tf=True, dtype=np.float32)
        self._matrix: Any = self._vectorizer.fit_transform([_document(p) for p in kb.passages])
        vocabulary = getattr(self._vectorizer, "vocabulary_", {})  # absent when nothing was fitted
        self._vocabulary: dict[str, int] = {str(k): int(v) for k, v in vocabulary.items()}
        self._idf = np.asarray(getattr(self._vectorizer, "idf_", []), dtype=np.float32)
        # Column by column (term → the passages holding it): a query gathers only its terms.
        by_term = self._matrix.tocsc()
        self._term_start = np.asarray(by_term.indptr, dtype=np.intp)
        self._term_rows = np.asarray(by_term.indices, dtype=np.intp)
        self._term_values = np.asarray(by_term.data, dtype=np.float32)

    def _similarities(self, query: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        n = len(self._passages)
        counts: dict[int, int] = {}
        vocabulary = self._vocabulary
        for gram in char_wb_ngrams(" ".join(words(query))):
            term = vocabulary.get(gram)
            if term is not None:
                counts[term] = counts.get(term, 0) + 1
        if not counts:
            return np.zeros(n, dtype=np.float32)
        terms = np.fromiter(counts, dtype=np.intp, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        weights = (np.log(tf) + np.float32(1.0)) * self._idf[terms]  # sublinear tf × idf
        weights /= np.sqrt(np.dot(weights, weights))  # l2: the query's unit vector
        starts, ends = self._term_start[terms], self._term_start[terms + 1]
        lengths = ends - starts
        # Every (passage, value) entry of the query's terms, gathered in one index.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        entries = np.arange(int(lengths.sum())) + offsets
        products = self._term_values[entries] * np.repeat(weights, lengths)
        return np.bincount(self._term_rows[entries], weights=products, minlength=n).astype(np.float32)

    def scores(self, query: str) -> dict[str, float]:
        return {p.id: float(s) for p, s in zip(self._passages, self._similarities(query), strict=True)}

    def search(self, query: str, k: int = 3, min_score: float = 0.0) -> list[Hit]:
        """The best `k` passages scoring at least `min_score`, best first."""
        similarities = self._similarities(query)
        order = np.argsort(-similarities, kind="stable")[:k]
        return [
            Hit(self._passages[i], float(similarities[i]))
            for i in order
            if similarities[i] >= min_score and similarities[i] > 0
        ]


# ---------------------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class Question:
    kind: str  # paraphrase, asr, none
    expected: str | None  # passage id, None when the knowledge has no answer
    text: str


def load_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        kind, expected, text = line.split("\t")
        if not text.strip():
            raise ValueError(f"{path}:{number}: no question")
        questions.append(Question(kind, expected or None, text))
    return questions


@dataclass(slots=True)
class Report:
    hit_at_1: float = 0.0
    hit_at_3: float = 0.0
    mrr: float = 0.0
    best_gate: float = 0.0
    best_accuracy: float = 0.0
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # at the best gate


Ranked = list[tuple[Question, list[str], float]]  # question, passage ids best first, best score


def _right_calls(gate: float, ranked: Ranked) -> dict[str, list[int]]:
    """Per kind of question: [right calls, questions] when answering only at `gate` or above."""
    right: dict[str, list[int]] = {}
    for q, order, top in ranked:
        answered = top >= gate and top > 0 and bool(order)
        ok = (answered and order[0] == q.expected) if q.expected else not answered
        counts = right.setdefault(q.kind, [0, 0])
        counts[0] += ok
        counts[1] += 1
    return right


def rank_all(scores: Callable[[str], dict[str, float]], questions: list[Question]) -> Ranked:
    ranked = []
    for q in questions:
        by_passage = scores(q.text)
        order = sorted(by_passage, key=lambda pid: (-by_passage[pid], pid))
        ranked.append((q, order, by_passage[order[0]] if order else 0.0))
    return ranked


def evaluate(scores: Callable[[str], dict[str, float]], questions: list[Question], gate: float | None = None) -> Report:
    """Ranking figures, and right calls at `gate` (or at the best gate on the set)."""
    ranked = rank_all(scores, questions)
    report = Report()
    answerable = [(q, order) for q, order, _ in ranked if q.expected is not None]
    for q, order in answerable:
        rank = order.index(q.expected) + 1 if q.expected in order else None
        report.hit_at_1 += rank == 1
        report.hit_at_3 += rank is not None and rank <= 3
        report.mrr += 1 / rank if rank else 0.0
    n = max(1, len(answerable))
    report.hit_at_1, report.hit_at_3, report.mrr = report.hit_at_1 / n, report.hit_at_3 / n, report.mrr / n
    gates = [gate] if gate is not None else sorted({top for _, _, top in ranked} | {0.0})
    report.best_accuracy = -1.0
    for candidate in gates:
        right = _right_calls(candidate, ranked)
        accuracy = sum(r[0] for r in right.values()) / max(1, len(questions))
        if accuracy > report.best_accuracy:
            report.best_gate, report.best_accuracy = candidate, accuracy
            report.by_kind = {k: (v[0], v[1]) for k, v in right.items()}
    return report
