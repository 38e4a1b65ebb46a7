"""The OpenAI engine grounded by the `search_knowledge` function tool, over real sockets: the
fake Realtime server streams function calls exactly as the GA API does and validates every
client event (the tool declaration, the function_call_output item, response.create) against
the SDK's own types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.cli.simulator import CallSpec, stream_call
from tests.conftest import RunningRelay, StartRelay, speech_like_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer, Turn
from tests.fakes.twilio_server import FakeTwilio

REFUND_ID = "refunds.md#refund-timing"
ANSWER = {"question": "How long does a refund take?", "answer": "Five to seven business days.", "sources": [REFUND_ID]}


@pytest.fixture
def knowledge(tmp_path: Path) -> Path:
    (tmp_path / "refunds.md").write_text(
        "# Refund timing\n\nRefunds reach the original payment method in five to seven business days.\n"
    )
    (tmp_path / "faq.md").write_text("Q: Where is my order?\nA: Share the tracking link from the order screen.\n")
    return tmp_path


def _one_turn(fake: FakeRealtimeServer, transcript: str, answer: dict, tool_calls: list[tuple[str, str]]) -> None:  # type: ignore[type-arg]
    """The model hears one customer turn, makes these tool calls, then answers."""
    fake.behaviour.turns = [Turn(transcript=transcript, answer=json.dumps(answer), tool_calls=tool_calls)]
    fake.behaviour.turn_every_bytes = 48_000


async def _call(relay: RunningRelay, fake_twilio: FakeTwilio) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    # Paced, so the call is still live while the model and the relay trade tool calls.
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0)}, pace=2.0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    return [m for m in published if m["type"] == "suggestion"], relay.state.recent_summaries[-1]


async def test_the_model_searches_the_knowledge_and_answers_with_its_sources(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, knowledge: Path
) -> None:
    _one_turn(
        fake_realtime,
        "how long does a refund take",
        ANSWER,
        [("search_knowledge", '{"query": "how long does a refund take"}')],
    )
    relay = await start_relay(knowledge_dir=knowledge)
    suggestions, summary = await _call(relay, fake_twilio)

    (session,) = fake_realtime.sessions
    assert fake_realtime.violations == []  # every client event valid under the SDK's types
    config = session.session_config or {}
    assert [t["name"] for t in config["tools"]] == ["search_knowledge"] and config["tool_choice"] == "auto"
    (output,) = session.tool_outputs
    passages = json.loads(output["output"])["passages"]
    assert passages[0] == {
        "id": REFUND_ID,
        "title": "Refund timing",
        "text": "Refunds reach the original payment method in five to seven business days.",
    }
    assert session.response_creates == [{"tool_choice": "auto"}]  # the answer is asked for
    (suggestion,) = suggestions
    assert suggestion["answer"] == ANSWER["answer"]
    assert suggestion["sources"] == [{"id": REFUND_ID, "title": "Refund timing"}]
    assert summary["tool_calls"] == 1 and summary["model_reconnects"] == 0


async def test_bad_tool_calls_get_an_error_output_and_never_break_the_session(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, knowledge: Path
) -> None:
    bad_calls = [
        ("lookup_order", '{"query": "x"}'),  # a tool the relay never declared
        ("search_knowledge", "{not json"),
        ("search_knowledge", '{"q": "refund"}'),  # no query
        ("search_knowledge", '{"query": "refund"}'),  # a fourth search in one turn
    ]
    _one_turn(fake_realtime, "how long does a refund take", ANSWER, bad_calls)
    relay = await start_relay(knowledge_dir=knowledge)
    suggestions, summary = await _call(relay, fake_twilio)

    (session,) = fake_realtime.sessions
    assert fake_realtime.violations == []
    errors = [json.loads(o["output"])["error"] for o in session.tool_outputs]
    assert errors[0].startswith("unknown tool 'lookup_order'")
    assert errors[1].startswith("arguments must be a JSON object")
    assert errors[2].startswith('missing "query"')
    assert errors[3].startswith("at most 3 knowledge searches per turn")
    # After the third search the model may no longer call tools; it still answers.
    assert [r["tool_choice"] for r in session.response_creates] == ["auto", "auto", "none", "none"]
    assert len(suggestions) == 1 and summary["model_reconnects"] == 0 and summary["assist_failed"] is None
    assert summary["tool_errors"] == 4


async def test_a_search_that_finds_nothing_returns_no_passages(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, knowledge: Path
) -> None:
    no_answer = {"question": "Do you ship to Canada?", "answer": "Check the shipping countries page.", "sources": []}
    _one_turn(fake_realtime, "do you ship to canada", no_answer, [("search_knowledge", '{"query": "ship to canada"}')])
    relay = await start_relay(knowledge_dir=knowledge)
    suggestions, _ = await _call(relay, fake_twilio)
    (session,) = fake_realtime.sessions
    assert json.loads(session.tool_outputs[0]["output"]) == {"passages": []}
    assert suggestions[0]["sources"] == []


async def test_the_tool_can_be_turned_off(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    relay = await start_relay(knowledge_tool=False)
    await _call(relay, fake_twilio)
    assert "tools" not in (fake_realtime.sessions[0].session_config or {})


async def test_both_sides_the_agents_words_reach_the_model_and_an_answered_question_is_not_suggested(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, knowledge: Path
) -> None:
    behaviour = fake_realtime.behaviour
    where = {
        "question": "Where is my order?",
        "answer": "Share the tracking link.",
        "sources": ["faq.md#where-is-my-order"],
    }
    behaviour.turns = [
        Turn(transcript="where is my order", answer=json.dumps(where)),  # the agent has just answered it
        Turn(transcript="how long does a refund take", answer=json.dumps(ANSWER)),  # not answered yet
    ]
    agent_words = "i can share the tracking link from the order screen for you"
    behaviour.agent_turns = [Turn(transcript=agent_words, answer="")]
    behaviour.turn_every_bytes = 48_000
    behaviour.response_delay_s = 0.3  # the agent's transcript lands before the first answer
    relay = await start_relay(knowledge_dir=knowledge)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.5), "outbound": speech_like_ulaw(1.2, seed=5)}, pace=2.0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)

    customer = next(s for s in fake_realtime.sessions if (s.session_config or {}).get("type") == "realtime")
    texts = [item["content"][0]["text"] for item in customer.context_items]
    assert f"Agent said: {agent_words}" in texts  # the model knows what the agent said
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    shown = [m["question"] for m in published if m["type"] == "suggestion"]
    assert shown == ["How long does a refund take?"]
    summary = relay.state.recent_summaries[-1]
    assert summary["suggestions_suppressed"] == 1 and fake_realtime.violations == []
    assert summary["agent_lines"] == {"sent": 1, "not_sent": 0}
