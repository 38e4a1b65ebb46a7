"""Turning model text into suggestions."""

from __future__ import annotations

import pytest

from relay.assist.suggestions import Suggestion, parse_model_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"question": "Q?", "answer": "A."}', Suggestion("Q?", "A.", True)),
        ('```json\n{"question": "Q?", "answer": "A."}\n```', Suggestion("Q?", "A.", True)),
        ('```\n{"question": "Q?", "answer": "A."}\n```', Suggestion("Q?", "A.", True)),
        ('  {"answer": "Only an answer"}  ', Suggestion("", "Only an answer", True)),
        ("Tell them the refund takes 5 days.", Suggestion("", "Tell them the refund takes 5 days.", False)),
        ('"just a json string"', Suggestion("", "just a json string", False)),
        ("{}", None),
        ('{"question": "Q?", "answer": ""}', None),
        ("", None),
        ("```json\n```", None),
        ("[1, 2]", None),
        # Sources: passage ids as strings or {"id": …} objects, de-duplicated, at most five.
        ('{"answer": "A.", "sources": ["a.md#x", "b.md#y"]}', Suggestion("", "A.", True, ("a.md#x", "b.md#y"))),
        (
            '{"answer": "A.", "sources": [{"id": "a.md#x", "title": "X"}, "a.md#x"]}',
            Suggestion("", "A.", True, ("a.md#x",)),
        ),
        ('{"answer": "A.", "sources": "a.md#x"}', Suggestion("", "A.", True)),
        ('{"answer": "A.", "sources": [1, null, {"no": "id"}, " "]}', Suggestion("", "A.", True)),
        (
            '{"answer": "A.", "sources": ["1", "2", "3", "4", "5", "6"]}',
            Suggestion("", "A.", True, ("1", "2", "3", "4", "5")),
        ),
    ],
)
def test_parse_model_answer(text: str, expected: Suggestion | None) -> None:
    assert parse_model_answer(text) == expected
