"""One call's privacy: the redaction of every final text before it leaves the call, the audio
spans to silence, and pause/resume for payments.

The bridge owns one `CallPrivacy` per call and passes every text through it before publishing,
storing, logging, sharing or sending it on: customer and agent finals (one `RedactionSession`,
both speakers in the order they spoke, so a cue in one line reaches the number in the next),
partials (`partial`: masked by the same rules, and held back while a number in them may
still turn out to need a mask),
the model's answers and the wrap-up (`text`). An utterance whose final had something masked
gives a span of call audio to silence: from where its speech started (less `SPAN_BEFORE_S`:
the start is reported after the voice detector heard it) to where it stopped (plus
`SPAN_AFTER_S`).

Pure: no I/O; times are audio positions (seconds) the bridge gives, and a clock for pauses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from relay.redaction import RedactionConfig, RedactionSession, Redactor

SPAN_BEFORE_S: Final = 1.0
SPAN_AFTER_S: Final = 0.25
# A final whose speech start was never reported (a reconnect between them): this much before
# its end is silenced, at most.
UNKNOWN_START_S: Final = 15.0
# The recorder keeps this much of the newest audio unwritten (speech start reports come late),
# and open utterances and what the model has not heard yet up to the bound (the bridge raises
# it to the model link's buffer, when that is longer).
HOLD_MIN_S: Final = 4.0
HOLD_MAX_S: Final = 30.0
_OPEN_MAX: Final = 256  # utterances remembered between speech start and final
_SPANS_MAX: Final = 10_000  # masked spans and pauses listed in a call's record


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    redact: bool = True
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    pause_max_s: float = 180.0


def redaction_config(entities: Iterable[str]) -> RedactionConfig:
    """RELAY_REDACT_ENTITIES names → the pure package's config (`bank`: account and routing)."""
    on = set(entities)
    return RedactionConfig(
        card="card" in on,
        security_code="security_code" in on,
        expiry="expiry" in on,
        ssn="ssn" in on,
        bank="bank" in on,
        phone="phone" in on,
        email="email" in on,
    )


@dataclass(frozen=True, slots=True)
class MaskedSpan:
    speaker: str
    start_s: float
    end_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "start_s": self.start_s, "end_s": self.end_s}


class CallPrivacy:
    """Not thread-safe; one per call, used from the call's task."""

    def __init__(self, config: PrivacyConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        redactor = Redactor(config.redaction)
        self._session = RedactionSession(redactor) if config.redact else None
        # Model answers and wrap-ups are not turns of the call: they see the carried cues but
        # do not move them on (`final=False`).
        self.redactions: Counter[str] = Counter()  # by entity: relay_redactions_total
        self._open: dict[tuple[str, str], list[float | None]] = {}  # (speaker, item) → [start, stop]
        self.masked: list[MaskedSpan] = []
        self.late_masks = 0
        # Audio written to the recording before the model heard it (the hold's bound passed):
        # an utterance in it could not be silenced.
        self.unheard_written_s = 0.0
        # Pause for payments: when (clock) and where (audio position) the pause began.
        self.paused_since: float | None = None
        self._paused_at_s = 0.0
        self.pauses: list[tuple[float, float]] = []  # audio positions, for the record
        self.pause_events: Counter[str] = Counter()  # paused, resumed, expired, ended

    @property
    def enabled(self) -> bool:
        return self._session is not None

    # ------------------------------------------------------------------ text

    def final(self, text: str) -> tuple[str, bool]:
        """A final transcript line, masked; True if anything was."""
        if self._session is None:
            return text, False
        redaction = self._session.redact(text)
        self._count(redaction.counts())
        return redaction.text, redaction.changed

    def partial(self, text: str) -> str | None:
        """A partial transcript, masked; None while a number in it may not be masked yet (held
        back: it ends in a number, or one lies where a cue said after it would reach it)."""
        if self._session is None:
            return text
        redaction = self._session.partial(text)
        return redaction.text if redaction is not None else None

    def text(self, text: str) -> str:
        """Any other text leaving the call (a model answer, the wrap-up), masked and counted."""
        if self._session is None or not text:
            return text
        redaction = self._session.redact(text, final=False)
        self._count(redaction.counts())
        return redaction.text

    def _count(self, counts: dict[Any, int]) -> None:
        for kind, n in counts.items():
            self.redactions[str(kind)] += n

    # ------------------------------------------------------------------ audio spans

    def speech_started(self, speaker: str, item_id: str, at_s: float) -> float | None:
        """Returns where the audio must be held from (None: redaction off)."""
        if self._session is None:
            return None
        if len(self._open) >= _OPEN_MAX:  # finals that never came (a lost session): forget the oldest
            self._open.pop(next(iter(self._open)))
        start = max(0.0, at_s - SPAN_BEFORE_S)
        self._open[(speaker, item_id)] = [start, None]
        return start

    def speech_stopped(self, speaker: str, item_id: str, at_s: float) -> None:
        span = self._open.get((speaker, item_id))
        if span is not None:
            span[1] = at_s + SPAN_AFTER_S

    def utterance_done(self, speaker: str, item_id: str, now_s: float, masked: bool) -> MaskedSpan | None:
        """The utterance's final is in: its span to silence if its text had something masked."""
        start, stop = self._open.pop((speaker, item_id), None) or [None, None]
        if not masked:
            return None
        end = stop if stop is not None else now_s + SPAN_AFTER_S
        begin = start if start is not None else max(0.0, end - UNKNOWN_START_S)
        span = MaskedSpan(speaker, round(begin, 3), round(max(begin, end), 3))
        if len(self.masked) < _SPANS_MAX:
            self.masked.append(span)
        return span

    # ------------------------------------------------------------------ pause

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def pause(self, at_s: float, *, count: bool = True) -> bool:
        """False if already paused. `count`: False for a pause carried over from the replica
        the call comes from (counted there)."""
        if self.paused_since is not None:
            return False
        self.paused_since = self._clock()
        self._paused_at_s = at_s
        if count:
            self.pause_events["paused"] += 1
        return True

    def resume(self, at_s: float, *, event: str = "resumed") -> bool:
        """`event`: resumed, expired (RELAY_PAUSE_MAX_S), ended (the call ended paused).
        False if not paused."""
        if self.paused_since is None:
            return False
        self.paused_since = None
        if len(self.pauses) < _SPANS_MAX:
            self.pauses.append((round(self._paused_at_s, 3), round(max(at_s, self._paused_at_s), 3)))
        self.pause_events[event] += 1
        return True

    def pause_expired(self) -> bool:
        return self.paused_since is not None and self._clock() - self.paused_since >= self.config.pause_max_s

    def summary(self) -> dict[str, Any]:
        """The call record's part: what was masked, where the audio was silenced or paused."""
        return {
            "redaction": self.enabled,
            "redactions": dict(self.redactions),
            "audio_masked": [s.as_dict() for s in self.masked],
            "audio_masked_late": self.late_masks,
            "audio_written_unheard_s": round(self.unheard_written_s, 3),
            "paused": [{"start_s": a, "end_s": b} for a, b in self.pauses],
        }
