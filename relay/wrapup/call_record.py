"""Pure: what one call said and what the relay offered, kept for its wrap-up.

The bridge appends the final transcript lines of both speakers (times relative to the call's
start) and every suggestion it delivered. The record is bounded so an hours-long call cannot
grow without limit: past `max_lines` the oldest lines stay (the call's opening is what a
summary most needs besides its end), the newest `tail_lines` keep rolling, and the lines
dropped in between are counted, never hidden: the wrap-up says how many it did not see.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

MAX_LINES: Final = 6000  # a 60-minute call at a line every 2 s on both tracks is ~3600
MAX_LINE_CHARS: Final = 2000
MAX_SUGGESTIONS: Final = 500


@dataclass(frozen=True, slots=True)
class Line:
    at_s: float  # seconds since the call started
    speaker: str  # "customer" or "agent"
    text: str
    utterance_id: str
    passage_id: str | None = None  # the knowledge passage the line is about, when one matched


@dataclass(frozen=True, slots=True)
class GivenSuggestion:
    at_s: float
    question: str
    answer: str
    sources: tuple[tuple[str, str], ...] = ()  # (passage id, title)


@dataclass(slots=True)
class CallRecord:
    max_lines: int = MAX_LINES
    tail_lines: int = 1000
    head: list[Line] = field(default_factory=list)
    tail: deque[Line] = field(init=False)
    lines_dropped: int = 0
    suggestions: list[GivenSuggestion] = field(default_factory=list)
    suggestions_dropped: int = 0

    def __post_init__(self) -> None:
        self.tail = deque(maxlen=self.tail_lines)

    def add_line(self, line: Line) -> None:
        if len(line.text) > MAX_LINE_CHARS:
            line = Line(line.at_s, line.speaker, line.text[:MAX_LINE_CHARS], line.utterance_id, line.passage_id)
        if len(self.head) < self.max_lines - self.tail_lines:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.lines_dropped += 1
        self.tail.append(line)

    def add_suggestion(self, suggestion: GivenSuggestion) -> None:
        if len(self.suggestions) >= MAX_SUGGESTIONS:
            self.suggestions_dropped += 1
            return
        self.suggestions.append(suggestion)

    @property
    def lines(self) -> list[Line]:
        return [*self.head, *self.tail]

    def __len__(self) -> int:
        return len(self.head) + len(self.tail)
