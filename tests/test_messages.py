"""Sync message shapes and the 4 KiB rule."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_publisher import messages
from sync_publisher.limiter import RateLimiter, SlidingWindowLimiter

CALL = "CA" + "f" * 32


def test_suggestion_carries_the_legacy_transcript_field() -> None:
    item = messages.suggestion("Q?", "A.", "resp_1")
    body = item.with_seq(CALL, 7)
    assert body == {
        "v": 1,
        "type": "suggestion",
        "call_sid": CALL,
        "seq": 7,
        "id": "resp_1",
        "question": "Q?",
        "answer": "A.",
        "transcript": '{"question":"Q?","answer":"A."}',
    }


def test_transcript_and_status_shapes() -> None:
    t = messages.transcript("customer", "hello", final=True, utterance_id="item_1").with_seq(CALL, 1)
    assert t == {
        "v": 1,
        "type": "transcript",
        "call_sid": CALL,
        "seq": 1,
        "id": "item_1",
        "speaker": "customer",
        "text": "hello",
        "final": True,
        "track": "inbound",
        "isFinal": True,
    }
    agent = messages.transcript("agent", "one moment", final=False, utterance_id="item_2").with_seq(CALL, 2)
    assert (agent["track"], agent["isFinal"]) == ("outbound", False)
    s = messages.status("degraded", "model_unavailable").with_seq(CALL, 2)
    assert s["state"] == "degraded" and "transcript" not in s


def test_a_10_kib_answer_is_split_into_parts_that_join_back() -> None:
    answer = ("Refunds take five to seven business days. " * 300)[:10_240] + 'é✓"\\'
    item = messages.suggestion("Where is my refund?", answer, "resp_9")
    parts = messages.split(item, CALL)
    assert len(parts) >= 3
    bodies = [p.with_seq(CALL, 10**6 + i) for i, p in enumerate(parts)]
    assert all(len(json.dumps(b, ensure_ascii=False, separators=(",", ":")).encode()) <= 4096 for b in bodies)
    assert [b["part"] for b in bodies] == list(range(1, len(parts) + 1))
    assert {b["parts"] for b in bodies} == {len(parts)}
    assert "".join(b["answer"] for b in bodies) == answer
    for b in bodies:  # every part still works for the legacy plugin
        legacy = json.loads(b["transcript"])
        assert legacy == {"question": "Where is my refund?", "answer": b["answer"]}


@settings(max_examples=80, deadline=None)
@given(st.text(min_size=0, max_size=12_000))
def test_every_part_fits_and_the_text_survives(text: str) -> None:
    item = messages.transcript("customer", text, final=True, utterance_id="u")
    parts = messages.split(item, CALL)
    assert all(len(messages.encode(p.with_seq(CALL, 10**9))) <= 4096 for p in parts)
    assert "".join(p.body["text"] for p in parts) == text


def test_insight_shape_leaves_out_unset_fields() -> None:
    body = messages.insight(
        "question", "Where is my order?", speaker="customer", utterance_id="item_3", answered=False, owner=None
    ).with_seq(CALL, 4)
    assert body == {
        "v": 1,
        "type": "insight",
        "call_sid": CALL,
        "seq": 4,
        "kind": "question",
        "text": "Where is my order?",
        "speaker": "customer",
        "utterance_id": "item_3",
        "answered": False,
    }


_SUMMARY_LISTS = ("questions", "action_items", "follow_ups", "topics")


@settings(max_examples=40, deadline=None)
@given(
    st.text(max_size=6000),
    st.lists(st.text(max_size=600), max_size=30),
    st.lists(st.text(max_size=300), max_size=20),
    st.lists(st.text(max_size=60), max_size=5),
)
def test_a_summary_of_any_size_splits_into_parts_that_join_back(
    summary: str, questions: list[str], follow_ups: list[str], topics: list[str]
) -> None:
    body = {
        "status": "ok",
        "summary": summary,
        "questions": [{"text": q, "answered": bool(i % 2)} for i, q in enumerate(questions)],
        "action_items": [{"owner": "agent", "text": f, "due": None} for f in follow_ups],
        "follow_ups": follow_ups,
        "topics": topics,
        "sentiment": {"start": "neutral", "end": "positive"},
        "disposition": "resolved",
        "engine": "openai",
    }
    parts = [p.with_seq(CALL, 10**9) for p in messages.split(messages.summary(body), CALL)]
    assert all(len(messages.encode(p)) <= 4096 for p in parts)
    assert "".join(p["summary"] for p in parts) == summary
    for name in _SUMMARY_LISTS:
        assert [item for p in parts for item in p[name]] == body[name]
    for p in parts:  # every part says what it is part of
        assert (p["status"], p["disposition"], p["sentiment"]) == ("ok", "resolved", body["sentiment"])
    if len(parts) > 1:
        assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))


def test_sliding_window_never_admits_more_than_the_limit_per_window() -> None:
    limiter = SlidingWindowLimiter(30, 1.0)
    now, sent = 0.0, []
    while len(sent) < 200:
        wait = limiter.delay(now)
        now += wait
        sent.append(now)
        limiter.record(now)
        now += 0.001
    for i in range(len(sent) - 30):
        assert sent[i + 30] - sent[i] >= 1.0 - 1e-9


def test_rate_limiter_honours_both_windows() -> None:
    limiter = RateLimiter(30, 10)
    assert limiter.delay(0.0) == 0.0
    for i in range(30):
        limiter.record(i * 0.001)
    assert 0.9 < limiter.delay(0.05) <= 1.0
