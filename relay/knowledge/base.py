"""Pure: the knowledge base (passages with stable ids) and the offline engine's n-gram
language model. Retrieval over the passages: relay/knowledge/retrieval.py.

Knowledge files (`prompts/knowledge/**/*.md`) are either Q&A files, entries of one or more
`Q:` lines (ways a customer asks) followed by one `A:` line (what the agent can say), or
Markdown articles whose heading sections become passages (optional YAML front matter with
`title` and `tags`). `_*.txt` files hold everyday phrases that only feed the language model.

The language model is a Katz-style backoff trigram built from the passages' phrasings plus
the everyday phrases, written as ARPA text for the recognizer: a general English model
garbles 8 kHz phone speech, an in-domain one recovers most words of in-domain questions.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from relay.errors import ConfigurationError

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
class Passage:
    """One retrievable piece of knowledge, with an id that stays the same across reloads
    while its file and heading do (`orders.md#where-is-my-order`)."""

    id: str
    title: str
    text: str  # what the agent can say or read
    source: str  # file path relative to the knowledge folder
    line: int  # where it starts in that file
    questions: tuple[str, ...] = ()  # Q&A files: the ways a customer asks
    tags: tuple[str, ...] = ()

    def phrasings(self) -> tuple[str, ...]:
        """What a spoken question is matched against: its questions, else its title."""
        return self.questions or (self.title,)


class KnowledgeError(ConfigurationError):
    pass


@dataclass(frozen=True, slots=True)
class Limits:
    max_files: int = 1000
    max_total_bytes: int = 10 * 1024 * 1024
    max_passage_chars: int = 2000  # longer sections are split on paragraphs


_SLUG_RE: Final = re.compile(r"[^a-z0-9]+")
_HEADING_RE: Final = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_QA_RE: Final = re.compile(r"^\s*[QqAa]:")


def slug(text: str) -> str:
    return _SLUG_RE.sub("-", text.lower()).strip("-")[:80] or "section"


def _unique(ids: set[str], wanted: str) -> str:
    candidate, n = wanted, 1
    while candidate in ids:
        n += 1
        candidate = f"{wanted}-{n}"
    ids.add(candidate)
    return candidate


def parse_entries(text: str, source: str) -> list[Passage]:
    """A Q&A file: one or more `Q:` lines (ways a customer asks), then one `A:` line."""
    passages: list[Passage] = []
    ids: set[str] = set()
    questions: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line[:2].upper() == "Q:":
            if not questions:
                start = number
            questions.append(line[2:].strip())
        elif line[:2].upper() == "A:":
            if not questions:
                raise KnowledgeError(f"{source}:{number}: an answer without a question")
            pid = _unique(ids, f"{source}#{slug(questions[0])}")
            passages.append(Passage(pid, questions[0], line[2:].strip(), source, start, tuple(questions)))
            questions = []
        else:
            raise KnowledgeError(f"{source}:{number}: lines must start with Q: or A:")
    if questions:
        raise KnowledgeError(f"{source}:{start}: questions without an answer at the end")
    return passages


def _front_matter(text: str, source: str) -> tuple[dict[str, object], str, int]:
    """(front matter, the rest, the rest's first line number)."""
    if not text.startswith("---\n"):
        return {}, text, 1
    end = text.find("\n---", 4)
    if end < 0:
        raise KnowledgeError(f"{source}:1: front matter is not closed with ---")
    import yaml

    try:
        data = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = 2 + mark.line if mark is not None else 1
        raise KnowledgeError(f"{source}:{line}: front matter is not valid YAML") from exc
    if not isinstance(data, dict):
        raise KnowledgeError(f"{source}:2: front matter must be a mapping (title:, tags:)")
    rest_start = text.find("\n", end + 4)
    rest = text[rest_start + 1 :] if rest_start >= 0 else ""
    return data, rest, text[: rest_start + 1].count("\n") + 1 if rest_start >= 0 else 1


def _tags(value: object, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list) and all(isinstance(t, str | int) for t in value):
        return tuple(str(t) for t in value)
    raise KnowledgeError(f"{source}:2: tags must be a list or a comma-separated string")


def parse_article(text: str, source: str, limits: Limits = Limits()) -> list[Passage]:
    """A Markdown article: each heading's section is a passage (long ones split on
    paragraphs); text before the first heading belongs to the document's title."""
    meta, body, first_line = _front_matter(text, source)
    title = meta.get("title")
    if title is not None and not isinstance(title, str):
        raise KnowledgeError(f"{source}:2: title must be text")
    tags = _tags(meta.get("tags"), source)
    doc_title = title or Path(source).stem.replace("-", " ").replace("_", " ")
    sections: list[tuple[str, int, list[str]]] = [(doc_title, first_line, [])]
    for offset, raw in enumerate(body.splitlines()):
        found = _HEADING_RE.match(raw)
        if found:
            sections.append((found.group(2).strip(), first_line + offset, []))
        else:
            sections[-1][2].append(raw)
    passages: list[Passage] = []
    ids: set[str] = set()
    for heading, line, lines in sections:
        paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
        for part in _split(paragraphs, limits.max_passage_chars, source, line):
            pid = _unique(ids, f"{source}#{slug(heading)}")
            passages.append(Passage(pid, heading, part, source, line, (), tags))
    return passages


def _split(paragraphs: list[str], limit: int, source: str, line: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for paragraph in paragraphs:
        if len(paragraph) > limit:
            raise KnowledgeError(
                f"{source}:{line}: a paragraph of {len(paragraph)} characters is over the "
                f"{limit}-character passage limit; split it"
            )
        if current and len(current) + 2 + len(paragraph) > limit:
            parts.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        parts.append(current)
    return parts


def parse_knowledge_file(text: str, source: str, limits: Limits = Limits()) -> list[Passage]:
    """Q&A format when the file has `Q:`/`A:` lines, else a Markdown article."""
    if any(_QA_RE.match(line) for line in text.splitlines()):
        return parse_entries(text, source)
    return parse_article(text, source, limits)


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    passages: tuple[Passage, ...]
    phrases: tuple[str, ...]  # everyday phrases: the offline language model only
    by_id: Mapping[str, Passage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", MappingProxyType({p.id: p for p in self.passages}))

    @classmethod
    def load(cls, directory: Path, limits: Limits = Limits()) -> KnowledgeBase:
        """Every `*.md` under the folder (files starting with `_` excepted) and the
        everyday phrases in `_*.txt`. Refuses, naming the file and line, anything broken."""
        if not directory.is_dir():
            raise KnowledgeError(f"knowledge folder {directory} does not exist")
        files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".md", ".txt"))
        if len(files) > limits.max_files:
            raise KnowledgeError(f"{directory}: {len(files)} files, over the limit of {limits.max_files}")
        total = sum(p.stat().st_size for p in files)
        if total > limits.max_total_bytes:
            raise KnowledgeError(f"{directory}: {total} bytes of knowledge, over the limit of {limits.max_total_bytes}")
        passages: list[Passage] = []
        phrases: list[str] = []
        for path in files:
            source = path.relative_to(directory).as_posix()
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise KnowledgeError(f"{source}: not UTF-8 text") from exc
            if path.suffix == ".md" and not path.name.startswith("_"):
                passages.extend(parse_knowledge_file(text, source, limits))
            elif path.suffix == ".txt" and path.name.startswith("_"):
                phrases.extend(x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#"))
        if not passages:
            raise KnowledgeError(f"no knowledge passages in {directory}")
        return cls(tuple(passages), tuple(phrases))

    def sentences(self) -> list[str]:
        """Language-model text: every phrasing, then the everyday phrases."""
        return [q for p in self.passages for q in p.phrasings()] + list(self.phrases)


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
