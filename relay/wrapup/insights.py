"""Pure: live insights from final transcript lines — the customer's questions (and whether
each was answered), and action items and follow-ups from either speaker.

Rules, not a model, so they cost microseconds per line, behave the same with every engine
and can be tested exactly. A line is cut into sentences; a customer sentence is a question
when it ends with "?" or opens like one (speech recognizers often drop the "?"). A
commitment ("I'll email you the return label", "I need to send the receipt") is an action
item owned by whoever said it; a promise of later contact ("we'll call you back tomorrow")
is a follow-up. A due time said in the same sentence ("by Friday", "within 3 days") is kept.

A question is answered when the agent's words cover the knowledge passage the question is
about, or, when no passage matched, when the agent replies before the customer asks again;
or when the relay gave the agent a suggestion for it (with only the customer's track heard,
that is the only evidence there is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final, Literal

InsightKind = Literal["question", "action_item", "follow_up"]

_SENTENCE_RE: Final = re.compile(r"[^.!?]+[.!?]*")
_WH: Final = r"(?:what|where|when|why|how|who|which|whose)"
_AUX: Final = (
    r"(?:is|are|am|was|were|do|does|did|can|could|would|will|should|shall|may|might|have|has|had|"
    r"long|much|many|often|soon|far|come|about)"
)
_PRONOUN: Final = r"(?:i|you|we|they|he|she|it|there|my|your|this|that|the|a|an|someone|anyone)"
# Recognizers often drop the "?": a wh-word followed by a verb or quantity word anywhere
# ("... where is my order"), or a sentence opening with an auxiliary and a subject ("can i
# change ..."). A bare wh-word is not enough ("how i and get ..." is a misheard greeting).
_QUESTION_RE: Final = re.compile(
    rf"\b{_WH}(?:'s|\s+{_AUX})\b"
    rf"|^(?:(?:and|also|so|but|ok|okay|well|um|uh|hi|hello)[, ]+)*"
    rf"(?:is|are|am|was|were|do|does|did|can|could|would|will|should|shall|may|might|have|has|"
    rf"isn't|aren't|don't|doesn't|didn't|won't|can't)\s+{_PRONOUN}\b"
    r"|\b(?:i(?:'d| would) like to know|i (?:want|need) to know|tell me|any idea)\b",
    re.IGNORECASE,
)
_DUE_RE: Final = re.compile(
    r"\b(?:today|tonight|tomorrow|this (?:morning|afternoon|evening|week|month)|"
    r"(?:by|on|before|next) (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"the end of (?:the )?(?:day|week|month)|week|month)|"
    r"within (?:\d+|an?|one|two|three|four|five|seven|ten|24|48) (?:business |working )?"
    r"(?:minutes?|hours?|days?|weeks?)|in (?:\d+|an?|one|two|three|a few) (?:minutes?|hours?|days?|weeks?))\b",
    re.IGNORECASE,
)
_SUBJECT: Final = (
    r"\b(?:i'll|i will|i'm going to|i am going to|let me|we'll|we will|i can|i'm gonna|i need to|i have to|i must)\s+"
)
_FOLLOW_UP_RE: Final = re.compile(
    _SUBJECT + r"(?:\w+\s+){0,3}?(?:call (?:you|me|them) back|follow up|get back to|check back|reach out|"
    r"call (?:you|me) (?:again|tomorrow|later))"
    r"|\b(?:call (?:you|me) back|follow(?:ing)? up|get back to you|someone will (?:call|contact|email))\b",
    re.IGNORECASE,
)
_ACTION_RE: Final = re.compile(
    _SUBJECT + r"(?:\w+\s+){0,2}?(?:send|e-?mail|text|mail|call|check|process|issue|refund|escalate|arrange|"
    r"schedule|update|cancel|book|look into|open|file|submit|upload|return|reset|ship|credit|transfer|"
    r"note|flag|confirm|forward|order|replace)\b"
    r"|\byou(?:'ll| will) (?:receive|get) (?:an?|the|your)\b",
    re.IGNORECASE,
)
_AGENT_REPLY_MIN_WORDS: Final = 4


@dataclass(frozen=True, slots=True)
class Insight:
    kind: InsightKind
    text: str
    speaker: str
    utterance_id: str
    answered: bool | None = None  # questions only
    owner: str | None = None  # action items and follow-ups: who committed
    due: str | None = None
    passage_id: str | None = None  # questions: the knowledge passage the question is about

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.utterance_id}:{self.text[:40]}"


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]


def is_question(sentence: str) -> bool:
    return sentence.rstrip().endswith("?") or bool(_QUESTION_RE.search(sentence.strip()))


def commitments(sentence: str, speaker: str, utterance_id: str) -> Insight | None:
    """An action item or follow-up said in one sentence, or None."""
    due_match = _DUE_RE.search(sentence)
    due = due_match.group(0) if due_match else None
    if _FOLLOW_UP_RE.search(sentence):
        return Insight("follow_up", sentence, speaker, utterance_id, owner=speaker, due=due)
    if _ACTION_RE.search(sentence) and not is_question(sentence):
        return Insight("action_item", sentence, speaker, utterance_id, owner=speaker, due=due)
    return None


class InsightTracker:
    """Feeds on final lines in order; returns the insights each line creates or updates."""

    def __init__(self, max_insights: int = 500) -> None:
        self._max = max_insights
        self.insights: dict[str, Insight] = {}  # key → latest version, in first-seen order
        self.dropped = 0
        self._open_questions: list[str] = []  # keys of unanswered questions since the agent last spoke

    def on_line(self, speaker: str, text: str, utterance_id: str, passage_id: str | None = None) -> list[Insight]:
        found: list[Insight] = []
        if speaker == "agent":
            found.extend(self._agent_replied(text, passage_id))
        for sentence in sentences(text):
            if speaker == "customer" and is_question(sentence):
                found.extend(
                    self._add(Insight("question", sentence, speaker, utterance_id, False, passage_id=passage_id))
                )
                continue
            commitment = commitments(sentence, speaker, utterance_id)
            if commitment is not None:
                found.extend(self._add(commitment))
        return found

    def on_suggestion(self, passage_ids: tuple[str, ...], question_utterance: str | None) -> list[Insight]:
        """The relay gave the agent an answer: the question it answers counts as answered."""
        updated = []
        for key in list(self._open_questions):
            insight = self.insights[key]
            if (question_utterance is not None and insight.utterance_id == question_utterance) or (
                insight.passage_id is not None and insight.passage_id in passage_ids
            ):
                updated.append(self._answer(key))
        return updated

    @property
    def questions(self) -> list[Insight]:
        return [i for i in self.insights.values() if i.kind == "question"]

    def _agent_replied(self, text: str, passage_id: str | None) -> list[Insight]:
        updated = []
        substantive = len(text.split()) >= _AGENT_REPLY_MIN_WORDS
        for key in list(self._open_questions):
            question = self.insights[key]
            if (question.passage_id is not None and question.passage_id == passage_id) or (
                question.passage_id is None and substantive
            ):
                updated.append(self._answer(key))
        return updated

    def _answer(self, key: str) -> Insight:
        self._open_questions.remove(key)
        answered = replace(self.insights[key], answered=True)
        self.insights[key] = answered
        return answered

    def _add(self, insight: Insight) -> list[Insight]:
        if insight.key in self.insights:
            return []
        if len(self.insights) >= self._max:
            self.dropped += 1
            return []
        self.insights[insight.key] = insight
        if insight.kind == "question":
            self._open_questions.append(insight.key)
        return [insight]
