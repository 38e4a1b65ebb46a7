"""The wrap-up end to end over real sockets: a call through the relay (OpenAI engine against
the fake Realtime + Responses server, Sync and TaskRouter against the fake Twilio) ends with
live insights, a `summary` message before `ended`, and the wrap-up in the task's attributes."""

from __future__ import annotations

import time

from relay.cli.simulator import CallSpec, stream_call
from tests.conftest import QUESTION_ANSWER, StartRelay, speech_like_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer, Turn
from tests.fakes.responses_api import Outcome
from tests.fakes.twilio_server import FakeTwilio

GOOD = {
    "summary": "The customer asked for a refund; the agent will email the return label.",
    "questions": [{"text": "Can I get a refund?", "answered": True}],
    "action_items": [{"owner": "agent", "text": "Email the return label", "due": "today"}],
    "follow_ups": ["Call back tomorrow"],
    "topics": ["refunds"],
    "sentiment": {"start": "negative", "end": "positive"},
    "disposition": "refund_or_return",
}
FLEX_ATTRIBUTES = {"call_sid": "CA" + "b" * 32, "from": "+15550001111", "direction": "inbound"}


def _turns() -> list[Turn]:
    return [
        Turn("Hi. Can I get a refund for my jacket?", QUESTION_ANSWER),
        Turn("Great, I'll send the jacket back this week.", "{}"),
    ]


async def _call(relay_url: str, headers: dict[str, str], **parameters: str) -> CallSpec:
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.5)}, pace=0, custom_parameters=parameters)
    await stream_call(relay_url, spec, headers=headers)
    return spec


async def test_a_call_ends_with_insights_a_summary_and_the_wrap_up_on_its_task(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = _turns()
    fake_realtime.behaviour.turn_every_bytes = 48_000
    fake_realtime.responses.script.append(Outcome(payload=GOOD))
    task = fake_twilio.add_task(FLEX_ATTRIBUTES)
    relay = await start_relay()

    spec = await _call(
        relay.ws_url(), relay.signed_headers(), TaskSid=task, WorkspaceSid=fake_twilio.state.workspace_sid
    )
    await wait_until(lambda: relay.state.idle and not relay.state.background, timeout_s=15)

    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    assert [m["seq"] for m in published] == list(range(1, len(published) + 1))
    insights = [m for m in published if m["type"] == "insight"]
    asked = [i for i in insights if i["kind"] == "question"]
    assert [i["text"] for i in asked] == ["Can I get a refund for my jacket?", "Can I get a refund for my jacket?"]
    assert [i["answered"] for i in asked] == [False, True]  # updated once the suggestion was given
    assert asked[0]["id"] == asked[1]["id"]
    [action] = [i for i in insights if i["kind"] == "action_item"]
    assert (action["speaker"], action["owner"], action["due"]) == ("customer", "customer", "this week")

    assert published[-1]["type"] == "status" and published[-1]["state"] == "ended"
    summary = published[-2]
    assert summary["type"] == "summary" and summary["status"] == "ok" and summary["engine"] == "openai"
    assert {k: summary[k] for k in GOOD} == GOOD

    # The transcript and the suggestion reached the model; the request passed the SDK's types.
    [request] = fake_realtime.responses.requests
    assert "Customer: Hi. Can I get a refund for my jacket?" in request.text
    assert "Suggested to the agent: Q: Can I get a refund?" in request.text
    assert fake_realtime.violations == []

    # Written to the task, every other attribute kept.
    attributes = fake_twilio.task_attributes(task)
    assert {k: attributes[k] for k in FLEX_ATTRIBUTES} == FLEX_ATTRIBUTES
    written = attributes["assist_wrapup"]
    assert written["call_sid"] == spec.call_sid and written["disposition"] == "refund_or_return"
    assert [m for m, _, _ in fake_twilio.state.task_requests] == ["GET", "POST"]

    line = relay.state.recent_summaries[-1]
    assert line["task_sid"] == task and line["insights"] == len(insights)
    assert line["wrapup"]["status"] == "ok" and line["wrapup"]["requests"] == 1
    assert line["wrapup"]["input_tokens"] > 0 and line["wrapup"]["output_tokens"] > 0
    assert relay.state.wrapup is not None and relay.state.wrapup.stats.task_writes == {"ok": 1}


async def test_a_failing_model_gives_a_failed_summary_and_the_call_still_ends(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.responses.default = Outcome("http_error", status=429, code="rate_limit_exceeded")
    relay = await start_relay(summary_max_attempts=2)
    spec = await _call(relay.ws_url(), relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=15)

    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    summary, ended = published[-2], published[-1]
    assert summary["type"] == "summary" and summary["status"] == "failed"
    assert summary["reason"] == "rate_limited: 429 rate_limit_exceeded"
    assert ended["state"] == "ended"
    assert len(fake_realtime.responses.requests) == 2
    assert relay.state.recent_summaries[-1]["wrapup"]["retries"] == 1


async def test_a_slow_model_never_holds_the_call_past_the_deadline(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.responses.model_time_s = 3.0
    relay = await start_relay(summary_deadline_s=0.5)
    started = time.monotonic()
    spec = await _call(relay.ws_url(), relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=15)
    assert time.monotonic() - started < 2.5
    summary = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")[-2]
    assert summary["status"] == "failed" and summary["reason"].startswith("deadline")


async def test_a_task_that_cannot_be_written_is_counted_and_the_call_is_unharmed(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    relay = await start_relay(twilio_taskrouter_workspace_sid=fake_twilio.state.workspace_sid)
    spec = await _call(relay.ws_url(), relay.signed_headers(), TaskSid="WT" + "9" * 32)  # no such task
    await wait_until(lambda: relay.state.idle and not relay.state.background, timeout_s=15)
    assert fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")[-1]["state"] == "ended"
    assert relay.state.wrapup is not None and relay.state.wrapup.stats.task_writes == {"404": 1}


async def test_wrap_up_off_publishes_no_summary(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    relay = await start_relay(wrapup=False)
    spec = await _call(relay.ws_url(), relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=15)
    kinds = [m["type"] for m in fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")]
    assert "summary" not in kinds and fake_realtime.responses.requests == []
