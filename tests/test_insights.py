"""Live insights: which sentences are questions, commitments and follow-ups, and when a
question counts as answered."""

from __future__ import annotations

import pytest

from relay.wrapup.insights import InsightTracker, commitments, is_question, sentences


@pytest.mark.parametrize(
    "sentence",
    [
        "Where is my order?",
        "i ordered a jacket where is my order",  # the recognizer dropped the "?"
        "can i change my delivery address",
        "and how long does a refund take",
        "also how do i reset my password",
        "Is there a fee for that",
        "I'd like to know when it ships",
        "what's the status of my refund",
    ],
)
def test_questions_are_recognised_with_or_without_a_question_mark(sentence: str) -> None:
    assert is_question(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Hi, thanks for taking my call.",
        "how i and get four to get my also",  # a misheard greeting: a bare wh-word is not enough
        "I ordered a jacket last week.",
        "Thank you, that is all.",
        "Okay.",
    ],
)
def test_statements_are_not_questions(sentence: str) -> None:
    assert not is_question(sentence)


@pytest.mark.parametrize(
    ("sentence", "speaker", "kind", "due"),
    [
        ("I'll email you the return label today.", "agent", "action_item", "today"),
        ("Let me reset your password now.", "agent", "action_item", None),
        ("I will send the receipt by Friday.", "customer", "action_item", "by Friday"),
        ("You'll receive a confirmation email.", "agent", "action_item", None),
        ("We'll call you back tomorrow.", "agent", "follow_up", "tomorrow"),
        ("Someone will contact you within 2 days.", "agent", "follow_up", "within 2 days"),
        ("I need to follow up on my claim next week.", "customer", "follow_up", "next week"),
    ],
)
def test_commitments_are_action_items_or_follow_ups_with_their_due_time(
    sentence: str, speaker: str, kind: str, due: str | None
) -> None:
    found = commitments(sentence, speaker, "item_1")
    assert found is not None
    assert (found.kind, found.owner, found.due) == (kind, speaker, due)


@pytest.mark.parametrize("sentence", ["The order shipped on Monday.", "Can I send it back?", "Thanks a lot."])
def test_plain_sentences_and_questions_are_not_commitments(sentence: str) -> None:
    assert commitments(sentence, "customer", "item_1") is None


def test_sentences_split_on_end_punctuation() -> None:
    assert sentences("Hi there. Where is my order? I'll wait!") == ["Hi there.", "Where is my order?", "I'll wait!"]


def test_a_question_is_answered_when_the_agent_covers_its_passage() -> None:
    tracker = InsightTracker()
    [asked] = tracker.on_line("customer", "Where is my order?", "item_1", "orders.md#where")
    assert asked.kind == "question" and asked.answered is False
    assert tracker.on_line("agent", "Your card was charged twice, sorry.", "item_2", "billing.md#double") == []
    [answered] = tracker.on_line("agent", "It ships tomorrow, here is the tracking link.", "item_3", "orders.md#where")
    assert answered.key == asked.key and answered.answered is True
    assert [q.answered for q in tracker.questions] == [True]


def test_without_a_passage_any_substantive_agent_reply_answers_the_open_questions() -> None:
    tracker = InsightTracker()
    tracker.on_line("customer", "Can you hear me?", "item_1")
    assert tracker.on_line("agent", "Yes.", "item_2") == []  # too short to be an answer
    [answered] = tracker.on_line("agent", "Yes, I can hear you fine now.", "item_3")
    assert answered.answered is True


def test_a_suggestion_for_the_question_marks_it_answered() -> None:
    tracker = InsightTracker()
    tracker.on_line("customer", "How long does a refund take?", "item_1", "refunds.md#how-long")
    [answered] = tracker.on_suggestion(("refunds.md#how-long",), None)
    assert answered.answered is True
    assert tracker.on_suggestion(("refunds.md#how-long",), None) == []  # reported once


def test_the_same_sentence_is_reported_once_and_the_tracker_is_bounded() -> None:
    tracker = InsightTracker(max_insights=2)
    assert len(tracker.on_line("customer", "Where is it? Where is it?", "item_1")) == 1
    tracker.on_line("customer", "Can I pay later?", "item_2")
    assert tracker.on_line("customer", "Is there a fee?", "item_3") == []
    assert tracker.dropped == 1
