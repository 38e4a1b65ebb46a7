"""Pure: the `search_knowledge` function tool the OpenAI engine's customer session declares,
and the answer to each call the model makes.

The answer is `function_call_output` text: `{"passages": [{"id", "title", "text"}, …]}` with
the best passages above the retrieval gate within a size budget (an empty list when nothing
scores), or `{"error": "…"}` for a call the relay cannot serve (unknown tool, arguments that
are not JSON, no query, too many searches in one turn). An error never ends the session: the
model is told and answers from what it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from relay.knowledge.retrieval import Retriever
from relay.model.events import ToolCall

TOOL_NAME: Final = "search_knowledge"
SEARCH_TOOL: Final[dict[str, Any]] = {
    "type": "function",
    "name": TOOL_NAME,
    "description": (
        "Search the business's knowledge base for passages that answer the customer's question. "
        "Returns passages with an id, a title and text; answer only from them and cite their ids."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "The customer's question, in a few words."},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
}

MAX_QUERY_CHARS: Final = 500
MAX_CALLS_PER_TURN: Final = 3


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    output: str  # the function_call_output text
    ok: bool  # False: the call was refused with an error
    more_tools: bool  # may the model search again before answering
    passage_ids: tuple[str, ...] = ()


def _error(message: str, *, more_tools: bool) -> ToolAnswer:
    return ToolAnswer(orjson.dumps({"error": message}).decode(), ok=False, more_tools=more_tools)


def answer_tool_call(
    call: ToolCall,
    retriever: Retriever | None,
    *,
    calls_this_turn: int,
    min_score: float,
    top_k: int = 3,
    budget_chars: int = 3000,
) -> ToolAnswer:
    """`calls_this_turn` counts this call: the fourth search in one turn is refused."""
    if calls_this_turn > MAX_CALLS_PER_TURN:
        return _error(
            f"at most {MAX_CALLS_PER_TURN} knowledge searches per turn; answer from the passages already given",
            more_tools=False,
        )
    more = calls_this_turn < MAX_CALLS_PER_TURN
    if call.name != TOOL_NAME:
        return _error(f"unknown tool {call.name[:60]!r}; the only tool is {TOOL_NAME}", more_tools=more)
    try:
        arguments = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        return _error('arguments must be a JSON object such as {"query": "refund time"}', more_tools=more)
    query = arguments.get("query") if isinstance(arguments, dict) else None
    if not isinstance(query, str) or not query.strip():
        return _error('missing "query": the customer\'s question in a few words', more_tools=more)
    if retriever is None:
        return _error("no knowledge base is loaded", more_tools=False)
    passages: list[dict[str, str]] = []
    used = 0
    for hit in retriever.search(query[:MAX_QUERY_CHARS], k=top_k, min_score=min_score):
        p = hit.passage
        size = len(p.id) + len(p.title) + len(p.text)
        if passages and used + size > budget_chars:
            break
        text = p.text if size <= budget_chars else p.text[: max(0, budget_chars - len(p.id) - len(p.title))]
        passages.append({"id": p.id, "title": p.title, "text": text})
        used += size
    output = orjson.dumps({"passages": passages}).decode()
    return ToolAnswer(output, ok=True, more_tools=more, passage_ids=tuple(p["id"] for p in passages))
