"""TaskRouter drives assist: the shell that performs the ledger's decisions.

Events come from `POST /twilio/taskrouter` (answered 204 at once) and are processed in the
background, one at a time per task (a per-task lock), so a `task.completed` that arrives while
the `reservation.accepted` is still starting the stream waits for it and then stops it. What
the driver knows (seen events, task and call states, the lock) lives in a `TaskLedger`: this
process's memory, or Redis shared by every relay (`relay/taskrouter/ledger.py`).

- `reservation.accepted` for a selected voice task: find the customer's call (task attributes,
  else the conference's participants over REST), then start the stream through the same
  `StreamControl` as `/stream`, with `TaskSid`, `WorkspaceSid`, `WorkerSid` and
  `WorkerIdentity` as stream parameters.
- `task.wrapup` / `completed` / `canceled` / `deleted`: stop the stream (REST), and if the call
  is still live here after a short grace, end it from our side, so the wrap-up runs and is
  written to this task.
- `task.updated` matching the stop policy (e.g. transferred to an external number): stop.
Every REST outcome is counted by action and result; errors carry Twilio's code in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twilio.base.exceptions import TwilioRestException

from relay.assist.bridge import CallBridge
from relay.taskrouter.events import (
    END_EVENTS,
    HANDLED,
    START_EVENT,
    TRANSFER_ENDED,
    TRANSFER_STARTED,
    UPDATED,
    TaskEvent,
    TaskRecord,
    conference_sid,
    customer_call_sid,
    policy_context,
    select,
    worker_identity,
)
from relay.taskrouter.ledger import LocalTaskLedger, TaskLedger
from relay.taskrouter.policy import Policy
from relay.twilio.stream_control import Result, StreamControl
from relay.wrapup.service import TaskRef

if TYPE_CHECKING:
    from twilio.rest import Client

log = logging.getLogger("relay.taskrouter.driver")

Spawn = Callable[[Coroutine[Any, Any, Any]], Any]
REST_RETRIES = 3


@dataclass(slots=True)
class TaskRouterStats:
    events: Counter[str] = field(default_factory=Counter)  # by event type
    outcomes: Counter[str] = field(default_factory=Counter)  # duplicate, not_selected, late_after_end, …
    actions: Counter[str] = field(default_factory=Counter)  # start:started, stop:already_stopped, lookup:404 …


@dataclass(frozen=True, slots=True)
class DriverConfig:
    policy: Policy
    stop_policy: Policy
    opt_out_attribute: str
    stop_grace_s: float = 2.0


class TaskRouterDriver:
    def __init__(
        self,
        config: DriverConfig,
        *,
        stream_control: StreamControl,
        client: Client | None,
        live_bridge: Callable[[str], CallBridge | None],
        end_call: Callable[[str, str], Awaitable[bool]],
        spawn: Spawn,
        ledger: TaskLedger | None = None,
    ) -> None:
        self.config = config
        self.ledger: TaskLedger = ledger or LocalTaskLedger()
        self.stats = TaskRouterStats()
        self._streams = stream_control
        self._client = client
        self._live_bridge = live_bridge
        self._end_call = end_call
        self._spawn = spawn

    async def open(self) -> None:
        await self.ledger.open(self._call_task_changed)

    def _call_task_changed(self, call_sid: str, task_sid: str, workspace_sid: str) -> None:
        """Another relay decided which task the call's wrap-up goes to; the call may be here."""
        bridge = self._live_bridge(call_sid)
        if bridge is not None:
            bridge.task = TaskRef(task_sid, workspace_sid)

    async def _wrap_up_goes_to(self, call_sid: str, task: TaskRef) -> None:
        bridge = self._live_bridge(call_sid)
        if bridge is not None:
            bridge.task = task
        else:  # the call's socket may be on another relay
            await self.ledger.announce(call_sid, task.task_sid, task.workspace_sid)

    def submit(self, events: list[TaskEvent]) -> None:
        """Queue events for processing (the webhook has already answered)."""
        for event in events:
            self.stats.events[event.event_type] += 1
            if event.event_type not in HANDLED or not event.task_sid:
                self.stats.outcomes["not_handled"] += 1
                continue
            self._spawn(self._serially(event))

    async def _serially(self, event: TaskEvent) -> None:
        """One event of a task at a time. The lock is asked for before anything else is
        awaited, so a task's events queue in the order they arrived here."""
        assert event.task_sid is not None
        try:
            async with self.ledger.lock(event.task_sid):
                if await self.ledger.seen(event.event_id):
                    self.stats.outcomes["duplicate"] += 1
                    log.info("taskrouter event seen before; ignored", extra=_ids(event))
                    return
                await self.process(event)
        except Exception:  # one bad event must never stop the others
            self.stats.outcomes["error"] += 1
            log.exception("taskrouter event failed", extra=_ids(event))
        finally:
            if self.ledger.degraded:  # handled with this relay's view only (Redis unreachable)
                self.stats.outcomes["shared_ledger_unavailable"] += 1

    async def process(self, event: TaskEvent) -> None:
        assert event.task_sid is not None
        kind = event.event_type
        if kind == START_EVENT:
            await self._accepted(event)
        elif kind in END_EVENTS:
            call_sid = await self.ledger.end(event.task_sid, event.workspace_sid)
            if call_sid is not None:
                await self._stop(call_sid, TaskRef(event.task_sid, event.workspace_sid), kind)
            else:
                self.stats.outcomes["ended_no_stream"] += 1
        elif kind == TRANSFER_STARTED:
            await self.ledger.transfer_started(event.task_sid)
        elif kind in TRANSFER_ENDED:
            call_sid = await self.ledger.transfer_ended(event.task_sid)
            if call_sid is not None:
                await self._stop(call_sid, TaskRef(event.task_sid, event.workspace_sid), kind)
        elif kind == UPDATED and self.config.stop_policy.allows(policy_context(event, {})):
            call_sid = await self.ledger.stopped_by_policy(event.task_sid)
            if call_sid is not None:
                log.info("task left assist by the stop policy", extra=_ids(event))
                await self._stop(call_sid, TaskRef(event.task_sid, event.workspace_sid), "stop_policy")

    async def _accepted(self, event: TaskEvent) -> None:
        assert event.task_sid is not None
        if await self.ledger.state(event.task_sid, event.workspace_sid) == "ended":
            self.stats.outcomes["late_after_end"] += 1
            log.info("reservation accepted after the task ended; nothing started", extra=_ids(event))
            return
        worker_attributes = event.worker_attributes
        if worker_attributes is None and event.worker_sid:
            worker_attributes = await self._fetch_worker(event.workspace_sid, event.worker_sid)
        verdict = select(event, worker_attributes or {}, self.config.policy, self.config.opt_out_attribute)
        if not verdict.assist:
            await self.ledger.refused(event.task_sid, event.workspace_sid)
            self.stats.outcomes["not_selected"] += 1
            log.info("task not assisted", extra={**_ids(event), "why": verdict.reason})
            return
        call_sid = customer_call_sid(event.task_attributes)
        if call_sid is None and (conference := conference_sid(event.task_attributes)) is not None:
            call_sid = await self._customer_from_conference(conference)
        if call_sid is None:
            self.stats.outcomes["no_call_sid"] += 1
            log.warning("selected task names no customer call; nothing started", extra=_ids(event))
            return
        parameters = {
            "TaskSid": event.task_sid,
            "WorkspaceSid": event.workspace_sid,
            "WorkerSid": event.worker_sid or "",
            "WorkerIdentity": worker_identity(event.worker_name, worker_attributes or {}),
        }
        outcome = await self._streams.start(call_sid, {k: v for k, v in parameters.items() if v}, retries=REST_RETRIES)
        self.stats.actions[f"start:{outcome.result.value}"] += 1
        if not outcome.ok:
            return
        task = TaskRef(event.task_sid, event.workspace_sid)
        started = await self.ledger.assisting(event.task_sid, event.workspace_sid, call_sid, event.worker_sid)
        if not started.ok:
            # The task ended while the stream was being created (its end reached another relay,
            # which could not wait for this one): the stream we created must not outlive it.
            self.stats.outcomes["ended_during_start"] += 1
            log.info("task ended while its stream was starting; stopping it", extra=_ids(event))
            if outcome.result is Result.STARTED:  # already running: someone else's stream
                await self._stop(call_sid, task, "task.ended")
            return
        await self._wrap_up_goes_to(call_sid, task)  # a transfer: the new task takes over the call
        log.info(
            "assist started by TaskRouter",
            extra={
                **_ids(event),
                "call_sid": call_sid,
                "result": outcome.result.value,
                "transferred_from": started.previous_task,
            },
        )

    async def _stop(self, call_sid: str, task: TaskRef, why: str) -> None:
        await self._wrap_up_goes_to(call_sid, task)  # the task that ended the call
        outcome = await self._streams.stop(call_sid, retries=REST_RETRIES)
        self.stats.actions[f"stop:{outcome.result.value}"] += 1
        # Twilio sends `stop` on the stream; if the call is still live here after a grace (the
        # stream was not ours, or Twilio is slow), end it from our side so the wrap-up runs.
        self._spawn(self._end_after_grace(call_sid, why))

    async def _end_after_grace(self, call_sid: str, why: str) -> None:
        await asyncio.sleep(self.config.stop_grace_s)
        if await self._end_call(call_sid, f"taskrouter_{why.replace('task.', '').replace('-', '_')}"):
            self.stats.outcomes["ended_locally"] += 1

    async def _fetch_worker(self, workspace_sid: str, worker_sid: str) -> dict[str, Any] | None:
        if self._client is None:
            return None
        try:
            worker = await self._client.taskrouter.v1.workspaces(workspace_sid).workers(worker_sid).fetch_async()
        except TwilioRestException as exc:
            self.stats.actions[f"worker_fetch:{exc.status}"] += 1
            log.warning("worker fetch failed", extra={"worker_sid": worker_sid, "status": exc.status, "code": exc.code})
            return None
        except Exception as exc:
            self.stats.actions["worker_fetch:unreachable"] += 1
            log.warning("worker fetch failed", extra={"worker_sid": worker_sid, "error": type(exc).__name__})
            return None
        self.stats.actions["worker_fetch:ok"] += 1
        try:
            value = json.loads(worker.attributes or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def _customer_from_conference(self, conference: str) -> str | None:
        """The conference's participant labelled `customer` (Flex labels the legs)."""
        if self._client is None:
            return None
        try:
            participants = await self._client.conferences(conference).participants.list_async()
        except TwilioRestException as exc:
            self.stats.actions[f"participants:{exc.status}"] += 1
            log.warning("conference lookup failed", extra={"conference_sid": conference, "code": exc.code})
            return None
        except Exception as exc:
            self.stats.actions["participants:unreachable"] += 1
            log.warning("conference lookup failed", extra={"conference_sid": conference, "error": type(exc).__name__})
            return None
        self.stats.actions["participants:ok"] += 1
        for participant in participants:
            if getattr(participant, "label", None) == "customer":
                return str(participant.call_sid)
        return None


def _ids(event: TaskEvent) -> dict[str, Any]:
    return {"event": event.event_type, "task_sid": event.task_sid, "worker_sid": event.worker_sid}


__all__ = ["DriverConfig", "TaskRecord", "TaskRouterDriver", "TaskRouterStats"]
