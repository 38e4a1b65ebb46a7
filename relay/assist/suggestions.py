"""Pure: turn the model's text answer into a suggestion (question + answer + sources).

The prompt asks for `{"question": …, "answer": …, "sources": [passage ids]}` JSON. Models sometimes wrap it in a
```json fence or answer in prose; prose becomes the answer. `{}` or empty fields mean
"nothing to suggest".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson

_FENCE_RE: Final = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


MAX_SOURCES: Final = 5


@dataclass(frozen=True, slots=True)
class Suggestion:
    question: str
    answer: str
    structured: bool  # the model returned the JSON shape asked for
    sources: tuple[str, ...] = ()  # passage ids the answer came from, as the model named them


def _sources(value: object) -> tuple[str, ...]:
    """`["id", …]` or `[{"id": …}, …]`; anything else names no source."""
    if not isinstance(value, list):
        return ()
    ids: list[str] = []
    for item in value:
        source = item.get("id") if isinstance(item, dict) else item
        if isinstance(source, str) and source.strip() and source.strip() not in ids:
            ids.append(source.strip()[:200])
    return tuple(ids[:MAX_SOURCES])


def strip_fence(text: str) -> str:
    match = _FENCE_RE.match(text)
    return match.group(1).strip() if match else text.strip()


def parse_model_answer(text: str) -> Suggestion | None:
    body = strip_fence(text)
    if not body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Suggestion(question="", answer=body, structured=False)
    if isinstance(data, dict):
        question = data.get("question")
        answer = data.get("answer")
        question = question.strip() if isinstance(question, str) else ""
        answer = answer.strip() if isinstance(answer, str) else ""
        if not answer:
            return None
        return Suggestion(question=question, answer=answer, structured=True, sources=_sources(data.get("sources")))
    if isinstance(data, str) and data.strip():
        return Suggestion(question="", answer=data.strip(), structured=False)
    return None
