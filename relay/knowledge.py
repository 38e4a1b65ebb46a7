"""Pure: the offline engine's knowledge base, BM25 retrieval and n-gram language model.

Knowledge files (`prompts/knowledge/*.md`) hold entries of one or more `Q:` lines (ways a
customer asks) followed by one `A:` line (what the agent can say). `_*.txt` files hold
everyday phrases that only feed the language model.

Retrieval is BM25 over the questions, in numpy, with a score threshold so small talk gets
no suggestion. The language model is a Katz-style backoff trigram built from the questions
plus the everyday phrases, written as ARPA text for the recognizer: a general English model
garbles 8 kHz phone speech, an in-domain one recovers most words of in-domain questions.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from .errors import ConfigurationError

_WORD_RE: Final = re.compile(r"[a-z0-9']+")
# Interrogatives (how, where, when, can …) stay: they carry the intent of a question.
STOPWORDS: Final = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "my",
        "me",
        "you",
        "your",
        "to",
        "of",
        "and",
        "or",
        "is",
        "are",
        "was",
        "do",
        "does",
        "did",
        "could",
        "would",
        "will",
        "it",
        "this",
        "that",
        "for",
        "on",
        "in",
        "at",
        "with",
        "be",
        "have",
        "has",
        "please",
        "also",
        "just",
        "so",
    ]
)


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower().replace("’", "'"))


def terms(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class Entry:
    questions: tuple[str, ...]
    answer: str
    source: str


class KnowledgeError(ConfigurationError):
    pass


def parse_entries(text: str, source: str) -> list[Entry]:
    entries: list[Entry] = []
    questions: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line[:2].upper() == "Q:":
            questions.append(line[2:].strip())
        elif line[:2].upper() == "A:":
            if not questions:
                raise KnowledgeError(f"{source}:{number}: an answer without a question")
            entries.append(Entry(tuple(questions), line[2:].strip(), source))
            questions = []
        else:
            raise KnowledgeError(f"{source}:{number}: lines must start with Q: or A:")
    if questions:
        raise KnowledgeError(f"{source}: questions without an answer at the end")
    return entries


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    entries: tuple[Entry, ...]
    phrases: tuple[str, ...]  # everyday phrases: language model only

    @classmethod
    def load(cls, directory: Path) -> KnowledgeBase:
        if not directory.is_dir():
            raise KnowledgeError(f"knowledge folder {directory} does not exist")
        entries: list[Entry] = []
        phrases: list[str] = []
        for path in sorted(directory.iterdir()):
            if path.suffix == ".md" and not path.name.startswith("_"):
                entries.extend(parse_entries(path.read_text(encoding="utf-8"), path.name))
            elif path.suffix == ".txt" and path.name.startswith("_"):
                lines = path.read_text(encoding="utf-8").splitlines()
                phrases.extend(x.strip() for x in lines if x.strip() and not x.startswith("#"))
        if not entries:
            raise KnowledgeError(f"no knowledge entries in {directory}")
        return cls(tuple(entries), tuple(phrases))

    def sentences(self) -> list[str]:
        return [q for e in self.entries for q in e.questions] + list(self.phrases)


# ---------------------------------------------------------------------------- retrieval


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    question: str
    score: float  # BM25 × coverage
    bm25: float
    coverage: float  # share of the matched question's terms the utterance contains


class BM25:
    """Okapi BM25 over every question variant, weighted by coverage.

    Raw BM25 rewards any rare word in common (a greeting's "get" matches "when will I get
    my money back"); multiplying by the share of the question's own terms that the
    utterance contains separates real matches from chance overlaps.
    """

    def __init__(self, kb: KnowledgeBase, k1: float = 1.2, b: float = 0.75) -> None:
        self._kb = kb
        self._docs: list[tuple[int, str]] = [(i, q) for i, e in enumerate(kb.entries) for q in e.questions]
        tokenised = [terms(q) for _, q in self._docs]
        self._doc_terms = [set(doc) for doc in tokenised]
        vocabulary = sorted({t for doc in tokenised for t in doc})
        self._index = {t: j for j, t in enumerate(vocabulary)}
        tf = np.zeros((len(tokenised), len(vocabulary)))
        for i, doc in enumerate(tokenised):
            for t, n in Counter(doc).items():
                tf[i, self._index[t]] = n
        lengths = tf.sum(axis=1)
        average = max(lengths.mean(), 1e-9)
        df = (tf > 0).sum(axis=0)
        n_docs = len(tokenised)
        self._idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / average)
        self._weights = tf * (k1 + 1) / (tf + norm[:, None])  # per doc, per term

    def search(self, query: str) -> Match | None:
        query_terms = set(terms(query))
        columns = [self._index[t] for t in query_terms if t in self._index]
        if not columns:
            return None
        bm25 = (self._weights[:, columns] * self._idf[columns]).sum(axis=1)
        coverage = np.array([len(doc & query_terms) / max(1, len(doc)) for doc in self._doc_terms])
        combined = bm25 * coverage
        best = int(np.argmax(combined))
        entry_index, question = self._docs[best]
        return Match(
            self._kb.entries[entry_index], question, float(combined[best]), float(bm25[best]), float(coverage[best])
        )


# ---------------------------------------------------------------------------- language model


def build_arpa(sentences: Iterable[str], vocabulary: set[str] | None = None, discount: float = 0.5) -> str:
    """A backoff trigram LM in ARPA format (absolute discounting, Katz-style backoff).

    Words outside `vocabulary` (the recognizer's dictionary) are dropped from sentences.
    """
    corpus: list[list[str]] = []
    for sentence in sentences:
        tokens = [w for w in words(sentence) if vocabulary is None or w in vocabulary]
        if tokens:
            corpus.append(["<s>", *tokens, "</s>"])
    if not corpus:
        raise KnowledgeError("no sentence left to build a language model from")
    uni: Counter[str] = Counter()
    bi: Counter[tuple[str, str]] = Counter()
    tri: Counter[tuple[str, str, str]] = Counter()
    for s in corpus:
        uni.update(s[1:])
        bi.update(itertools.pairwise(s))
        tri.update(zip(s, s[1:], s[2:], strict=False))
    vocab = sorted(set(uni) | {"<s>"})
    total = sum(uni.values())
    size = len(vocab) - 1  # <s> is never predicted
    p1 = {w: (uni[w] + 1) / (total + size) for w in vocab if w != "<s>"}

    def grouped(counter: Counter[tuple[str, ...]]) -> dict[tuple[str, ...], dict[str, int]]:
        groups: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
        for gram, n in counter.items():
            groups[gram[:-1]][gram[-1]] = n
        return groups

    bi_by_ctx = grouped(bi)  # type: ignore[arg-type]
    tri_by_ctx = grouped(tri)  # type: ignore[arg-type]
    p2: dict[tuple[str, str], float] = {}
    alpha1: dict[str, float] = {}
    for (u,), follow in bi_by_ctx.items():
        n = sum(follow.values())
        mass = 0.0
        for w, c in follow.items():
            p2[(u, w)] = (c - discount) / n
            mass += p2[(u, w)]
        seen_lower = sum(p1[w] for w in follow)
        alpha1[u] = (1 - mass) / max(1e-12, 1 - seen_lower)

    def p2_backoff(v: str, w: str) -> float:
        return p2.get((v, w), alpha1.get(v, 1.0) * p1[w])

    p3: dict[tuple[str, str, str], float] = {}
    alpha2: dict[tuple[str, str], float] = {}
    for (u, v), follow in tri_by_ctx.items():
        n = sum(follow.values())
        mass = 0.0
        for w, c in follow.items():
            p3[(u, v, w)] = (c - discount) / n
            mass += p3[(u, v, w)]
        seen_lower = sum(p2_backoff(v, w) for w in follow)
        alpha2[(u, v)] = (1 - mass) / max(1e-12, 1 - seen_lower)

    def log10(x: float) -> float:
        return math.log10(max(x, 1e-99))

    lines = ["\\data\\", f"ngram 1={len(vocab)}", f"ngram 2={len(p2)}", f"ngram 3={len(p3)}", "", "\\1-grams:"]
    for w in vocab:
        prob = -99.0 if w == "<s>" else log10(p1[w])
        lines.append(f"{prob:.6f}\t{w}\t{log10(alpha1.get(w, 1.0)):.6f}")
    lines += ["", "\\2-grams:"]
    for (u, w), p in sorted(p2.items()):
        lines.append(f"{log10(p):.6f}\t{u} {w}\t{log10(alpha2.get((u, w), 1.0)):.6f}")
    lines += ["", "\\3-grams:"]
    for (u, v, w), p in sorted(p3.items()):
        lines.append(f"{log10(p):.6f}\t{u} {v} {w}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)
