"""The scanner: the text is cut into tokens once, then read in one pass over the tokens.

A *segment* is a run of digits as said or written: digit tokens, number words ("four",
"forty one", "double five", "two thousand twenty seven"), with separators (spaces, dashes,
commas, tight dots, slashes, "dash"), and fillers ("uh", "let me see") between them. A
separator or a written token boundary starts a new *group* inside the segment ("4111 1111" is
two groups, "one two three, four five" two). A *cue* is a phrase that names the number near
it ("card", "security code", "order number"); the nearest cues, within a few words before or
after, decide what a segment is. Every loop advances over tokens and every look-around is
bounded by a constant, so the cost is linear in the text's length whatever the text.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from relay.redaction import vocab
from relay.redaction.vocab import EntityKind

WORD: Final = 0
DIGITS: Final = 1
PUNCT: Final = 2
MASK: Final = 3  # a mask this stage wrote: opaque, so redacting twice changes nothing
EMAIL: Final = 4
CODE: Final = 5  # digits glued to letters ("A12", "3rd", "cvv2"): part of a word

# Alternatives without nested quantifiers: each token is matched in time linear in its length.
_TOKEN_RE: Final = re.compile(
    r"\[(?:card ending \d{4}|card|ssn|security code|expiry|account number|routing number|phone|email)\]"
    r"|[^\W\d_]+(?:['’][^\W\d_]+)?"
    r"|\d+"
    r"|\S"
)
_EMAIL_LOCAL: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_EMAIL_PROVIDERS: Final = frozenset({"gmail", "yahoo", "hotmail", "outlook", "icloud", "aol", "protonmail"})
# A glued run this long is a number someone read, not a model number: it is scanned.
_GLUED_MAX: Final = 13
PRE_WINDOW: Final = 10  # words between a cue and the number after it
POST_WINDOW: Final = 4  # words between a number and the cue after it ("... is my card number")
POST_PENALTY: Final = 2
_NANP_LEAD: Final = frozenset("23456789")


@dataclass(slots=True)
class Token:
    kind: int
    start: int
    end: int
    text: str  # words lower case; digits as ASCII
    glued: bool = False  # a word written against digits


@dataclass(slots=True)
class Cue:
    tok_start: int
    tok_end: int
    pos_start: int
    pos_end: int
    kind: str
    forward_only: bool


@dataclass(slots=True)
class Segment:
    first_tok: int
    pos: int
    groups: list[tuple[list[str], int, int]] = field(default_factory=list)
    last_tok: int = 0
    new_group: bool = True
    amount: bool = False  # a currency sign before, or written like "1,250" or "12.50"
    unit_after: bool = False  # "dollars", "minutes", "%" right after
    slash: bool = False
    plus: bool = False
    lead: int = -1  # start of a "(" or "+" written against the first digit: masked with it

    def add(self, digits: str, start: int, end: int, tok: int, own_group: bool) -> None:
        if self.new_group or not self.groups:
            self.groups.append(([digits], start, end))
        else:
            parts, first, _ = self.groups[-1]
            parts.append(digits)
            self.groups[-1] = (parts, first, end)
        self.new_group = own_group  # a written token is a group of its own
        self.last_tok = tok


@dataclass(frozen=True, slots=True)
class Found:
    kind: EntityKind
    start: int
    end: int
    last4: str | None = None  # a whole card's last four digits


def _ascii_digits(s: str) -> str:
    return s if s.isascii() else "".join(str(int(c)) for c in s)


def _written_emails(text: str) -> list[tuple[int, int]]:
    """Spans of written addresses; each "@" looks at most 64 characters left, 255 right."""
    spans: list[tuple[int, int]] = []
    floor = 0
    at = text.find("@")
    while at != -1:
        left = at
        while left > max(floor, at - 64) and text[left - 1] in _EMAIL_LOCAL:
            left -= 1
        right = at + 1
        limit = min(len(text), at + 256)
        while right < limit and text[right] in _EMAIL_DOMAIN:
            right += 1
        while right > at + 1 and text[right - 1] in ".-":
            right -= 1
        while left < at and text[left] == ".":
            left += 1
        labels = text[at + 1 : right].split(".")
        if left < at and len(labels) >= 2 and all(labels) and labels[-1].isalpha() and len(labels[-1]) >= 2:
            spans.append((left, right))
            floor = right
        at = text.find("@", max(at + 1, floor))
    return spans


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    spans = _written_emails(text) if "@" in text else []
    pos = 0
    for start, end in [*spans, (len(text), len(text))]:
        for m in _TOKEN_RE.finditer(text, pos, start):
            s = m.group()
            c = s[0]
            if c.isdecimal():
                tokens.append(Token(DIGITS, m.start(), m.end(), _ascii_digits(s)))
            elif c == "[" and len(s) > 1:
                tokens.append(Token(MASK, m.start(), m.end(), s))
            elif c.isalpha():
                tokens.append(Token(WORD, m.start(), m.end(), s.lower().replace("’", "'")))
            else:
                tokens.append(Token(PUNCT, m.start(), m.end(), s))
        if start < end:
            tokens.append(Token(EMAIL, start, end, ""))
        pos = end
    # Digits glued to a word are part of it ("3rd", "A12", "cvv2"), unless long enough to be a
    # number; a word glued to digits is never a number word ("2002zero" is no "2002 0").
    for i, t in enumerate(tokens):
        if t.kind == DIGITS:
            before = i > 0 and tokens[i - 1].kind == WORD and tokens[i - 1].end == t.start
            after = i + 1 < len(tokens) and tokens[i + 1].kind == WORD and tokens[i + 1].start == t.end
            if before:
                tokens[i - 1].glued = True
            if after:
                tokens[i + 1].glued = True
            if (before or after) and len(t.text) < _GLUED_MAX:
                t.kind = CODE
    return tokens


def _spoken_emails(tokens: list[Token]) -> list[Token]:
    """Fold "jane dot doe at gmail dot com" into one EMAIL token; bounded look-around per "at"."""
    out: list[Token] = []
    i = 0
    n = len(tokens)
    while i < n:
        t = tokens[i]
        if t.kind == WORD and t.text == "at" and out:
            end = _email_domain_end(tokens, i + 1)
            if end is not None:
                k = len(out)
                while k > 0 and len(out) - k < 6:
                    prev = out[k - 1]
                    joiner = prev.text in vocab.EMAIL_JOINERS and prev.kind in (WORD, PUNCT)
                    if (prev.kind in (WORD, DIGITS, CODE) and prev.text not in vocab.EMAIL_STOPS) or joiner:
                        k -= 1
                    else:
                        break
                while k < len(out) and out[k].text in vocab.EMAIL_JOINERS:
                    k += 1
                if k < len(out):
                    start = out[k].start
                    del out[k:]
                    out.append(Token(EMAIL, start, tokens[end].end, ""))
                    i = end + 1
                    continue
        out.append(t)
        i += 1
    return out


def _email_domain_end(tokens: list[Token], i: int) -> int | None:
    """Index of the last token of a spoken domain starting at i ("gmail dot com"), or None."""
    n = len(tokens)
    if i >= n or tokens[i].kind not in (WORD, CODE) or tokens[i].text in vocab.EMAIL_STOPS:
        return None
    last: int | None = i if tokens[i].text in _EMAIL_PROVIDERS else None
    j = i
    for _ in range(4):
        if j + 2 >= n or tokens[j + 1].text not in vocab.EMAIL_DOTS:
            break
        label = tokens[j + 2]
        if label.kind not in (WORD, CODE):
            break
        j += 2
        if label.text in vocab.EMAIL_TLDS:
            last = j
    return last


def _digitish(tokens: list[Token]) -> set[int]:
    """Indices of the words that are spoken digits here, homophones included.

    Number words always are. "oh"/"o" and the homophones a recognizer writes for digits
    ("for", "to", "won", "ate") are only inside a *run* of digit-like tokens (separators and
    fillers between them allowed): "oh" and "won" in a run of two or more, "for", "to" and
    "ate" not at either end of it; a run needs one real digit or an "oh" ("four won won won"
    and "one one for one" are digits; "for two weeks", "to to 6011 ..." and "eight to" are not).
    """
    out: set[int] = set()
    run: list[int] = []
    strong = 0

    def flush() -> None:
        if run and (strong or any(tokens[k].text in vocab.WEAK_ONE_SIDE for k in run)):
            both = [tokens[k].kind == WORD and tokens[k].text in vocab.WEAK_BOTH_SIDES for k in run]
            first = both.index(False) if False in both else len(run)
            last = len(run) - both[::-1].index(False) if False in both else 0
            for at, k in enumerate(run):
                w = tokens[k].text
                if w in vocab.WEAK_ONE_SIDE and tokens[k].kind == WORD:
                    if len(run) >= 2:
                        out.add(k)
                elif not both[at] or first < at < last:
                    out.add(k)
        run.clear()

    for i, t in enumerate(tokens):
        w = t.text
        if t.glued:
            flush()
            strong = 0
        elif t.kind == DIGITS or (
            t.kind == WORD and (w in vocab.UNITS or w in vocab.TEENS or w in vocab.TENS or w in vocab.REPEATS)
        ):
            run.append(i)
            strong += 1
        elif t.kind == WORD and (t.text in vocab.WEAK_ONE_SIDE or t.text in vocab.WEAK_BOTH_SIDES):
            run.append(i)
        elif (t.kind == PUNCT and t.text in ",-") or (t.kind == WORD and t.text in vocab.FILLERS):
            continue
        else:
            flush()
            strong = 0
    flush()
    return out


@dataclass(slots=True)
class Scan:
    tokens: list[Token]
    cues: list[Cue]
    segments: list[Segment]
    words: int  # counted words in the text


def scan(text: str) -> Scan:
    tokens = _spoken_emails(tokenize(text))
    digitish = _digitish(tokens)
    n = len(tokens)
    cues: list[Cue] = []
    segments: list[Segment] = []
    seg: Segment | None = None
    pos = 0
    i = 0

    def close(at: int) -> None:
        nonlocal seg
        if seg is None:
            return
        if at < n:
            nxt = tokens[at]
            if (nxt.kind == WORD and nxt.text in vocab.UNIT_WORDS) or nxt.text == "%":
                seg.unit_after = True
        segments.append(seg)
        seg = None

    def add(digits: str, start: int, end: int, tok: int, own_group: bool) -> None:
        nonlocal seg
        if seg is None:
            seg = Segment(first_tok=tok, pos=pos)
            prev = tokens[tok - 1] if tok > 0 else None
            if prev is not None and prev.kind == PUNCT and prev.end == start:
                seg.amount = prev.text in vocab.CURRENCY_CHARS
                seg.plus = prev.text == "+"
                if prev.text in "(+":
                    seg.lead = prev.start
        seg.add(digits, start, end, tok, own_group)

    while i < n:
        t = tokens[i]
        kind = t.kind
        if kind == DIGITS:
            if seg is not None:
                seg.new_group = True  # a written number is a group of its own
            add(t.text, t.start, t.end, i, True)
            i += 1
            continue
        if kind == WORD:
            w = t.text
            cue = _cue_at(tokens, i)
            if cue is not None and len(cue[0]) > 1:
                # A phrase cue comes before its words' other readings ("three digit code").
                close(i)
                width = len(cue[0])
                if cue[1] != vocab.NO_CUE:
                    cues.append(Cue(i, i + width - 1, pos, pos + width, cue[1], w in vocab.FORWARD_ONLY))
                pos += width
                i += width
                continue
            scale = seg is not None and w in vocab.SCALES and tokens[i - 1].kind == WORD and not t.glued
            if i in digitish or scale:
                read = _number_word(tokens, i, digitish)
                if read is not None:
                    digits, j = read
                    add(digits, t.start, tokens[j - 1].end, j - 1, False)
                    i = j
                    continue
            if (w in vocab.FILLERS or w in vocab.SEPARATOR_WORDS) and not t.glued:
                if seg is not None:
                    seg.new_group = True
                i += 1
                continue
            phrase = _filler_phrase(tokens, i)
            if phrase:
                if seg is not None:
                    seg.new_group = True
                i += phrase
                continue
            close(i)
            if cue is not None and cue[1] != vocab.NO_CUE:
                cues.append(Cue(i, i, pos, pos + 1, cue[1], w in vocab.FORWARD_ONLY))
            pos += 1
            i += 1
            continue
        if kind == PUNCT:
            c = t.text
            tight_after = i + 1 < n and tokens[i + 1].start == t.end
            if c in vocab.SEPARATOR_CHARS and not (c == "." and not tight_after):
                if seg is not None:
                    seg.new_group = True
                    prev, nxt = tokens[i - 1], tokens[i + 1] if i + 1 < n else None
                    if nxt is not None and nxt.kind == DIGITS and prev.kind == DIGITS and tight_after:
                        # "1,250" and "12.50" are amounts; "4111,1111" is not (the next group is 4 long).
                        thousands = c == "," and len(nxt.text) == 3 and len(prev.text) <= 3
                        cents = c == "." and len(nxt.text) <= 2
                        if prev.end == t.start and (thousands or cents):
                            seg.amount = True
                    seg.slash = seg.slash or c == "/"
                i += 1
                continue
            close(i)
            i += 1
            continue
        # A mask or an e-mail: counted as no word, so a second pass measures the same distances.
        close(i)
        if kind == CODE:
            pos += 1
        i += 1
    close(n)
    return Scan(tokens, cues, segments, pos)


def _cue_at(tokens: list[Token], i: int) -> tuple[tuple[str, ...], str] | None:
    w = tokens[i].text
    for words, kind in vocab.CUES.get(w[:-2] if w.endswith("'s") else w, ()):
        if _matches(tokens, i, words, possessive=True):
            return words, kind
    return None


def _matches(tokens: list[Token], i: int, words: tuple[str, ...], *, possessive: bool = False) -> bool:
    """Whether the phrase is at i; with `possessive`, its last word may end in "'s" ("code's")."""
    if i + len(words) > len(tokens):
        return False
    last = len(words) - 1
    return all(
        tokens[i + k].kind == WORD
        and (tokens[i + k].text == w or (possessive and k == last and tokens[i + k].text == w + "'s"))
        for k, w in enumerate(words)
    )


def _filler_phrase(tokens: list[Token], i: int) -> int:
    for phrase in vocab.FILLER_PHRASES:
        if tokens[i].text == phrase[0] and _matches(tokens, i, phrase):
            return len(phrase)
    return 0


def _skip_hyphen(tokens: list[Token], j: int) -> int:
    if j < len(tokens) and tokens[j].kind == PUNCT and tokens[j].text == "-":
        return j + 1
    return j


def _simple(tokens: list[Token], i: int, digitish: set[int]) -> tuple[str, int] | None:
    """One unit, teen, or tens word (with its unit: "forty one", "forty-one") at i."""
    if i >= len(tokens) or tokens[i].kind != WORD or tokens[i].glued:
        return None
    w = tokens[i].text
    if w in vocab.UNITS:
        return vocab.UNITS[w], i + 1
    if i in digitish and w in vocab.WEAK_ONE_SIDE:
        return vocab.WEAK_ONE_SIDE[w], i + 1
    if i in digitish and w in vocab.WEAK_BOTH_SIDES:
        return vocab.WEAK_BOTH_SIDES[w], i + 1
    if w in vocab.TEENS:
        return vocab.TEENS[w], i + 1
    if w in vocab.TENS:
        k = _skip_hyphen(tokens, i + 1)
        if k < len(tokens) and tokens[k].kind == WORD and tokens[k].text in vocab.UNITS and tokens[k].text != "zero":
            return vocab.TENS[w] + vocab.UNITS[tokens[k].text], k + 1
        return vocab.TENS[w] + "0", i + 1
    return None


def _number_word(tokens: list[Token], i: int, digitish: set[int]) -> tuple[str, int] | None:
    w = tokens[i].text
    if w in vocab.REPEATS:
        k = _skip_hyphen(tokens, i + 1)
        if k < len(tokens) and tokens[k].kind == DIGITS and len(tokens[k].text) == 1:
            return tokens[k].text * vocab.REPEATS[w], k + 1
        one = _simple(tokens, k, digitish)
        if one is not None and len(one[0]) == 1:
            return one[0] * vocab.REPEATS[w], one[1]
        return None
    if w in vocab.SCALES:
        width = vocab.SCALES[w]
        k = i + 1
        if k < len(tokens) and tokens[k].text == "and":
            k += 1
        rest = _simple(tokens, k, digitish)
        if rest is not None and len(rest[0]) <= width:
            return rest[0].zfill(width), rest[1]
        return "0" * width, i + 1
    return _simple(tokens, i, digitish)


# --- classification -------------------------------------------------------------------------


def _luhn(d: str) -> bool:
    total = 0
    for k, ch in enumerate(reversed(d)):
        v = ord(ch) - 48
        if k & 1:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return total % 10 == 0


_CARD_LENGTHS: Final = (16, 15, 19, 14, 13, 17, 18)  # the common lengths first
# A card with its expiry and code, every digit its own group, is 23 groups; a segment with far
# more is not one reading, and searching it would cost for nothing.
_CARD_MAX_GROUPS: Final = 48


def _card_window(groups: list[str]) -> tuple[int, int] | None:
    """The leftmost run of whole groups with 13-19 digits passing Luhn (bounded per start).
    A run that is not the whole segment must also start like a card (2-6), since one in ten
    runs of any digits passes Luhn."""
    for i in range(len(groups)):
        if groups[i][0] == "0" or (groups[i][0] not in "23456" and (i or sum(len(g) for g in groups) > 19)):
            continue
        by_length: dict[int, int] = {}
        total = 0
        for j in range(i, len(groups)):
            total += len(groups[j])
            if total > 19:
                break
            if total >= 13 and _luhn("".join(groups[i : j + 1])):
                by_length[total] = j + 1
        for length in _CARD_LENGTHS:
            if length in by_length:
                return i, by_length[length]
    return None


def _month(s: str) -> bool:
    return len(s) <= 2 and 1 <= int(s) <= 12


def _expiry_groups(groups: list[str], k: int) -> int:
    """How many groups from k read as a card expiry (MMYY, M YY, MM/YYYY...), 0 if none."""
    g0 = groups[k]
    if len(g0) == 4 and _month(g0[:2]):
        return 1
    if len(g0) == 6 and _month(g0[:2]) and g0[2:4] == "20":
        return 1
    if len(g0) == 3 and g0[0] != "0":
        return 1
    if len(g0) <= 2 and _month(g0) and k + 1 < len(groups):
        g1 = groups[k + 1]
        if len(g1) == 2 or (len(g1) == 4 and g1.startswith("20")):
            return 2
    return 0


def _nanp(d: str) -> bool:
    return len(d) == 10 and d[0] in _NANP_LEAD and d[3] in _NANP_LEAD


def _ssn_valid(d: str) -> bool:
    area = int(d[:3])
    return area != 0 and area != 666 and area < 900 and d[3:5] != "00" and d[5:] != "0000"


def _bounds(lens: list[int]) -> set[int]:
    out: set[int] = set()
    total = 0
    for size in lens[:-1]:
        total += size
        out.add(total)
    return out


class Classifier:
    """Decides what each segment of one scan is."""

    def __init__(self, result: Scan, carried: list[Cue]) -> None:
        self.tokens = result.tokens
        self.cues = [*carried, *result.cues]
        self.cue_ends = [c.tok_end for c in self.cues]

    def near_cues(self, seg: Segment) -> list[str]:
        """Cue kinds near the segment, nearest first (a tie goes to the cue before)."""
        found: list[tuple[int, int, str]] = []
        idx = bisect_left(self.cue_ends, seg.first_tok)
        k = idx - 1
        while k >= 0:
            cue = self.cues[k]
            distance = seg.pos - cue.pos_end
            if distance > PRE_WINDOW:
                break
            found.append((distance, 0, cue.kind))
            k -= 1
        k = idx
        while k < len(self.cues):
            cue = self.cues[k]
            distance = cue.pos_start - seg.pos
            if distance > POST_WINDOW:
                break
            if not cue.forward_only:
                # A cue after the number is the weaker reading: "routing number 021000021,
                # account number ..." is a routing number.
                found.append((distance + POST_PENALTY, 1, cue.kind))
            k += 1
        found.sort()
        return [kind for _, _, kind in found]

    def classify(self, seg: Segment) -> list[Found]:
        groups = ["".join(parts) for parts, _, _ in seg.groups]
        starts = [s for _, s, _ in seg.groups]
        ends = [e for _, _, e in seg.groups]
        cues = self.near_cues(seg)
        n = sum(len(g) for g in groups)

        found = self._classify(seg, groups, starts, ends, cues, n)
        if seg.lead >= 0 and found and found[0].start == starts[0]:
            found[0] = Found(found[0].kind, seg.lead, found[0].end, found[0].last4)
        return found

    def _classify(
        self,
        seg: Segment,
        groups: list[str],
        starts: list[int],
        ends: list[int],
        cues: list[str],
        n: int,
        *,
        whole: bool = True,
    ) -> list[Found]:
        def span(kind: EntityKind, i: int, j: int, last4: str | None = None) -> Found:
            return Found(kind, starts[i], ends[j - 1], last4)

        if n >= 13:
            nearest = cues[0] if cues else None
            if nearest == vocab.STRONG_NEGATIVE:
                return []  # "IMEI 35 209900 176148 0" passes Luhn and is still no card
            if nearest == vocab.NEGATIVE:
                # "order 4111 1111 1111 1111": a whole number passing Luhn is masked anyway.
                whole = n <= 19 and _luhn("".join(groups))
                return [span(EntityKind.CARD, 0, len(groups), _last4(groups, n))] if whole else []
            window = _card_window(groups) if len(groups) <= _CARD_MAX_GROUPS else None
            if window is not None:
                i, j = window
                found: list[Found] = []
                if i:
                    # Read as it will be when redacted again: a segment of its own.
                    prefix = sum(len(g) for g in groups[:i])
                    found += self._classify(seg, groups[:i], starts[:i], ends[:i], cues, prefix, whole=False)
                found.append(span(EntityKind.CARD, i, j, "".join(groups[i:j])[-4:]))
                return found + self._card_tail(groups, j, span)
            for kind in cues:
                if kind == EntityKind.CARD:
                    return [span(EntityKind.CARD, 0, len(groups), _last4(groups, n))]
                if kind == EntityKind.ACCOUNT and n <= 17:
                    return [span(EntityKind.ACCOUNT, 0, len(groups))]
                if kind == EntityKind.PHONE and n <= 15:
                    return [span(EntityKind.PHONE, 0, len(groups))]
                if kind in (vocab.NEGATIVE, vocab.STRONG_NEGATIVE):
                    return []
            if seg.plus and n <= 15:
                return [span(EntityKind.PHONE, 0, len(groups))]
            # A long number nobody named is most likely a card read with a digit misheard.
            if groups[0][0] in "3456" or max(len(g) for g in groups) >= 13:
                return [span(EntityKind.CARD, 0, len(groups), _last4(groups, n))]
            return []
        return self._small(seg, groups, cues, starts[0], ends[-1], whole=whole, starts=starts, ends=ends)

    def _card_tail(self, groups: list[str], j: int, span: Callable[[EntityKind, int, int], Found]) -> list[Found]:
        """Groups read right after a card, in the same breath: expiry, then security code."""
        found: list[Found] = []
        rest = len(groups) - j
        if rest == 1 and (len(groups[j]) == 3 or (len(groups[j]) == 4 and not _month(groups[j][:2]))):
            return [span(EntityKind.SECURITY_CODE, j, j + 1)]
        if rest:
            used = _expiry_groups(groups, j)
            if used:
                found.append(span(EntityKind.EXPIRY, j, j + used))
                j += used
        if j < len(groups) and len(groups[j]) in (3, 4):
            found.append(span(EntityKind.SECURITY_CODE, j, j + 1))
            j += 1
        if j < len(groups):
            found.append(span(EntityKind.CARD, j, len(groups)))
        return found

    def _small(
        self,
        seg: Segment,
        groups: list[str],
        cues: list[str],
        start: int,
        end: int,
        *,
        whole: bool,
        starts: list[int],
        ends: list[int],
    ) -> list[Found]:
        d = "".join(groups)
        n = len(d)
        lens = [len(g) for g in groups]
        if seg.amount or (whole and seg.unit_after):
            return []
        for kind in cues:
            if kind in (vocab.NEGATIVE, vocab.STRONG_NEGATIVE):
                return []
            if kind == EntityKind.CARD and 8 <= n <= 12 and not seg.slash:
                return [Found(EntityKind.CARD, start, end)]
            if kind == EntityKind.SECURITY_CODE and n in (3, 4):
                return [Found(EntityKind.SECURITY_CODE, start, end)]
            if kind == EntityKind.EXPIRY:
                month, said_of = self._month_before(seg)
                # "March of 27", "March 2027"; "March 31" is a day.
                if month is not None and ((n == 2 and (said_of or int(d) > 31)) or (n == 4 and d.startswith("20"))):
                    return [Found(EntityKind.EXPIRY, month, end)]
                used = _expiry_groups(groups, 0) if month is None else 0
                if used == len(groups):
                    return [Found(EntityKind.EXPIRY, start, end)]
                if used and used == len(groups) - 1 and lens[-1] in (3, 4):
                    return [
                        Found(EntityKind.EXPIRY, start, ends[used - 1]),
                        Found(EntityKind.SECURITY_CODE, starts[used], end),
                    ]
            if kind == EntityKind.SSN and n == 9:
                return [Found(EntityKind.SSN, start, end)]
            if kind == EntityKind.ROUTING and 8 <= n <= 10:
                return [Found(EntityKind.ROUTING, start, end)]
            if kind == EntityKind.ACCOUNT and 6 <= n <= 17:
                return [Found(EntityKind.ACCOUNT, start, end)]
            if kind == EntityKind.PHONE and 7 <= n <= 15:
                return [Found(EntityKind.PHONE, start, end)]
        if lens == [3, 2, 4] and _ssn_valid(d):
            return [Found(EntityKind.SSN, start, end)]
        if n == 10 and _nanp(d) and _bounds(lens) <= {3, 6}:
            return [Found(EntityKind.PHONE, start, end)]
        if n == 11 and d[0] == "1" and _nanp(d[1:]) and _bounds(lens) <= {1, 4, 7}:
            return [Found(EntityKind.PHONE, start, end)]
        if seg.plus and 8 <= n <= 15:
            return [Found(EntityKind.PHONE, start, end)]
        return []

    def _month_before(self, seg: Segment) -> tuple[int | None, bool]:
        """Start of a month name said just before the segment ("March of twenty seven"), and
        whether "of" or an apostrophe came between."""
        k = seg.first_tok - 1
        said_of = False
        for _ in range(3):
            if k < 0:
                break
            t = self.tokens[k]
            if t.kind == WORD and t.text in vocab.MONTHS:
                return t.start, said_of
            if not (t.text in ("of", "'", "’", ",") and t.kind in (WORD, PUNCT)):
                break
            said_of = said_of or t.text != ","
            k -= 1
        return None, False


def _last4(groups: list[str], n: int) -> str | None:
    return "".join(groups)[-4:] if n <= 19 else None
