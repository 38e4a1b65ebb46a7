"""The wrap-up at the end of a call: compose it within a deadline, then deliver it.

`compose()` runs the summarizer under the deadline; whatever happens (model refusal,
timeouts, 429s past the retries, an unexpected error) it returns a result, `failed` with its
reason when nothing usable came back, so the bridge can always publish a `summary` and end
the call on time. `deliver_to_task()` writes the result into the call's TaskRouter task in
the background (after the call has ended, so a slow Twilio never holds the call), counted by
outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from relay.recent import RecentSamples
from relay.twilio.task_attributes import TaskAttributeWriter, TaskWriteFailed
from relay.wrapup.schema import Dispositions, Usage, WrapUpRequest, WrapUpResult
from relay.wrapup.summarizers import Summarizer

log = logging.getLogger("relay.wrapup.schema")

Spawn = Callable[[Coroutine[Any, Any, Any]], Any]


@dataclass(frozen=True, slots=True)
class TaskRef:
    task_sid: str
    workspace_sid: str


@dataclass(slots=True)
class WrapUpStats:
    results: Counter[str] = field(default_factory=Counter)  # ok / failed:<reason kind>
    tokens: Counter[str] = field(default_factory=Counter)  # input, cached_input, output
    requests: int = 0
    retries: int = 0
    task_writes: Counter[str] = field(default_factory=Counter)  # ok / <status> / no_workspace
    latency: RecentSamples = field(default_factory=lambda: RecentSamples(1000))  # call end → result


class WrapUpService:
    def __init__(
        self,
        summarizer: Summarizer,
        dispositions: Dispositions,
        *,
        deadline_s: float,
        task_attribute: str,
        task_writer: TaskAttributeWriter | None = None,
        default_workspace_sid: str | None = None,
        spawn: Spawn | None = None,
    ) -> None:
        self.summarizer = summarizer
        self.dispositions = dispositions
        self.deadline_s = deadline_s
        self.task_attribute = task_attribute
        self._writer = task_writer
        self._default_workspace = default_workspace_sid
        self._spawn = spawn or asyncio.ensure_future
        self.stats = WrapUpStats()

    async def compose(self, request: WrapUpRequest) -> WrapUpResult:
        started = time.monotonic()
        usage = Usage()
        common: dict[str, Any] = {
            "engine": self.summarizer.engine,
            "model": self.summarizer.model,
            "lines": len(request.lines),
            "usage": usage,
        }
        try:
            async with asyncio.timeout(self.deadline_s):
                result = await self.summarizer.summarize(request, usage)
        except TimeoutError:
            result = WrapUpResult.failed(f"deadline: no wrap-up within {self.deadline_s:g} s", **common)
        except Exception as exc:  # a bug must not keep the call from ending
            log.exception("wrap-up failed unexpectedly", extra={"call_sid": request.call_sid})
            result = WrapUpResult.failed(f"error: {type(exc).__name__}", **common)
        result.lines_not_kept = request.lines_not_kept
        self._count(result, time.monotonic() - started)
        return result

    def _count(self, result: WrapUpResult, elapsed_s: float) -> None:
        stats = self.stats
        stats.results["ok" if result.status == "ok" else "failed:" + result.reason.split(":", 1)[0]] += 1
        stats.tokens["input"] += result.usage.input_tokens
        stats.tokens["cached_input"] += result.usage.cached_input_tokens
        stats.tokens["output"] += result.usage.output_tokens
        stats.requests += result.usage.requests
        stats.retries += result.usage.retries
        stats.latency.add(elapsed_s)

    def deliver_to_task(self, call_sid: str, task: TaskRef | None, result: WrapUpResult) -> None:
        """Write the wrap-up into the task's attributes, in the background."""
        if task is None or self._writer is None:
            return
        value = {
            **result.message_body(),
            "call_sid": call_sid,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._spawn(self._write(call_sid, task, value))

    async def _write(self, call_sid: str, task: TaskRef, value: dict[str, Any]) -> None:
        assert self._writer is not None
        extra = {"call_sid": call_sid, "task_sid": task.task_sid}
        try:
            attempts = await self._writer.set_attribute(task.workspace_sid, task.task_sid, self.task_attribute, value)
        except TaskWriteFailed as exc:
            self.stats.task_writes[str(exc.status or "error")] += 1
            log.warning("wrap-up not written to the task", extra={**extra, "reason": exc.reason, "code": exc.code})
            return
        self.stats.task_writes["ok"] += 1
        log.info("wrap-up written to the task", extra={**extra, "attempts": attempts, "key": self.task_attribute})

    def task_for(self, parameters: Mapping[str, str]) -> TaskRef | None:
        """The call's task from the stream's custom parameters (`TaskSid`, `WorkspaceSid`)."""
        task_sid = parameters.get("TaskSid") or parameters.get("taskSid")
        if not task_sid or not task_sid.startswith("WT"):
            return None
        workspace = parameters.get("WorkspaceSid") or parameters.get("workspaceSid") or self._default_workspace
        if not workspace:
            self.stats.task_writes["no_workspace"] += 1
            log.warning(
                "task known but not its workspace: set TWILIO_TASKROUTER_WORKSPACE_SID", extra={"task_sid": task_sid}
            )
            return None
        return TaskRef(task_sid, workspace)
