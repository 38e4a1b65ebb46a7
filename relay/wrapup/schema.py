"""Pure: the wrap-up's shape, the operator's disposition codes, the token budget, and the
offline (extractive) wrap-up.

`WrapUpNotes` is the structured record both engines produce: the OpenAI engine asks the
Responses API for exactly this schema (with `disposition` narrowed to the configured codes);
the offline engine builds it from the transcript, the knowledge passages and the insight
rules. `WrapUpResult` adds how it went (status, reason, tokens) and becomes the `summary`
Sync message.

Long calls: `chunk_lines` cuts the transcript into pieces that each fit the token budget
(a line longer than the budget is cut, and its pieces kept in order), so every line is read
by some request; nothing is dropped to make the budget.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model

from relay.errors import ConfigurationError
from relay.wrapup.call_record import GivenSuggestion, Line
from relay.wrapup.insights import InsightTracker

Mood = Literal["positive", "neutral", "negative"]
CHARS_PER_TOKEN: Final = 4  # conservative for English; the budget is an estimate, not a tokenizer


class AnsweredQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    answered: bool


class ActionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: Literal["agent", "customer", "other"]
    text: str
    due: str | None = Field(description="When it is due, as said on the call; null if not said")


class Sentiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: Mood
    end: Mood


class WrapUpNotes(BaseModel):
    """What the agent's wrap-up needs. Field descriptions reach the model as the schema."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(description="Two to four sentences: why the customer called and how it ended")
    questions: list[AnsweredQuestion] = Field(description="Each question the customer asked, and if it was answered")
    action_items: list[ActionItem] = Field(description="Commitments made on the call, by whom, due when if said")
    follow_ups: list[str] = Field(description="Contacts promised after the call (call backs, emails)")
    topics: list[str] = Field(description="At most five short topic names")
    sentiment: Sentiment = Field(description="The customer's mood at the start and at the end of the call")
    disposition: str = Field(description="One of the disposition codes listed in the instructions")


@functools.lru_cache(maxsize=16)
def schema_tokens(model: type[WrapUpNotes]) -> int:
    """The schema's share of a request's token budget (~1 token per 4 characters of its JSON)."""
    return estimate_tokens(json.dumps(model.model_json_schema()))


@functools.lru_cache(maxsize=16)
def notes_model(codes: tuple[str, ...]) -> type[WrapUpNotes]:
    """`WrapUpNotes` whose `disposition` may only be one of `codes` (an enum in the schema).
    Cached: building a pydantic model costs milliseconds, and calls end in bursts."""
    allowed: Any = Literal.__getitem__(tuple(codes))  # a Literal built at runtime from the file
    model: type[WrapUpNotes] = create_model(
        "WrapUpNotes",
        __base__=WrapUpNotes,
        disposition=(allowed, Field(description="The disposition code that fits the call best")),
    )
    return model


# ---------------------------------------------------------------------------- dispositions


@dataclass(frozen=True, slots=True)
class Disposition:
    code: str
    description: str = ""
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dispositions:
    codes: tuple[Disposition, ...]
    default: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.code for d in self.codes)

    def describe(self) -> str:
        return "\n".join(f"- {d.code}: {d.description}" if d.description else f"- {d.code}" for d in self.codes)

    @classmethod
    def load(cls, path: Path) -> Dispositions:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read the disposition codes ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: not valid YAML ({exc})") from exc
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: object, origin: str = "dispositions") -> Dispositions:
        if not isinstance(data, dict) or not isinstance(data.get("codes"), list) or not data["codes"]:
            raise ConfigurationError(f"{origin}: expected a mapping with a non-empty `codes` list")
        codes: list[Disposition] = []
        for i, item in enumerate(data["codes"], 1):
            if isinstance(item, str):
                item = {"code": item}
            code = item.get("code") if isinstance(item, dict) else None
            if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", code):
                raise ConfigurationError(f"{origin}: code #{i} must be 1-64 letters, digits, _ . or -")
            if code in (c.code for c in codes):
                raise ConfigurationError(f"{origin}: code {code!r} is listed twice")
            keywords = item.get("keywords") or []
            if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
                raise ConfigurationError(f"{origin}: keywords of {code!r} must be a list of strings")
            codes.append(Disposition(code, str(item.get("description") or ""), tuple(k.lower() for k in keywords)))
        default = data.get("default", codes[0].code)
        if default not in (c.code for c in codes):
            raise ConfigurationError(f"{origin}: default {default!r} is not one of the codes")
        return cls(tuple(codes), str(default))

    def choose(self, text: str) -> str:
        """Offline: the code whose keywords the call says most often (file order breaks ties)."""
        lowered = text.lower()
        best, best_hits = self.default, 0
        for disposition in self.codes:
            hits = sum(len(re.findall(rf"\b{re.escape(k)}\b", lowered)) for k in disposition.keywords)
            if hits > best_hits:
                best, best_hits = disposition.code, hits
        return best


# ---------------------------------------------------------------------------- results


@dataclass(slots=True)
class Usage:
    """Tokens and requests a wrap-up cost (the inputs of its price)."""

    requests: int = 0
    retries: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(slots=True)
class WrapUpResult:
    status: Literal["ok", "failed"]
    notes: WrapUpNotes | None = None
    reason: str = ""
    engine: str = ""
    model: str | None = None
    chunks: int = 0
    lines: int = 0  # transcript lines the wrap-up read
    lines_not_kept: int = 0  # lines the call record could not keep (very long calls)
    usage: Usage = field(default_factory=Usage)

    @classmethod
    def failed(cls, reason: str, **fields: Any) -> WrapUpResult:
        return cls(status="failed", reason=reason, **fields)

    def message_body(self) -> dict[str, Any]:
        """The `summary` Sync message's fields (DESIGN §4)."""
        body: dict[str, Any] = {"status": self.status}
        if self.status == "failed":
            body["reason"] = self.reason
        if self.notes is not None:
            body.update(self.notes.model_dump())
        body["engine"] = self.engine
        if self.lines_not_kept:
            body["lines_not_kept"] = self.lines_not_kept
        return body


def redact_result(result: WrapUpResult, redact: Callable[[str], str]) -> WrapUpResult:
    """The result with `redact` applied to every string of its notes (the model may quote a
    number the transcript no longer holds; the disposition code is the operator's, kept)."""
    notes = result.notes
    if notes is None:
        return result

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    data = notes.model_dump()
    disposition = data.pop("disposition")
    redacted = type(notes).model_validate({**walk(data), "disposition": disposition})
    return dataclasses.replace(result, notes=redacted)


@dataclass(frozen=True, slots=True)
class WrapUpRequest:
    call_sid: str
    lines: tuple[Line, ...]
    suggestions: tuple[GivenSuggestion, ...]
    dispositions: Dispositions
    lines_not_kept: int = 0


# ---------------------------------------------------------------------------- token budget


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def render_line(line: Line) -> str:
    minutes, seconds = divmod(int(line.at_s), 60)
    return f"[{minutes:02d}:{seconds:02d}] {line.speaker.capitalize()}: {line.text}"


def render_suggestion(suggestion: GivenSuggestion) -> str:
    minutes, seconds = divmod(int(suggestion.at_s), 60)
    return f"[{minutes:02d}:{seconds:02d}] Suggested to the agent: Q: {suggestion.question} A: {suggestion.answer}"


def chunk_lines(rendered: Sequence[str], budget_tokens: int) -> list[list[str]]:
    """Consecutive groups of lines, each within `budget_tokens`; a longer line is cut into
    pieces that are. Every character of the input is in exactly one chunk, in order."""
    budget_chars = max(1, budget_tokens * CHARS_PER_TOKEN)
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for line in rendered:
        pieces = [line[i : i + budget_chars] for i in range(0, len(line), budget_chars)] or [""]
        for piece in pieces:
            cost = len(piece) + 1
            if current and used + cost > budget_chars:
                chunks.append(current)
                current, used = [], 0
            current.append(piece)
            used += cost
    if current:
        chunks.append(current)
    return chunks


# ---------------------------------------------------------------------------- offline wrap-up

_POSITIVE: Final = frozenset(
    [
        "thanks",
        "thank",
        "great",
        "perfect",
        "wonderful",
        "awesome",
        "good",
        "happy",
        "glad",
        "appreciate",
        "helpful",
        "excellent",
        "love",
        "lovely",
        "fine",
    ]
)
_NEGATIVE: Final = frozenset(
    [
        "angry",
        "upset",
        "frustrated",
        "annoyed",
        "terrible",
        "awful",
        "bad",
        "broken",
        "wrong",
        "disappointed",
        "unacceptable",
        "ridiculous",
        "complaint",
        "useless",
        "worst",
        "damaged",
        "missing",
    ]
)
_WORD_RE: Final = re.compile(r"[a-z']+")


def mood(texts: Sequence[str]) -> Mood:
    words = [w for t in texts for w in _WORD_RE.findall(t.lower())]
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def extractive_wrapup(request: WrapUpRequest) -> WrapUpNotes:
    """The offline engine's wrap-up: questions mapped to the passages they were about,
    action items and follow-ups by the insight rules, topics from the passages used,
    sentiment from a word list over the customer's first and last lines, and the
    disposition by the codes' keywords."""
    tracker = InsightTracker(max_insights=10_000)
    for line in request.lines:
        tracker.on_line(line.speaker, line.text, line.utterance_id, line.passage_id)
    for suggestion in request.suggestions:
        tracker.on_suggestion(tuple(pid for pid, _ in suggestion.sources), None)
    insights = list(tracker.insights.values())
    questions = [AnsweredQuestion(text=i.text, answered=bool(i.answered)) for i in insights if i.kind == "question"]
    actions = [ActionItem(owner=_owner(i.owner), text=i.text, due=i.due) for i in insights if i.kind == "action_item"]
    follow_ups = [i.text for i in insights if i.kind == "follow_up"]

    topic_counts: Counter[str] = Counter()
    for line in request.lines:
        if line.passage_id:  # set from the call's own knowledge
            topic_counts[_topic(line.passage_id)] += 1
    for suggestion in request.suggestions:
        for pid, _title in suggestion.sources:
            topic_counts[_topic(pid)] += 1
    topics = [t for t, _ in topic_counts.most_common(5)]

    customer = [line.text for line in request.lines if line.speaker == "customer"]
    sentiment = Sentiment(start=mood(customer[:3]), end=mood(customer[-3:]))
    disposition = request.dispositions.choose(" ".join(line.text for line in request.lines))
    return WrapUpNotes(
        summary=_summary_text(questions, actions, follow_ups, topics, request),
        questions=questions,
        action_items=actions,
        follow_ups=follow_ups,
        topics=topics,
        sentiment=sentiment,
        disposition=disposition,
    )


def _owner(speaker: str | None) -> Literal["agent", "customer", "other"]:
    return "agent" if speaker == "agent" else "customer" if speaker == "customer" else "other"


def _topic(passage_id: str) -> str:
    """`orders.md#where-is-my-order` → `orders`: the knowledge file names the topic."""
    return passage_id.split("#", 1)[0].rsplit(".", 1)[0].replace("_", " ").strip() or passage_id


def _summary_text(
    questions: list[AnsweredQuestion],
    actions: list[ActionItem],
    follow_ups: list[str],
    topics: list[str],
    request: WrapUpRequest,
) -> str:
    if not request.lines:
        return "Nothing was said on the call."
    parts = []
    if questions:
        answered = sum(q.answered for q in questions)
        about = f" about {', '.join(topics[:3])}" if topics else ""
        parts.append(f"The customer asked {len(questions)} question(s){about}; {answered} answered.")
    else:
        parts.append("The customer asked no question.")
    if request.suggestions:
        parts.append(f"The relay suggested {len(request.suggestions)} answer(s).")
    if actions:
        parts.append(f"{len(actions)} action item(s) were agreed.")
    if follow_ups:
        parts.append(f"{len(follow_ups)} follow-up(s) were promised.")
    return " ".join(parts)
