"""Pure: how the Realtime API bills a conversation, for tests, benches and the fake server.

What is modelled (OpenAI, "Managing costs" guide for the Realtime API,
https://developers.openai.com/api/docs/guides/realtime-costs, and the SDK's `truncation` docs):

- Every response bills the whole conversation so far as input: the instructions (with the tool
  definitions) and every item still in the conversation. Its output becomes an item and so
  input to every later response.
- The part of that input an earlier response already billed, unchanged from the start, is
  billed as cached (about 1/80 of the price for audio). Assumption: the cache stays warm for
  the whole call and matches the exact billed prefix (no block rounding); the output of the
  last response is not cached yet.
- Audio tokens: 1 per 100 ms of user audio (10/s) and 1 per 50 ms of assistant audio (20/s),
  as the guide states. Framing tokens around items are left out (a few per item).
- Truncation: when the conversation after the instructions exceeds `post_instructions`
  tokens, the oldest items are dropped until it is at most `retention_ratio` × that limit.
  The instructions stay; the cache after them no longer matches, so the next response
  re-bills everything it keeps as uncached input. The session default (`auto`) is modelled
  as truncating at the model's limit (context − max output) and dropping only what does not
  fit (retention 1.0): an assumption, the API does not document how much `auto` keeps.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .counts import TokenCounts

USER_AUDIO_TOKENS_PER_S: Final = 10.0
ASSISTANT_AUDIO_TOKENS_PER_S: Final = 20.0

MODEL_INPUT_LIMITS: Final[Mapping[str, int]] = {
    # "A 32k context model with 4,096 max output tokens can only include 28,224 tokens in the
    # context before truncation occurs" (the SDK's `truncation` docs).
    "gpt-realtime-1.5": 28_224,
    # 128,000 context − 32,000 max output (the model pages).
    "gpt-realtime-2": 96_000,
    "gpt-realtime-2.1": 96_000,
    "gpt-realtime-2.1-mini": 96_000,
}


@dataclass(frozen=True, slots=True)
class Truncation:
    """`retention_ratio` truncation: past `post_instructions` conversation tokens, drop the
    oldest items until at most `retention_ratio` × `post_instructions` remain."""

    post_instructions: int
    retention_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.post_instructions <= 0 or not 0.0 <= self.retention_ratio <= 1.0:
            raise ValueError("post_instructions > 0 and 0 ≤ retention_ratio ≤ 1")

    @property
    def keep(self) -> int:
        return int(self.post_instructions * self.retention_ratio)

    def session_field(self) -> dict[str, object]:
        """The `session.update` `truncation` value that asks the API for this bound."""
        return {
            "type": "retention_ratio",
            "retention_ratio": self.retention_ratio,
            "token_limits": {"post_instructions": self.post_instructions},
        }

    @classmethod
    def from_session_field(cls, value: object, *, model_limit: int) -> Truncation | None:
        """What a session's `truncation` asks for, the way the API applies it: `auto` (or
        absent) truncates at the model's limit; `disabled` never (`None`). Anything else
        unreadable is taken as `auto`."""
        if value == "disabled":
            return None
        if isinstance(value, Mapping) and value.get("type") == "retention_ratio":
            ratio = value.get("retention_ratio")
            limits = value.get("token_limits")
            limit = limits.get("post_instructions") if isinstance(limits, Mapping) else None
            if isinstance(ratio, int | float) and not isinstance(ratio, bool) and 0.0 <= ratio <= 1.0:
                if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= model_limit:
                    limit = model_limit
                return cls(limit, float(ratio))
        return cls(model_limit, 1.0)


@dataclass(slots=True)
class _Item:
    text: int
    audio: int

    @property
    def tokens(self) -> int:
        return self.text + self.audio


@dataclass(frozen=True, slots=True)
class ResponseBill:
    """What one response billed, and the conversation it read."""

    usage: TokenCounts
    conversation_tokens: int  # after the instructions, as read by this response
    truncated: bool  # this response came right after a truncation

    def usage_payload(self) -> dict[str, object]:
        """`response.usage` as the API sends it in `response.done`."""
        u = self.usage
        text_in = u.text_in + u.text_in_cached
        audio_in = u.audio_in + u.audio_in_cached
        return {
            "total_tokens": u.input_tokens + u.output_tokens,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": u.cached_tokens,
                "cached_tokens_details": {"text_tokens": u.text_in_cached, "audio_tokens": u.audio_in_cached},
            },
            "output_token_details": {"text_tokens": u.text_out, "audio_tokens": u.audio_out},
        }


class ConversationLedger:
    """One Realtime session's conversation as the API bills it: add items, then `respond()`."""

    def __init__(self, instructions_tokens: int, truncation: Truncation | None = None) -> None:
        self.instructions_tokens = instructions_tokens
        self.truncation = truncation
        self._items: list[_Item] = []
        self._cached_items = 0  # leading items an earlier response billed, unchanged since
        self._instructions_billed = False
        self.truncations = 0

    @property
    def conversation_tokens(self) -> int:
        return sum(item.tokens for item in self._items)

    def add_user_audio(self, seconds: float) -> int:
        """A committed user turn; its audio tokens."""
        tokens = round(seconds * USER_AUDIO_TOKENS_PER_S)
        self._items.append(_Item(0, tokens))
        return tokens

    def add_text(self, tokens: int) -> None:
        """A text item: context the client adds, a function call, a tool's output."""
        self._items.append(_Item(tokens, 0))

    def delete_item(self, index: int) -> None:
        """`conversation.item.delete`: the items before it stay cached; from it on they do not."""
        position = index % len(self._items)
        del self._items[position]
        self._cached_items = min(self._cached_items, position)

    def respond(self, text_out: int, audio_out_s: float = 0.0, *, reasoning: int = 0) -> ResponseBill:
        """Bill a response producing `text_out` text tokens (and `audio_out_s` seconds of
        audio). Reasoning tokens are billed as text output and not kept in the conversation."""
        truncated = self._truncate()
        text = self.instructions_tokens + sum(i.text for i in self._items)
        audio = sum(i.audio for i in self._items)
        cached_text = self.instructions_tokens if self._instructions_billed else 0
        cached_text += sum(i.text for i in self._items[: self._cached_items])
        cached_audio = sum(i.audio for i in self._items[: self._cached_items])
        conversation = self.conversation_tokens
        audio_out = round(audio_out_s * ASSISTANT_AUDIO_TOKENS_PER_S)
        usage = TokenCounts(
            audio_in=audio - cached_audio,
            audio_in_cached=cached_audio,
            text_in=text - cached_text,
            text_in_cached=cached_text,
            text_out=text_out + reasoning,
            audio_out=audio_out,
        )
        self._instructions_billed = True
        self._cached_items = len(self._items)
        if text_out or audio_out:
            self._items.append(_Item(text_out, audio_out))
        return ResponseBill(usage, conversation, truncated)

    def _truncate(self) -> bool:
        bound = self.truncation
        if bound is None or self.conversation_tokens <= bound.post_instructions:
            return False
        total = self.conversation_tokens
        while self._items and total > bound.keep:
            total -= self._items.pop(0).tokens
        # The items after the instructions changed: nothing past them matches the cache.
        self._cached_items = 0
        self.truncations += 1
        return True


# ---------------------------------------------------------------------- a synthetic call


@dataclass(frozen=True, slots=True)
class CallShape:
    """An assisted call as the relay runs it: the customer's turns go to the Realtime session
    (server VAD answers every turn, text output only); the agent's turns are transcribed by a
    second, transcription-only session and added to the first as "Agent said: …" text.
    Defaults are a plausible support call, not a measurement."""

    minutes: float = 60.0
    customer_turn_s: tuple[float, float] = (5.0, 10.0)
    agent_turn_s: tuple[float, float] = (4.0, 12.0)
    gap_s: float = 1.0  # silence between turns
    # Server VAD commits 300 ms of prefix padding and 500 ms of trailing silence with a turn.
    vad_padding_s: float = 0.8
    question_share: float = 0.4  # turns with a question or request: a search, then an answer
    instructions_tokens: int = 600  # prompt + the search tool's definition
    agent_tokens_per_s: float = 3.5  # ~2.6 words/s × 1.3 tokens/word, with the "Agent said:"
    function_call_tokens: int = 25
    tool_output_tokens: int = 550  # ~2,200 characters of passages (the budget is 3,000)
    answer_tokens: int = 110  # {"question", "answer", "sources"}
    no_question_tokens: int = 3  # {}
    reasoning_tokens: int = 0  # per response, for reasoning models
    # False: the client deletes the tool's output once the answer is in (what-if; the relay
    # keeps it today).
    keep_tool_output: bool = True
    seed: int = 28


@dataclass(slots=True)
class SimulatedCall:
    responses: list[tuple[float, ResponseBill]] = field(default_factory=list)  # (second of the call, bill)
    transcriptions_s: list[float] = field(default_factory=list)  # each committed turn, both tracks
    customer_audio_s: float = 0.0
    agent_audio_s: float = 0.0
    truncations: int = 0

    @property
    def tokens(self) -> TokenCounts:
        return sum((bill.usage for _, bill in self.responses), TokenCounts())

    @property
    def cached_share(self) -> float:
        t = self.tokens
        return t.cached_tokens / t.input_tokens if t.input_tokens else 0.0


def simulate_call(shape: CallShape, truncation: Truncation | None) -> SimulatedCall:
    """Play `shape` through a `ConversationLedger`; deterministic for a given `seed`."""
    rng = random.Random(shape.seed)
    ledger = ConversationLedger(shape.instructions_tokens, truncation)
    call = SimulatedCall()
    end = shape.minutes * 60.0
    t = 0.0
    while True:
        customer = rng.uniform(*shape.customer_turn_s)
        if t + customer > end:
            break
        t += customer
        committed = customer + shape.vad_padding_s
        call.customer_audio_s += customer
        call.transcriptions_s.append(committed)
        ledger.add_user_audio(committed)
        if rng.random() < shape.question_share:
            # The first response only calls the tool; the relay answers it and asks for more.
            call.responses.append((t, ledger.respond(shape.function_call_tokens, reasoning=shape.reasoning_tokens)))
            ledger.add_text(shape.tool_output_tokens)
            call.responses.append((t, ledger.respond(shape.answer_tokens, reasoning=shape.reasoning_tokens)))
            if not shape.keep_tool_output:
                ledger.delete_item(-2)  # [..., function call, tool output, answer]
        else:
            call.responses.append((t, ledger.respond(shape.no_question_tokens, reasoning=shape.reasoning_tokens)))
        t += shape.gap_s
        agent = rng.uniform(*shape.agent_turn_s)
        if t + agent > end:
            break
        t += agent + shape.gap_s
        call.agent_audio_s += agent
        call.transcriptions_s.append(agent + shape.vad_padding_s)
        ledger.add_text(round(agent * shape.agent_tokens_per_s))
    call.truncations = ledger.truncations
    return call
