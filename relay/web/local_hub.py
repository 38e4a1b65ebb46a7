"""In-process hub: where messages go when Twilio Sync is not configured.

Implements the same `Channel` as the Sync publisher, so the bridge is unchanged. Keeps a
bounded history per call and fans messages out to subscribers (the console's SSE feed,
tests). A slow subscriber loses its oldest messages, never blocks a call.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sync_publisher import Outgoing, StreamReport
from sync_publisher.messages import split


@dataclass(slots=True)
class HubStats:
    published: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class LocalHub:
    def __init__(self, *, history_per_call: int = 500, max_calls_kept: int = 50, subscriber_queue: int = 1000):
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._active: set[str] = set()
        self._history_per_call = history_per_call
        self._max_calls_kept = max_calls_kept
        self._subscriber_queue = subscriber_queue
        # A subscriber's queue yields messages, then None once the hub closes (app shutdown).
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._seq: dict[str, int] = {}  # one counter per call, shared by its channels
        self.stats = HubStats()

    def next_seq(self, call_sid: str) -> int:
        value = self._seq.get(call_sid, 0) + 1
        self._seq[call_sid] = value
        return value

    def open(self, call_sid: str) -> LocalChannel:
        self._active.add(call_sid)
        if call_sid not in self._history:  # a later stream of the same call continues it
            self._history[call_sid] = deque(maxlen=self._history_per_call)
        # Forget the oldest finished calls first; live calls are never evicted.
        for old in [k for k in self._history if k not in self._active]:
            if len(self._history) <= self._max_calls_kept:
                break
            del self._history[old]
            self._seq.pop(old, None)
        return LocalChannel(self, call_sid)

    def _deliver(self, call_sid: str, message: dict[str, Any]) -> None:
        history = self._history.get(call_sid)
        if history is not None:
            history.append(message)
        self.stats.published += 1
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.stats.dropped["slow_subscriber"] += 1
            queue.put_nowait(message)

    def _closed(self, call_sid: str) -> None:
        self._active.discard(call_sid)

    @property
    def active_calls(self) -> list[str]:
        return sorted(self._active)

    def history(self, call_sid: str) -> list[dict[str, Any]]:
        return list(self._history.get(call_sid, ()))

    def calls(self) -> list[str]:
        return list(self._history)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=self._subscriber_queue)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def end_subscriptions(self) -> None:
        """Tell every subscriber the feed is over, so open feeds end now, not at their next
        keep-alive (shutdown would otherwise wait for it)."""
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


class LocalChannel:
    def __init__(self, hub: LocalHub, call_sid: str) -> None:
        self._hub = hub
        self.call_sid = call_sid
        self._closed = False
        self.report = StreamReport(stream=f"local:{call_sid}")

    def publish(self, item: Outgoing) -> None:
        if self._closed:
            self.report.dropped["closed"] += 1
            return
        for part in split(item, self.call_sid):
            seq = self._hub.next_seq(self.call_sid)
            self._hub._deliver(self.call_sid, part.with_seq(self.call_sid, seq))
            self.report.published += 1

    async def close(self, deadline_s: float) -> StreamReport:
        self._closed = True
        self._hub._closed(self.call_sid)
        return self.report
