"""The wrap-up's pure parts: disposition codes from the operator's file, the token budget's
chunking, the strict schema, and the offline (extractive) wrap-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from relay.bundled import bundled_prompts_dir
from relay.errors import ConfigurationError
from relay.wrapup.call_record import CallRecord, GivenSuggestion, Line
from relay.wrapup.schema import (
    CHARS_PER_TOKEN,
    Dispositions,
    WrapUpRequest,
    chunk_lines,
    extractive_wrapup,
    notes_model,
)

CODES = Dispositions.parse(
    {
        "default": "resolved",
        "codes": [
            {"code": "resolved", "description": "All answered."},
            {"code": "refund_or_return", "keywords": ["refund", "return"]},
            {"code": "order_issue", "keywords": ["order", "delivery"]},
        ],
    }
)


def test_the_bundled_dispositions_file_loads() -> None:
    codes = Dispositions.load(bundled_prompts_dir() / "wrapup" / "dispositions.yaml")
    assert codes.default in codes.names and len(codes.names) >= 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "non-empty `codes` list"),
        ({"codes": []}, "non-empty `codes` list"),
        ({"codes": ["ok", "ok"]}, "listed twice"),
        ({"codes": ["has space"]}, "letters, digits"),
        ({"codes": ["a"], "default": "b"}, "default 'b'"),
        ({"codes": [{"code": "a", "keywords": "refund"}]}, "keywords of 'a'"),
    ],
)
def test_a_broken_dispositions_file_is_refused_with_the_reason(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Dispositions.parse(data, "dispositions.yaml")


def test_a_dispositions_file_that_is_not_yaml_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "dispositions.yaml"
    path.write_text("codes: [unclosed\n")
    with pytest.raises(ConfigurationError, match=r"dispositions\.yaml: not valid YAML"):
        Dispositions.load(path)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("I want a refund for the return", "refund_or_return"),
        ("where is my order, the delivery is late, can I get a refund", "order_issue"),  # 2 hits beat 1
        ("hello, thanks", "resolved"),  # no keyword: the default
        ("refund order", "refund_or_return"),  # a tie goes to the code listed first
    ],
)
def test_the_offline_disposition_is_the_code_the_call_names_most(text: str, code: str) -> None:
    assert CODES.choose(text) == code


def test_the_schema_narrows_the_disposition_to_the_configured_codes() -> None:
    model = notes_model(CODES.names)
    schema = model.model_json_schema()
    assert schema["properties"]["disposition"]["enum"] == list(CODES.names)
    valid = {
        "summary": "s",
        "questions": [],
        "action_items": [],
        "follow_ups": [],
        "topics": [],
        "sentiment": {"start": "neutral", "end": "positive"},
        "disposition": "order_issue",
    }
    model.model_validate(valid)
    with pytest.raises(ValidationError):
        model.model_validate({**valid, "disposition": "made_up"})
    with pytest.raises(ValidationError):
        model.model_validate({**valid, "extra": 1})


@given(st.lists(st.text(max_size=300), max_size=40), st.integers(min_value=1, max_value=60))
def test_chunks_keep_every_character_in_order_and_respect_the_budget(lines: list[str], budget: int) -> None:
    chunks = chunk_lines(lines, budget)
    assert "".join("".join(c) for c in chunks) == "".join(lines)
    for chunk in chunks:
        assert sum(len(piece) + 1 for piece in chunk) <= budget * CHARS_PER_TOKEN or len(chunk) == 1
        assert all(len(piece) <= budget * CHARS_PER_TOKEN for piece in chunk)


def _request(lines: list[Line], suggestions: list[GivenSuggestion] | None = None) -> WrapUpRequest:
    return WrapUpRequest("CA" + "0" * 32, tuple(lines), tuple(suggestions or []), CODES)


def test_the_offline_wrap_up_reads_questions_actions_topics_mood_and_disposition() -> None:
    lines = [
        Line(1.0, "customer", "Hi, this is ridiculous, my order is late and the box was damaged.", "i1"),
        Line(5.0, "customer", "Where is my order?", "i2", "orders.md#where-is-my-order"),
        Line(
            9.0,
            "agent",
            "It is on its way, here is the tracking link for the order.",
            "i3",
            "orders.md#where-is-my-order",
        ),
        Line(14.0, "customer", "Can I get a refund for the damaged box?", "i4", "refunds.md#refunds"),
        Line(20.0, "agent", "I'll email you the return label today.", "i5"),
        Line(24.0, "agent", "We'll call you back tomorrow about the refund.", "i6"),
        Line(30.0, "customer", "Great, thank you so much.", "i7"),
    ]
    suggestion = GivenSuggestion(15.0, "Refund?", "Refunds take 5 days.", (("refunds.md#refunds", "Refunds"),))
    notes = extractive_wrapup(_request(lines, [suggestion]))

    assert [(q.text, q.answered) for q in notes.questions] == [
        ("Where is my order?", True),  # the agent's words covered its passage
        ("Can I get a refund for the damaged box?", True),  # a suggestion was given from its passage
    ]
    assert [(a.owner, a.text, a.due) for a in notes.action_items] == [
        ("agent", "I'll email you the return label today.", "today")
    ]
    assert notes.follow_ups == ["We'll call you back tomorrow about the refund."]
    assert notes.topics == ["orders", "refunds"]
    assert (notes.sentiment.start, notes.sentiment.end) == ("negative", "positive")
    assert notes.disposition == "refund_or_return"  # 3 hits each: the code listed first wins
    assert "2 question(s)" in notes.summary and "2 answered" in notes.summary


def test_an_empty_call_still_has_a_wrap_up() -> None:
    notes = extractive_wrapup(_request([]))
    assert notes.summary == "Nothing was said on the call."
    assert notes.questions == [] and notes.disposition == "resolved"


def test_the_call_record_keeps_the_opening_and_the_end_and_counts_what_it_dropped() -> None:
    record = CallRecord(max_lines=10, tail_lines=4)
    for i in range(25):
        record.add_line(Line(float(i), "customer", f"line {i}", f"i{i}"))
    kept = [line.text for line in record.lines]
    assert kept == [f"line {i}" for i in range(6)] + [f"line {i}" for i in range(21, 25)]
    assert record.lines_dropped == 15 and len(record) == 10
