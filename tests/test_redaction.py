"""The redaction stage: the goals on the labelled set (tests/data/redaction_set.tsv), the masks
and the words around them, the switches, cues carried between finals, partial transcripts,
bounded cost on hostile input, properties over generated sentences."""

from __future__ import annotations

import ast
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.redaction import (
    MASKS,
    EntityKind,
    Redaction,
    RedactionConfig,
    RedactionSession,
    Redactor,
    partial_is_safe,
)

ROOT = Path(__file__).resolve().parent.parent
SET = ROOT / "tests" / "data" / "redaction_set.tsv"
REDACTOR = Redactor()


def _rows() -> list[tuple[tuple[str, ...], str, str | None]]:
    rows = []
    for line in SET.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        kinds = () if cols[0] == "-" else tuple(cols[0].split(","))
        rows.append((kinds, cols[1], cols[2] if len(cols) > 2 else None))
    return rows


ROWS = _rows()
POSITIVES = [r for r in ROWS if r[0]]
NEGATIVES = [r for r in ROWS if not r[0]]


def recall_by_kind() -> dict[str, tuple[int, int]]:
    found: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    for kinds, text, _ in POSITIVES:
        got = REDACTOR.redact(text).counts()
        for kind, count in Counter(kinds).items():
            expected[kind] += count
            found[kind] += min(count, got.get(EntityKind(kind), 0))
    return {kind: (found[kind], expected[kind]) for kind in expected}


# --- the labelled set -----------------------------------------------------------------------


def test_the_set_is_big_enough_and_covers_every_kind() -> None:
    assert len(POSITIVES) >= 150 and len(NEGATIVES) >= 150
    assert {k for kinds, _, _ in POSITIVES for k in kinds} == {k.value for k in EntityKind}


def test_recall_goals_on_the_labelled_set() -> None:
    recall = recall_by_kind()
    for kind, (found, expected) in recall.items():
        goal = 1.0 if kind in ("card", "ssn") else 0.95
        assert found / expected >= goal, (kind, found, expected)


def test_false_positives_on_at_most_one_percent_of_negatives() -> None:
    flagged = [text for _, text, _ in NEGATIVES if REDACTOR.redact(text).changed]
    assert len(flagged) <= 0.01 * len(NEGATIVES), flagged


@pytest.mark.parametrize(
    ("text", "masked"), [(text, masked) for _, text, masked in ROWS if masked is not None], ids=lambda v: v[:40]
)
def test_masked_text_is_exact(text: str, masked: str) -> None:
    assert REDACTOR.redact(text).text == masked


@pytest.mark.parametrize(("kinds", "text"), [(k, t) for k, t, _ in POSITIVES], ids=lambda v: str(v)[:40])
def test_every_other_word_is_unchanged(kinds: tuple[str, ...], text: str) -> None:
    """Outside the masked spans the text is the original, character for character."""
    red = REDACTOR.redact(text)
    kept, at = [], 0
    for e in red.entities:
        kept.append(text[at : e.start])
        at = e.end
    kept.append(text[at:])
    mask_re = "|".join(re.escape(m) for m in MASKS.values()) + r"|\[card ending \d{4}\]"
    assert re.split(mask_re, red.text) == kept


def test_card_digits_do_not_survive_in_any_form() -> None:
    for kinds, text, _ in POSITIVES:
        if "card" in kinds:
            out = REDACTOR.redact(text).text
            assert not re.search(r"\d(?:[ .,-]?\d){12}", out), out  # no 13 digits, separated or not


# --- masks and switches ---------------------------------------------------------------------


def test_entities_carry_kind_and_original_span() -> None:
    text = "My social is 123-45-6789."
    red = REDACTOR.redact(text)
    (entity,) = red.entities
    assert entity.kind is EntityKind.SSN and text[entity.start : entity.end] == "123-45-6789"
    assert red.counts() == {EntityKind.SSN: 1}
    assert Redaction("plain", ()).changed is False


def test_unchanged_text_is_returned_as_is() -> None:
    text = "I'd like to return the blue jacket, please."
    red = REDACTOR.redact(text)
    assert red.text == text and not red.changed


def test_each_entity_can_be_switched_off() -> None:
    text = "Call me at 212-555-1234 or mail jane@example.com, card 4111 1111 1111 1111."
    assert Redactor(RedactionConfig(phone=False)).redact(text).text == (
        "Call me at 212-555-1234 or mail [email], card [card ending 1111]."
    )
    assert Redactor(RedactionConfig(email=False)).redact(text).text == (
        "Call me at [phone] or mail jane@example.com, card [card ending 1111]."
    )
    assert Redactor(RedactionConfig(keep_card_last4=False)).redact(text).text == (
        "Call me at [phone] or mail [email], card [card]."
    )
    assert "4111" in Redactor(RedactionConfig(card=False)).redact(text).text
    bank = "routing number 021000021 account number 1234567890"
    assert Redactor(RedactionConfig(bank=False)).redact(bank).text == bank
    assert Redactor(RedactionConfig(ssn=False)).redact("my social is 123-45-6789").text.endswith("6789")
    assert Redactor(RedactionConfig(security_code=False)).redact("cvv 123").text == "cvv 123"
    assert Redactor(RedactionConfig(expiry=False)).redact("expires 12/27").text == "expires 12/27"


def test_a_luhn_failing_number_near_card_words_is_masked() -> None:
    assert REDACTOR.redact("card number 4111 1111 1111 1112").text == "card number [card ending 1112]"
    # The same misheard number under an order cue is an order number.
    assert REDACTOR.redact("order number 4111 1111 1111 1112").text == "order number 4111 1111 1111 1112"
    # ...but a whole number passing Luhn is a card whatever it is called.
    assert REDACTOR.redact("order number 4111 1111 1111 1111").text == "order number [card ending 1111]"


# --- cues carried between finals, and partials ----------------------------------------------


def test_a_cue_in_one_final_reaches_the_number_in_the_next() -> None:
    session = RedactionSession(REDACTOR)
    assert session.redact("What's your social security number?").text == "What's your social security number?"
    assert session.redact("Sure, 234567890.").text == "Sure, [ssn]."
    assert session.redact("and 234567890 again").text == "and 234567890 again"  # the cue was used
    assert REDACTOR.redact("Sure, 234567890.").text == "Sure, 234567890."  # no cue, no mask
    session.redact("And the security code?")
    assert session.redact("It's, um, 737.", final=False).text == "It's, um, [security code]."
    assert session.redact("okay", final=True).text == "okay"
    assert session.redact("737").text == "[security code]"  # still within reach after "okay"


def test_partials_are_held_while_they_end_in_a_number() -> None:
    for held in ("my social is 123 45", "card number four one one one", "it's forty", "um 5, uh", "jane at gmail dot"):
        assert not partial_is_safe(held), held
    for shown in ("my card number is", "I'd like to pay", "", "[card ending 1111] thanks"):
        assert partial_is_safe(shown), shown


def test_partials_are_held_while_a_cue_said_after_a_number_may_still_mask_it() -> None:
    # The scanner masks a number when its cue comes up to POST_WINDOW words after it: until
    # those words are said, the partial holds the number back.
    for held, cue in (
        ("one two three, that's the", "security code"),
        ("zero two one zero zero zero zero two one is the", "routing number"),
        ("it's 12 34 56 78 that's my", "account number"),
    ):
        assert not partial_is_safe(held), held
        assert REDACTOR.redact(f"{held} {cue}").changed, cue  # the cue that was still to come
    # Out of reach of any later cue, masked already, or too short to be an entity: shown.
    for shown in (
        "one two three, that's the one I want to buy",
        "the security code is 737 thanks",
        "I have 2 kids and",
    ):
        assert partial_is_safe(shown), shown
    # One scan gives the session both the masks (carried cues included) and the verdict.
    session = RedactionSession(REDACTOR)
    session.redact("What's the card number?")
    shown_partial = session.partial("4111 1111 1111 1111 okay")
    assert shown_partial is not None and shown_partial.text == "[card ending 1111] okay"
    assert session.partial("one two three, that's the") is None


# --- bounded cost ---------------------------------------------------------------------------


def _timed(text: str) -> float:
    began = time.perf_counter()
    REDACTOR.redact(text)
    return time.perf_counter() - began


def test_100_kb_of_digits_and_separators_completes() -> None:
    rng = random.Random(7)
    for alphabet in ("0123456789 -", "0123456789 ,.-/()+", "4111 one four oh double uh-, "):
        text = "".join(rng.choice(alphabet) for _ in range(100_000))
        # A guard against catastrophic backtracking (which would take minutes), not a benchmark.
        assert _timed(text) < 5.0
    assert _timed("4" * 100_000) < 5.0
    assert REDACTOR.redact("4" * 100_000).text == "[card]"
    assert _timed("a@" * 50_000) < 5.0 and _timed("@a." * 33_000) < 5.0


def test_100_kb_of_random_unicode_completes() -> None:
    rng = random.Random(11)
    text = "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(100_000))
    assert _timed(text) < 5.0
    pieces = ["٤", "١", "four", " ", "@", "at", "dot", "com", "card", "-", "\u200b"]
    mixed = "".join(rng.choice(pieces) for _ in range(30_000))
    assert _timed(mixed) < 5.0


# --- properties -----------------------------------------------------------------------------

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_NEUTRAL_TEXT = (
    "I would like to check on the the status of my parcel please thanks a lot yes okay and then so we "
    "talked about it yesterday agent customer blue jacket shipping"
)
_NEUTRAL = _NEUTRAL_TEXT.split()


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = [int(c) for c in body + check]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return body + check
    raise AssertionError


@st.composite
def _spoken_card(draw: st.DrawFn) -> tuple[str, str]:
    lead = draw(st.sampled_from(["4", "51", "52", "55", "34", "37", "6011", "35"]))
    length = draw(st.sampled_from([15, 16])) if lead in ("34", "37") else 16
    body = lead + "".join(draw(st.sampled_from("0123456789")) for _ in range(length - 1 - len(lead)))
    card = _luhn_complete(body)
    group = draw(st.sampled_from([4, 1, 16, 2]))
    parts = [card[i : i + group] for i in range(0, len(card), group)]
    spoken = []
    for part in parts:
        style = draw(st.sampled_from(["digits", "words", "mixed", "oh"]))
        if style == "digits":
            spoken.append(part)
        elif style == "words" or style == "oh":
            names = ["oh" if (style == "oh" and c == "0") else _WORDS[int(c)] for c in part]
            spoken.append(" ".join(names))
        else:
            spoken.append(" ".join(c if i % 2 else _WORDS[int(c)] for i, c in enumerate(part)))
    sep = draw(st.sampled_from([" ", ", ", " - ", ", uh, ", " um "]))
    return card, sep.join(spoken)


@settings(max_examples=300, deadline=None)
@given(
    card=_spoken_card(),
    before=st.lists(st.sampled_from(_NEUTRAL), max_size=8),
    after=st.lists(st.sampled_from(_NEUTRAL), max_size=8),
)
def test_a_luhn_valid_card_in_any_spoken_form_is_masked(
    card: tuple[str, str], before: list[str], after: list[str]
) -> None:
    number, spoken = card
    text = " ".join([*before, spoken, *after])
    red = REDACTOR.redact(text)
    assert EntityKind.CARD in red.counts(), (text, red.text)
    assert f"[card ending {number[-4:]}]" in red.text
    assert red.text.startswith(" ".join(before)) and red.text.endswith(" ".join(after))


_TOKENS = st.one_of(
    st.sampled_from(_NEUTRAL),
    st.sampled_from([*_WORDS, "oh", "double", "triple", "forty", "eleven", "hundred", "for", "to", "uh"]),
    st.sampled_from(["card", "social", "cvv", "expires", "account", "routing", "phone", "order", "at", "dot", "com"]),
    st.sampled_from(["-", ",", ".", "/", "(", ")", "+", "$", "@", "[card]", "[ssn]"]),
    st.text(alphabet="0123456789", min_size=1, max_size=19),
    st.text(max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=40), st.sampled_from([" ", "", ", "]))
def test_redacting_twice_changes_nothing(tokens: list[str], sep: str) -> None:
    once = REDACTOR.redact(sep.join(tokens)).text
    assert REDACTOR.redact(once).text == once


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_NEUTRAL), st.text(alphabet="0123456789", min_size=1)), max_size=20))
def test_masked_output_never_has_13_digits_in_a_row(tokens: list[str]) -> None:
    out = REDACTOR.redact(" ".join(tokens)).text
    assert not re.search(r"\d{13}", out), out


# --- purity ---------------------------------------------------------------------------------


def test_the_package_imports_only_the_standard_library_and_numpy() -> None:
    allowed = set(sys.stdlib_module_names) | {"numpy", "relay"}
    for path in (ROOT / "relay" / "redaction").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        for name in names:
            assert name.split(".")[0] in allowed, (path.name, name)
            assert not name.startswith("relay.") or name.startswith("relay.redaction"), (path.name, name)
            assert name.split(".")[0] not in {"asyncio", "socket", "io", "os", "pathlib", "logging"}, (path.name, name)
