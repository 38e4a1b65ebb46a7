"""Pure: TaskRouter events as typed values, the rules that choose assisted tasks, and the
ledger that keeps the end state right when events arrive twice, late or out of order.

Two wire shapes become one `TaskEvent`: the workspace's Event Callback (form fields,
`EventType`, `TaskAttributes` …) and Event Streams CloudEvents (`type`
`com.twilio.taskrouter.<event>`, snake_case fields under `data.payload`).

The ledger (`AssistLedger`) decides; the shell (`relay/taskrouter/driver.py`) performs.
- A task that ended (`task.wrapup`, `completed`, `canceled`, `deleted`) stays ended: a
  `reservation.accepted` processed after it starts nothing.
- An event seen before (same event id) is a duplicate.
- A call's stream stops when its last assisted task ends, unless a transfer is pending: a
  transfer to another worker keeps the stream (and the call's Sync stream); the new task takes
  over the call and receives its wrap-up.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from relay.taskrouter.policy import Policy

START_EVENT: Final = "reservation.accepted"
END_EVENTS: Final = frozenset({"task.wrapup", "task.completed", "task.canceled", "task.deleted"})
TRANSFER_STARTED: Final = "task.transfer-initiated"
TRANSFER_ENDED: Final = frozenset({"task.transfer-failed", "task.transfer-canceled", "task.transfer-completed"})
UPDATED: Final = "task.updated"
HANDLED: Final = frozenset({START_EVENT, TRANSFER_STARTED, UPDATED} | END_EVENTS | TRANSFER_ENDED)
_CLOUD_PREFIX: Final = "com.twilio.taskrouter."


class EventError(ValueError):
    """An event the relay cannot read (the sender broke the format)."""


@dataclass(frozen=True, slots=True)
class TaskEvent:
    event_id: str
    event_type: str
    workspace_sid: str
    task_sid: str | None = None
    task_attributes: Mapping[str, Any] = field(default_factory=dict)
    task_channel: str | None = None
    task_queue_name: str | None = None
    task_queue_sid: str | None = None
    worker_sid: str | None = None
    worker_name: str | None = None
    worker_attributes: Mapping[str, Any] | None = None  # None: the event did not carry them


def _json_object(raw: object, what: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise EventError(f"{what} must be a JSON object")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EventError(f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise EventError(f"{what} must be a JSON object")
    return value


def from_callback(form: Mapping[str, str]) -> TaskEvent:
    """The workspace's Event Callback (form-encoded)."""
    event_type = form.get("EventType", "")
    workspace = form.get("WorkspaceSid", "")
    if not event_type or not workspace.startswith("WS"):
        raise EventError("EventType and WorkspaceSid are required")
    event_id = form.get("Sid") or f"{event_type}:{form.get('ResourceSid', '')}:{form.get('Timestamp', '')}"
    return TaskEvent(
        event_id=event_id,
        event_type=event_type,
        workspace_sid=workspace,
        task_sid=form.get("TaskSid") or None,
        task_attributes=_json_object(form.get("TaskAttributes"), "TaskAttributes") or {},
        task_channel=form.get("TaskChannelUniqueName") or None,
        task_queue_name=form.get("TaskQueueName") or None,
        task_queue_sid=form.get("TaskQueueSid") or None,
        worker_sid=form.get("WorkerSid") or None,
        worker_name=form.get("WorkerName") or None,
        worker_attributes=_json_object(form.get("WorkerAttributes"), "WorkerAttributes"),
    )


def from_cloudevents(body: object) -> list[TaskEvent]:
    """An Event Streams webhook batch: a JSON array of CloudEvents (one object is accepted
    too). Events of other products are skipped; a TaskRouter event that is malformed raises."""
    items = body if isinstance(body, list) else [body]
    events = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise EventError("each CloudEvent must be an object with a type")
        if not item["type"].startswith(_CLOUD_PREFIX):
            continue
        data = item.get("data")
        payload = data.get("payload") if isinstance(data, dict) else None
        if not isinstance(payload, dict):
            raise EventError("a TaskRouter CloudEvent needs data.payload")
        workspace = str(payload.get("workspace_sid") or "")
        if not workspace.startswith("WS"):
            raise EventError("workspace_sid is required")
        events.append(
            TaskEvent(
                event_id=str(payload.get("sid") or item.get("id") or ""),
                event_type=str(payload.get("eventtype") or item["type"][len(_CLOUD_PREFIX) :]),
                workspace_sid=workspace,
                task_sid=payload.get("task_sid") or None,
                task_attributes=_json_object(payload.get("task_attributes"), "task_attributes") or {},
                task_channel=payload.get("task_channel_unique_name") or None,
                task_queue_name=payload.get("task_queue_name") or None,
                task_queue_sid=payload.get("task_queue_sid") or None,
                worker_sid=payload.get("worker_sid") or None,
                worker_name=payload.get("worker_name") or None,
                worker_attributes=_json_object(payload.get("worker_attributes"), "worker_attributes"),
            )
        )
    return events


# ---------------------------------------------------------------------------- selection


def customer_call_sid(attributes: Mapping[str, Any]) -> str | None:
    """The customer's call leg as Flex records it: `call_sid`, else the conference's
    `customer` participant."""
    for key in ("call_sid", "callSid"):
        value = attributes.get(key)
        if isinstance(value, str) and value.startswith("CA"):
            return value
    conference = attributes.get("conference")
    if isinstance(conference, Mapping):
        participants = conference.get("participants")
        if isinstance(participants, Mapping):
            customer = participants.get("customer")
            if isinstance(customer, str) and customer.startswith("CA"):
                return customer
    return None


def conference_sid(attributes: Mapping[str, Any]) -> str | None:
    conference = attributes.get("conference")
    sid = conference.get("sid") if isinstance(conference, Mapping) else None
    return sid if isinstance(sid, str) and sid.startswith("CF") else None


def is_internal_call(attributes: Mapping[str, Any]) -> bool:
    """A call between two workers: marked internal, or both ends are Flex (Client) identities."""
    if attributes.get("internal") is True or attributes.get("type") == "internal":
        return True
    caller = attributes.get("from") or attributes.get("caller")
    callee = attributes.get("to") or attributes.get("called") or attributes.get("outbound_to")
    return all(isinstance(end, str) and end.startswith("client:") for end in (caller, callee))


def worker_identity(worker_name: str | None, attributes: Mapping[str, Any]) -> str:
    contact = attributes.get("contact_uri")
    if isinstance(contact, str) and contact.startswith("client:"):
        return contact[len("client:") :]
    return worker_name or ""


def policy_context(event: TaskEvent, worker_attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "task": dict(event.task_attributes),
        "worker": dict(worker_attributes),
        "taskqueue": {"name": event.task_queue_name, "sid": event.task_queue_sid},
        "channel": event.task_channel,
    }


@dataclass(frozen=True, slots=True)
class Verdict:
    assist: bool
    reason: str


def select(event: TaskEvent, worker_attributes: Mapping[str, Any], policy: Policy, opt_out_attribute: str) -> Verdict:
    """Whether this accepted reservation gets assist: voice only, never worker-to-worker,
    never an opted-out task, then the operator's policy."""
    if event.task_channel not in (None, "voice"):
        return Verdict(False, f"channel {event.task_channel}")
    if event.task_attributes.get(opt_out_attribute) in (True, "true", "yes", 1):
        return Verdict(False, f"task opted out ({opt_out_attribute})")
    if is_internal_call(event.task_attributes):
        return Verdict(False, "call between two workers")
    if not policy.allows(policy_context(event, worker_attributes)):
        return Verdict(False, f"policy: {policy.source}")
    return Verdict(True, "policy")


# ---------------------------------------------------------------------------- ledger


@dataclass(slots=True)
class TaskRecord:
    task_sid: str
    workspace_sid: str
    call_sid: str | None = None
    worker_sid: str | None = None
    state: str = "new"  # new → assisting | refused; → ended (terminal)


@dataclass(slots=True)
class CallRecordState:
    tasks: list[str] = field(default_factory=list)  # assisted tasks on the call, oldest first
    transfer_pending: bool = False


class AssistLedger:
    """What the relay knows about tasks and calls, bounded (oldest forgotten first)."""

    def __init__(self, max_tasks: int = 20_000, max_event_ids: int = 50_000) -> None:
        self._tasks: OrderedDict[str, TaskRecord] = OrderedDict()
        self._calls: dict[str, CallRecordState] = {}
        self._event_ids: OrderedDict[str, None] = OrderedDict()
        self._max_tasks = max_tasks
        self._max_event_ids = max_event_ids

    def duplicate(self, event_id: str) -> bool:
        """True if this event was seen before; remembers it otherwise."""
        if not event_id:
            return False
        if event_id in self._event_ids:
            return True
        self._event_ids[event_id] = None
        if len(self._event_ids) > self._max_event_ids:
            self._event_ids.popitem(last=False)
        return False

    def task(self, task_sid: str, workspace_sid: str) -> TaskRecord:
        record = self._tasks.get(task_sid)
        if record is None:
            record = self._tasks[task_sid] = TaskRecord(task_sid, workspace_sid)
            while len(self._tasks) > self._max_tasks:
                _, old = self._tasks.popitem(last=False)
                self._forget_call_task(old)
        return record

    def ended(self, task_sid: str) -> bool:
        record = self._tasks.get(task_sid)
        return record is not None and record.state == "ended"

    def assisting(self, record: TaskRecord, call_sid: str, worker_sid: str | None) -> bool:
        """The task's stream runs on the call. False (nothing changes) when the task ended
        meanwhile: another replica took its end while the stream was being started."""
        if record.state == "ended":
            return False
        record.state, record.call_sid, record.worker_sid = "assisting", call_sid, worker_sid
        call = self._calls.setdefault(call_sid, CallRecordState())
        if record.task_sid not in call.tasks:
            call.tasks.append(record.task_sid)
        call.transfer_pending = False  # the transfer (if any) landed
        return True

    def refused(self, record: TaskRecord) -> None:
        if record.state != "ended":
            record.state = "refused"

    def end(self, task_sid: str, workspace_sid: str) -> str | None:
        """The task ended. Returns the call whose stream must stop now (its last assisted task
        ended and no transfer is pending), else None."""
        record = self.task(task_sid, workspace_sid)
        was_assisting = record.state == "assisting"
        record.state = "ended"
        if not was_assisting or record.call_sid is None:
            return None
        call = self._calls.get(record.call_sid)
        if call is None:
            return record.call_sid
        if task_sid in call.tasks:
            call.tasks.remove(task_sid)
        if call.tasks or call.transfer_pending:
            return None
        del self._calls[record.call_sid]
        return record.call_sid

    def current_task(self, call_sid: str) -> TaskRecord | None:
        """The newest assisted task on the call (the one that receives its wrap-up)."""
        call = self._calls.get(call_sid)
        return self._tasks.get(call.tasks[-1]) if call and call.tasks else None

    def transfer_started(self, task_sid: str) -> None:
        record = self._tasks.get(task_sid)
        if record is not None and record.call_sid in self._calls:
            self._calls[record.call_sid].transfer_pending = True

    def transfer_ended(self, task_sid: str) -> str | None:
        """A transfer failed, was canceled or completed: returns a call to stop if no task
        of it is still assisted."""
        record = self._tasks.get(task_sid)
        if record is None or record.call_sid is None:
            return None
        call = self._calls.get(record.call_sid)
        if call is None:
            return None
        call.transfer_pending = False
        if call.tasks:
            return None
        del self._calls[record.call_sid]
        return record.call_sid

    def stopped_by_policy(self, task_sid: str) -> str | None:
        """The task's call left assist while the task goes on (e.g. an external transfer)."""
        record = self._tasks.get(task_sid)
        if record is None or record.state != "assisting" or record.call_sid is None:
            return None
        record.state = "refused"
        self._calls.pop(record.call_sid, None)
        return record.call_sid

    def call(self, call_sid: str) -> CallRecordState | None:
        return self._calls.get(call_sid)

    def known(self, task_sid: str) -> TaskRecord | None:
        return self._tasks.get(task_sid)

    def put(self, record: TaskRecord, call_sid: str | None, call: CallRecordState | None) -> None:
        """Load one task and its call as shared storage holds them (None: the call has no
        assisted task), before a transition or to mirror what storage now says."""
        self._tasks.pop(record.task_sid, None)
        self._tasks[record.task_sid] = record
        while len(self._tasks) > self._max_tasks:
            _, old = self._tasks.popitem(last=False)
            self._forget_call_task(old)
        if call_sid is not None:
            if call is None:
                self._calls.pop(call_sid, None)
            else:
                self._calls[call_sid] = call

    def _forget_call_task(self, record: TaskRecord) -> None:
        call = self._calls.get(record.call_sid or "")
        if call is not None and record.task_sid in call.tasks:
            call.tasks.remove(record.task_sid)


# ---------------------------------------------------------------------------- storage form


def task_to_json(record: TaskRecord) -> str:
    return json.dumps(
        {"ws": record.workspace_sid, "call": record.call_sid, "worker": record.worker_sid, "state": record.state},
        separators=(",", ":"),
    )


def task_from_json(raw: str | None, task_sid: str, workspace_sid: str) -> TaskRecord:
    """A stored task (a new record when nothing is stored or it cannot be read)."""
    value = _stored(raw)
    state = value.get("state")
    return TaskRecord(
        task_sid,
        str(value.get("ws") or workspace_sid),
        call_sid=_text(value.get("call")),
        worker_sid=_text(value.get("worker")),
        state=state if state in ("new", "assisting", "refused", "ended") else "new",
    )


def call_to_json(call: CallRecordState) -> str:
    return json.dumps({"tasks": call.tasks, "transfer": call.transfer_pending}, separators=(",", ":"))


def call_from_json(raw: str | None) -> CallRecordState | None:
    if raw is None:
        return None
    value = _stored(raw)
    tasks = value.get("tasks")
    return CallRecordState(
        tasks=[t for t in tasks if isinstance(t, str)] if isinstance(tasks, list) else [],
        transfer_pending=value.get("transfer") is True,
    )


def _stored(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
