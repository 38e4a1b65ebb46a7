"""TaskRouter events: both wire shapes, which tasks are selected, and the ledger that keeps
the end state right when events come twice, late or out of order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.taskrouter.events import (
    AssistLedger,
    CallRecordState,
    EventError,
    TaskEvent,
    TaskRecord,
    call_from_json,
    call_to_json,
    customer_call_sid,
    from_callback,
    from_cloudevents,
    is_internal_call,
    select,
    task_from_json,
    task_to_json,
    worker_identity,
)
from relay.taskrouter.policy import compile_policy

WS, WT, WK, CA = "WS" + "1" * 32, "WT" + "2" * 32, "WK" + "3" * 32, "CA" + "4" * 32
FLEX_TASK = {"call_sid": CA, "from": "+15551230000", "to": "+15559870000", "direction": "inbound", "type": "inbound"}


def test_an_event_callback_becomes_a_task_event() -> None:
    event = from_callback(
        {
            "Sid": "EV" + "9" * 32,
            "EventType": "reservation.accepted",
            "WorkspaceSid": WS,
            "TaskSid": WT,
            "TaskAttributes": json.dumps(FLEX_TASK),
            "TaskChannelUniqueName": "voice",
            "TaskQueueName": "Support",
            "WorkerSid": WK,
            "WorkerName": "alice@example.com",
            "WorkerAttributes": json.dumps({"contact_uri": "client:alice_40example_2Ecom"}),
        }
    )
    assert (event.event_id, event.event_type, event.task_sid, event.worker_sid) == (
        "EV" + "9" * 32,
        "reservation.accepted",
        WT,
        WK,
    )
    assert event.task_attributes == FLEX_TASK and event.task_queue_name == "Support"
    assert event.worker_attributes == {"contact_uri": "client:alice_40example_2Ecom"}


def test_an_event_streams_batch_keeps_taskrouter_events_and_skips_others() -> None:
    batch = [
        {
            "specversion": "1.0",
            "type": "com.twilio.taskrouter.task.completed",
            "source": "AB0",
            "id": "NO1",
            "data": {"payload": {"sid": "EV1", "eventtype": "task.completed", "workspace_sid": WS, "task_sid": WT}},
        },
        {"specversion": "1.0", "type": "com.twilio.messaging.message.delivered", "id": "NO2", "data": {}},
    ]
    [event] = from_cloudevents(batch)
    assert (event.event_id, event.event_type, event.task_sid, event.worker_attributes) == (
        "EV1",
        "task.completed",
        WT,
        None,
    )


@pytest.mark.parametrize(
    "form",
    [
        {"EventType": "task.completed"},  # no workspace
        {"EventType": "task.completed", "WorkspaceSid": WS, "TaskAttributes": "{not json"},
        {"EventType": "task.completed", "WorkspaceSid": WS, "TaskAttributes": "[1, 2]"},
    ],
)
def test_a_malformed_callback_is_an_event_error(form: dict[str, str]) -> None:
    with pytest.raises(EventError):
        from_callback(form)


@pytest.mark.parametrize("body", [[{"no": "type"}], [{"type": "com.twilio.taskrouter.task.completed", "data": {}}]])
def test_a_malformed_cloudevent_is_an_event_error(body: Any) -> None:
    with pytest.raises(EventError):
        from_cloudevents(body)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (FLEX_TASK, CA),
        ({"conference": {"sid": "CF1", "participants": {"customer": CA, "worker": "CA" + "5" * 32}}}, CA),
        ({"conference": {"sid": "CF1"}}, None),
        ({}, None),
    ],
)
def test_the_customer_call_comes_from_flex_attributes(attributes: dict[str, Any], expected: str | None) -> None:
    assert customer_call_sid(attributes) == expected


@pytest.mark.parametrize(
    ("attributes", "internal"),
    [
        (FLEX_TASK, False),
        ({"from": "client:alice", "to": "client:bob"}, True),
        ({"caller": "client:alice", "called": "+15550001111"}, False),
        ({"type": "internal"}, True),
        ({"internal": True}, True),
    ],
)
def test_calls_between_two_workers_are_recognised(attributes: dict[str, Any], internal: bool) -> None:
    assert is_internal_call(attributes) is internal


def _accepted(**changes: Any) -> TaskEvent:
    values: dict[str, Any] = {
        "event_id": "EV1",
        "event_type": "reservation.accepted",
        "workspace_sid": WS,
        "task_sid": WT,
        "task_attributes": FLEX_TASK,
        "task_channel": "voice",
        "task_queue_name": "Support",
        "worker_sid": WK,
    }
    values.update(changes)
    return TaskEvent(**values)


POLICY = compile_policy("worker.assist != false")


@pytest.mark.parametrize(
    ("event", "worker", "assist", "why"),
    [
        (_accepted(), {}, True, "policy"),
        (_accepted(), {"assist": False}, False, "policy: worker.assist != false"),
        (_accepted(task_channel="chat"), {}, False, "channel chat"),
        (_accepted(task_attributes={**FLEX_TASK, "assist_opt_out": True}), {}, False, "task opted out"),
        (_accepted(task_attributes={"from": "client:a", "to": "client:b"}), {}, False, "between two workers"),
    ],
)
def test_selection_rules_then_the_policy(event: TaskEvent, worker: dict[str, Any], assist: bool, why: str) -> None:
    verdict = select(event, worker, POLICY, "assist_opt_out")
    assert verdict.assist is assist and why in verdict.reason


def test_worker_identity_prefers_the_client_contact_uri() -> None:
    assert (
        worker_identity("alice@example.com", {"contact_uri": "client:alice_40example_2Ecom"}) == "alice_40example_2Ecom"
    )
    assert worker_identity("alice@example.com", {}) == "alice@example.com"


# ---------------------------------------------------------------------------- ledger


def test_a_duplicate_event_id_is_recognised() -> None:
    ledger = AssistLedger()
    assert not ledger.duplicate("EV1") and ledger.duplicate("EV1") and not ledger.duplicate("EV2")


def test_an_end_before_the_accept_is_processed_leaves_the_task_ended() -> None:
    ledger = AssistLedger()
    assert ledger.end(WT, WS) is None  # nothing to stop yet
    assert ledger.ended(WT)  # a later reservation.accepted must start nothing


def test_the_last_assisted_task_ending_stops_the_call() -> None:
    ledger = AssistLedger()
    ledger.assisting(ledger.task(WT, WS), CA, WK)
    assert ledger.end(WT, WS) == CA
    assert ledger.end(WT, WS) is None  # a second end event stops nothing more


def test_a_transfer_keeps_the_call_and_moves_it_to_the_new_task() -> None:
    ledger = AssistLedger()
    first, second = "WT" + "a" * 32, "WT" + "b" * 32
    ledger.assisting(ledger.task(first, WS), CA, WK)
    ledger.transfer_started(first)
    assert ledger.end(first, WS) is None  # the first worker wraps up; the call goes on
    ledger.assisting(ledger.task(second, WS), CA, "WK" + "6" * 32)
    current = ledger.current_task(CA)
    assert current is not None and current.task_sid == second
    assert ledger.end(second, WS) == CA


def test_a_failed_transfer_after_the_wrap_up_stops_the_call() -> None:
    ledger = AssistLedger()
    ledger.assisting(ledger.task(WT, WS), CA, WK)
    ledger.transfer_started(WT)
    assert ledger.end(WT, WS) is None
    assert ledger.transfer_ended(WT) == CA


def test_the_ledger_is_bounded() -> None:
    ledger = AssistLedger(max_tasks=3, max_event_ids=3)
    for i in range(10):
        ledger.task(f"WT{i:032x}", WS)
        ledger.duplicate(f"EV{i}")
    assert not ledger.duplicate("EV0")  # forgotten
    assert not ledger.ended("WT" + f"{0:032x}")


def test_a_task_that_ended_while_its_stream_started_is_not_recorded_as_assisting() -> None:
    ledger = AssistLedger()
    record = ledger.task(WT, WS)
    assert ledger.end(WT, WS) is None  # the end came first (on another relay)
    assert ledger.assisting(record, CA, WK) is False  # the creator must stop what it started
    assert ledger.ended(WT) and ledger.call(CA) is None


def test_tasks_and_calls_survive_their_storage_form() -> None:
    record = TaskRecord(WT, WS, call_sid=CA, worker_sid=WK, state="assisting")
    assert task_from_json(task_to_json(record), WT, "WS-other") == record
    assert task_from_json(None, WT, WS) == TaskRecord(WT, WS)
    assert task_from_json('{"state": "bogus"}', WT, WS).state == "new"  # unreadable: a new task
    call = CallRecordState(tasks=[WT, "WT" + "9" * 32], transfer_pending=True)
    assert call_from_json(call_to_json(call)) == call
    assert call_from_json(None) is None and call_from_json("[1]") == CallRecordState()
