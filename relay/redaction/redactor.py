"""The redaction stage's API: `Redactor.redact(text)`, a per-call `RedactionSession`, and the
partial-transcript policy `partial_is_safe`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from relay.redaction import scan as _scan
from relay.redaction.vocab import CARD_ENDING_MASK, FILLERS, MASKS, NO_CUE, TEENS, TENS, UNITS, EntityKind


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """Which entities are masked. All are on by default, phone numbers and e-mail addresses
    too: both are personal data, transcripts are stored and sent on, and the agent who needs a
    callback number heard it live; a deployment that must keep them turns them off."""

    card: bool = True
    security_code: bool = True
    expiry: bool = True
    ssn: bool = True
    bank: bool = True  # account and routing numbers
    phone: bool = True
    email: bool = True
    keep_card_last4: bool = True  # "[card ending 1111]"; PCI DSS allows the last four

    def enabled(self) -> frozenset[EntityKind]:
        on = {
            EntityKind.CARD: self.card,
            EntityKind.SECURITY_CODE: self.security_code,
            EntityKind.EXPIRY: self.expiry,
            EntityKind.SSN: self.ssn,
            EntityKind.ACCOUNT: self.bank,
            EntityKind.ROUTING: self.bank,
            EntityKind.PHONE: self.phone,
            EntityKind.EMAIL: self.email,
        }
        return frozenset(kind for kind, flag in on.items() if flag)


@dataclass(frozen=True, slots=True)
class Entity:
    """A masked span: its kind and where it was in the original text (characters)."""

    kind: EntityKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Redaction:
    """A text with its entities masked. The original is not kept, so it cannot leak from here."""

    text: str
    entities: tuple[Entity, ...]

    @property
    def changed(self) -> bool:
        return bool(self.entities)

    def counts(self) -> dict[EntityKind, int]:
        """Entities by kind: the increments of `relay_redactions_total{entity}`."""
        return dict(Counter(e.kind for e in self.entities))


# A cue carried from one final to the next: its kind and how many words before the end it was.
Carry = tuple[tuple[str, int], ...]


class Redactor:
    """Masks the entities of one text; stateless and safe to share between calls."""

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config or RedactionConfig()
        self._enabled = self.config.enabled()

    def redact(self, text: str) -> Redaction:
        return self.redact_with(text, ())[0]

    def redact_with(self, text: str, carry: Carry) -> tuple[Redaction, Carry]:
        """Redact with cues carried from the previous final; returns the cues to carry on."""
        result, found = self._find(text, carry)
        return self._redaction(text, found), _carry_on(result, carry)

    def redact_partial(self, text: str, carry: Carry) -> Redaction | None:
        """A partial transcript, masked; None while it must be held back (`partial_is_safe`).
        One scan gives both the masks and the verdict."""
        result, found = self._find(text, carry)
        if not _partial_safe(result, found):
            return None
        return self._redaction(text, found)

    def _find(self, text: str, carry: Carry) -> tuple[_scan.Scan, list[_scan.Found]]:
        result = _scan.scan(text)
        carried = [
            _scan.Cue(k - len(carry), k - len(carry), -distance - 1, -distance, kind, False)
            for k, (kind, distance) in enumerate(carry)
        ]
        classifier = _scan.Classifier(result, carried)
        found: list[_scan.Found] = []
        for seg in result.segments:
            found += classifier.classify(seg)
        found += (_scan.Found(EntityKind.EMAIL, t.start, t.end) for t in result.tokens if t.kind == _scan.EMAIL)
        return result, sorted((f for f in found if f.kind in self._enabled), key=lambda f: f.start)

    def _redaction(self, text: str, found: list[_scan.Found]) -> Redaction:
        return Redaction(self._apply(text, found), tuple(Entity(f.kind, f.start, f.end) for f in found))

    def _apply(self, text: str, found: list[_scan.Found]) -> str:
        if not found:
            return text
        parts: list[str] = []
        at = 0
        for f in found:
            parts.append(text[at : f.start])
            if f.kind == EntityKind.CARD and f.last4 is not None and self.config.keep_card_last4:
                parts.append(CARD_ENDING_MASK.format(last4=f.last4))
            else:
                parts.append(MASKS[f.kind])
            at = f.end
        parts.append(text[at:])
        return "".join(parts)


def _carry_on(result: _scan.Scan, carry: Carry) -> Carry:
    """Cues said after the last number of this final, still within reach of the next one
    ("What's the card number?" then "4111 1111 1111 1112")."""
    last_digit = result.segments[-1].last_tok if result.segments else -1
    out = [
        (c.kind, result.words - c.pos_end)
        for c in result.cues
        if c.tok_start > last_digit and result.words - c.pos_end <= _scan.PRE_WINDOW and c.kind != NO_CUE
    ]
    if not result.segments and not result.cues:
        out = [(kind, d + result.words) for kind, d in carry if d + result.words <= _scan.PRE_WINDOW]
    return tuple(out)


class RedactionSession:
    """One call's redaction: finals from both speakers, in the order they were said, so a cue
    in one ("What's the card number?") reaches the number in the next. Not thread-safe; one
    per call, used from the call's task."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._carry: Carry = ()

    def redact(self, text: str, *, final: bool = True) -> Redaction:
        """A partial (final=False) sees the carried cues but does not move them on."""
        redaction, carry = self._redactor.redact_with(text, self._carry)
        if final:
            self._carry = carry
        return redaction

    def partial(self, text: str) -> Redaction | None:
        """A partial transcript: masked with the carried cues (not moving them on), or None
        while it must be held back."""
        return self._redactor.redact_partial(text, self._carry)


# A number this long, not masked, is held while a cue after it may still mask it.
_PARTIAL_DIGITS: Final = 3
_HOLD_WORDS: Final = frozenset(
    {*UNITS, *TEENS, *TENS, "oh", "o", "double", "triple", "hundred", "thousand", "at", "dot", "dash", "slash"}
)


def partial_is_safe(text: str) -> bool:
    """Whether a partial transcript may be shown now (no cues carried in).

    Partials go through the same rules as finals (redact them), and are also held:
    - while they end in a number: digits, a number word, or a spoken e-mail cut short
      ("... at gmail dot"). A number still being read cannot be recognized yet ("my social
      is 123 45"), so showing it would leak the digits said so far;
    - while a number of 3 or more digits that was not masked lies within `POST_WINDOW` words
      of the end: its cue may still come after it ("one two three, that's the" + "security
      code"), and the final masks it then.
    The next partial, or the final, shows it masked.
    """
    return _DEFAULT.redact_partial(text, ()) is not None


def _partial_safe(result: _scan.Scan, found: list[_scan.Found]) -> bool:
    for t in reversed(result.tokens):
        if t.kind == _scan.PUNCT or (t.kind == _scan.WORD and t.text in FILLERS):
            continue
        if t.kind == _scan.DIGITS or (t.kind == _scan.WORD and t.text in _HOLD_WORDS):
            return False
        break
    for seg in reversed(result.segments):
        if result.words - seg.pos > _scan.POST_WINDOW:
            break  # segments are in text order: the earlier ones are out of a late cue's reach
        unmasked = sum(
            sum(len(p) for p in parts)
            for parts, start, end in seg.groups
            if not any(f.start <= start and end <= f.end for f in found)
        )
        if unmasked >= _PARTIAL_DIGITS:
            return False
    return True


_DEFAULT: Final = Redactor()
