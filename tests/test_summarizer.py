"""The OpenAI wrap-up against the fake Responses endpoint, over a real socket: structured
output through the SDK, bounded retries per failure kind, the token budget on a long call,
and the deadline that never holds a call's end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from relay.wrapup.call_record import GivenSuggestion, Line
from relay.wrapup.schema import Dispositions, Usage, WrapUpRequest, estimate_tokens
from relay.wrapup.service import WrapUpService
from relay.wrapup.summarizers import OpenAISummarizer
from tests.fakes.realtime_server import Behaviour, FakeRealtimeServer
from tests.fakes.responses_api import Outcome

KEY = "sk-wrapup-test"
CODES = Dispositions.parse({"codes": ["resolved", "follow_up_required", "order_issue"]})
GOOD = {
    "summary": "The customer asked where the order is; the agent shared the tracking link.",
    "questions": [{"text": "Where is my order?", "answered": True}],
    "action_items": [{"owner": "agent", "text": "Email the tracking link", "due": "today"}],
    "follow_ups": [],
    "topics": ["orders"],
    "sentiment": {"start": "neutral", "end": "positive"},
    "disposition": "order_issue",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    server = FakeRealtimeServer(Behaviour(api_key=KEY))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeRealtimeServer) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key=KEY, base_url=fake.base_url)
    yield sdk
    await sdk.close()


def summarizer(client: AsyncOpenAI, **overrides: object) -> OpenAISummarizer:
    options: dict[str, object] = {
        "model": "gpt-5-mini",
        "instructions": "Write the wrap-up.",
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.02,
        "seed": 1,
    }
    options.update(overrides)
    return OpenAISummarizer(client, **options)  # type: ignore[arg-type]


def call(lines: int = 4) -> WrapUpRequest:
    said = [
        Line(i * 5.0, "customer" if i % 2 == 0 else "agent", f"utterance number {i} about the order", f"item_{i}")
        for i in range(lines)
    ]
    offered = (GivenSuggestion(6.0, "Where is my order?", "Share the tracking link.", (("orders.md#where", "Where"),)),)
    return WrapUpRequest("CA" + "1" * 32, tuple(said), offered, CODES)


async def test_a_wrap_up_is_one_structured_request_validated_by_the_sdk_types(
    fake: FakeRealtimeServer, client: AsyncOpenAI
) -> None:
    fake.responses.script.append(Outcome(payload=GOOD))
    usage = Usage()
    result = await summarizer(client).summarize(call(), usage)

    assert result.status == "ok" and result.notes is not None
    assert result.notes.model_dump() == GOOD
    assert fake.violations == []
    [request] = fake.responses.requests
    body = request.body
    assert body["model"] == "gpt-5-mini" and body["store"] is False
    text_format = body["text"]["format"]
    assert text_format["type"] == "json_schema" and text_format["strict"] is True
    assert text_format["schema"]["properties"]["disposition"]["enum"] == list(CODES.names)
    assert "- follow_up_required" in body["instructions"]  # the operator's codes reach the model
    assert "Customer: utterance number 0" in request.text and "Suggested to the agent" in request.text
    assert usage.requests == 1 and usage.input_tokens > 0 and usage.output_tokens > 0


@pytest.mark.parametrize(
    ("first", "reason_prefix"),
    [
        (Outcome("http_error", status=429, code="rate_limit_exceeded"), "rate_limited: 429 rate_limit_exceeded"),
        (Outcome("http_error", status=500, code="server_error"), "http_500"),
        (Outcome("refusal"), "refused: I'm sorry"),
        (Outcome("invalid"), "invalid_structure"),
        (Outcome("incomplete"), "incomplete: max_output_tokens"),
    ],
)
async def test_each_failure_is_retried_then_reported_with_its_reason(
    fake: FakeRealtimeServer, client: AsyncOpenAI, first: Outcome, reason_prefix: str
) -> None:
    # Recovers when the failure passes …
    fake.responses.script.extend([first, Outcome(payload=GOOD)])
    usage = Usage()
    result = await summarizer(client, max_attempts=3).summarize(call(), usage)
    assert result.status == "ok" and usage.requests == 2 and usage.retries == 1

    # … and fails with the reason when it does not.
    fake.responses.script.clear()
    fake.responses.default = first
    usage = Usage()
    result = await summarizer(client, max_attempts=3).summarize(call(), usage)
    assert result.status == "failed" and result.reason.startswith(reason_prefix)
    assert usage.requests == 3 and usage.retries == 2
    assert result.message_body()["reason"] == result.reason
    assert fake.violations == []


async def test_an_incomplete_answer_is_retried_with_twice_the_output_allowance(
    fake: FakeRealtimeServer, client: AsyncOpenAI
) -> None:
    fake.responses.script.extend([Outcome("incomplete"), Outcome(payload=GOOD)])
    await summarizer(client, max_output_tokens=1000).summarize(call(), Usage())
    assert [r.body["max_output_tokens"] for r in fake.responses.requests] == [1000, 2000]


async def test_a_client_error_is_not_retried(fake: FakeRealtimeServer, client: AsyncOpenAI) -> None:
    fake.responses.default = Outcome("http_error", status=400, code="invalid_request_error")
    usage = Usage()
    result = await summarizer(client, max_attempts=3).summarize(call(), usage)
    assert result.status == "failed" and result.reason.startswith("http_400") and usage.requests == 1


async def test_a_60_minute_call_is_read_in_chunks_within_the_budget_and_nothing_is_cut(
    fake: FakeRealtimeServer, client: AsyncOpenAI
) -> None:
    # Both speakers, a line every 2 s for an hour: ~1,800 lines, ~40k tokens.
    lines = tuple(
        Line(i * 2.0, "customer" if i % 2 == 0 else "agent", f"line {i:04d} " + "words " * 12, f"item_{i}")
        for i in range(1800)
    )
    request = WrapUpRequest("CA" + "2" * 32, lines, (), CODES)
    budget = 8_000
    usage = Usage()
    result = await summarizer(client, token_budget=budget).summarize(request, usage)

    assert result.status == "ok" and result.chunks > 1
    requests = fake.responses.requests
    assert len(requests) == result.chunks + 1  # every chunk, then one request combining their notes
    for r in requests:
        assert estimate_tokens((r.body.get("instructions") or "") + r.text + json.dumps(r.body["text"])) <= budget
    seen = "\n".join(r.text for r in requests[:-1])
    assert all(f"line {i:04d} " in seen for i in range(1800))  # every line read by some request
    assert "Notes for part 1" in requests[-1].text
    assert usage.requests == len(requests)


async def test_the_deadline_ends_a_slow_wrap_up_with_a_failed_summary(
    fake: FakeRealtimeServer, client: AsyncOpenAI
) -> None:
    fake.responses.model_time_s = 1.0
    service = WrapUpService(summarizer(client), CODES, deadline_s=0.3, task_attribute="assist_wrapup")
    result = await service.compose(call())
    assert result.status == "failed" and result.reason.startswith("deadline")
    assert result.usage.requests == 1  # what it spent is still known
    assert service.stats.results == {"failed:deadline": 1}
