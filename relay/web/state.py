"""The application's state and its `web.AppKey`: a leaf module that imports no handler.

Handlers (`media_ws`, `http_api`, `console`) read `request.app[RELAY]`; `app.py` builds the
state and its adapters. Each field has one writer, named beside it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from twilio.request_validator import RequestValidator

from relay.assist.bridge import TAKEN_OVER, CallBridge
from relay.cluster.directory import CallDirectory, LocalDirectory
from relay.knowledge.base import KnowledgeBase
from relay.knowledge.prompts import PromptLibrary
from relay.knowledge.retrieval import Retriever
from relay.model.session import RealtimeConnectError, RealtimeConnector, RealtimeSession, SessionConfig
from relay.recent import RecentSamples
from relay.records.service import Records
from relay.settings import Settings
from relay.taskrouter.driver import TaskRouterDriver
from relay.twilio.media import CloseCode
from relay.twilio.stream_control import StreamControl
from relay.web.local_hub import LocalHub
from relay.web.metrics import LAG_WINDOW, SEND_DELAY_WINDOW, SUGGESTION_WINDOW, Metrics, RelayCollector, RelayStats
from relay.wrapup.service import WrapUpService
from sync_publisher import Channel, SyncPublisher

if TYPE_CHECKING:
    from twilio.rest import Client

    from relay.twilio.flex_auth import FlexTokenValidator

log = logging.getLogger("relay.web.state")


class UnconfiguredConnector:
    """Stands in when no model is configured: every call is told assist is unavailable."""

    async def open(self, config: SessionConfig) -> RealtimeSession:
        raise RealtimeConnectError("no model configured (set OPENAI_API_KEY or RELAY_ENGINE=local)", fatal=True)


@dataclass(eq=False, slots=True)
class CallHandle:
    """A live call: its bridge and the socket currently feeding it (written by media_ws)."""

    bridge: CallBridge
    owner: web.WebSocketResponse
    replaced_sockets: list[web.WebSocketResponse] = field(default_factory=list)
    ended_by: str | None = None  # why the relay itself closed the call's socket


@dataclass(eq=False)
class RelayState:
    settings: Settings
    prompts: PromptLibrary
    retriever: Retriever  # the knowledge in force and its index; replaced whole by app.reload_knowledge()
    stats: RelayStats = field(default_factory=RelayStats)
    loop_lag: RecentSamples = field(default_factory=lambda: RecentSamples(LAG_WINDOW))
    send_delay: RecentSamples = field(default_factory=lambda: RecentSamples(SEND_DELAY_WINDOW))
    suggestion_latency: RecentSamples = field(default_factory=lambda: RecentSamples(SUGGESTION_WINDOW))
    metrics: Metrics = field(init=False)  # reads the state it belongs to at each scrape
    # Adapters: set once by app.py's cleanup context, before the first request.
    connector: RealtimeConnector = field(default_factory=UnconfiguredConnector)
    sync: SyncPublisher | None = None  # Twilio Sync, when configured …
    hub: LocalHub | None = None  # … else the in-process hub (exactly one of the two)
    request_validator: RequestValidator | None = None
    twilio_client: Client | None = None
    flex_validator: FlexTokenValidator | None = None
    wrapup: WrapUpService | None = None  # the end-of-call wrap-up, unless RELAY_WRAPUP=false
    stream_control: StreamControl = field(init=False)  # REST Streams start/stop (set with the client)
    taskrouter: TaskRouterDriver | None = None  # TaskRouter events → stream start/stop (app.py)
    records: Records | None = None  # call records, unless RELAY_RECORDS=false (app.py)
    # Per-call state beyond one socket: in memory, or shared by the replicas through Redis (app.py).
    directory: CallDirectory = field(default_factory=LocalDirectory)
    # Calls (media_ws): live by CallSid, and those still flushing after their socket closed.
    calls: dict[str, CallHandle] = field(default_factory=dict)
    finishing: set[CallHandle] = field(default_factory=set)
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    pending_upgrades: int = 0
    background: set[asyncio.Task[Any]] = field(default_factory=set)  # via spawn()
    background_failures: Counter[str] = field(default_factory=Counter)  # by task name (spawn)
    draining: bool = False  # set by app.drain() only
    # Knowledge reloads (app.reload_knowledge) take turns; the last one requested wins.
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reloads_requested: int = 0
    recent_summaries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))

    def __post_init__(self) -> None:
        self.stream_control = StreamControl(None, self.settings)
        collector = RelayCollector(
            self.stats,
            live_bridges=self.live_bridges,
            publisher_stats=lambda: self.sync.stats if self.sync is not None else None,
            loop_lag=self.loop_lag,
            send_delay=self.send_delay,
            suggestion_latency=self.suggestion_latency,
            knowledge_passages=lambda: len(self.knowledge.passages),
            wrapup_stats=lambda: self.wrapup.stats if self.wrapup is not None else None,
            taskrouter_stats=lambda: self.taskrouter.stats if self.taskrouter is not None else None,
            records=lambda: self.records.writer if self.records is not None else None,
            directory_errors=lambda: self.directory.errors,
        )
        self.metrics = Metrics(collector)

    @property
    def knowledge(self) -> KnowledgeBase:
        return self.retriever.knowledge

    def open_channel(self, call_sid: str) -> Channel:
        """The call's outgoing message channel: its Sync stream, or the hub."""
        if self.sync is not None:
            return self.sync.open(call_sid)
        if self.hub is None:
            raise RuntimeError("the app's adapters are not set up (is the app running?)")
        return self.hub.open(call_sid)

    @functools.cached_property
    def trusted_proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """RELAY_TRUSTED_PROXIES, parsed once (the settings validated every entry)."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.settings.trusted_proxies)

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        """A background task the app keeps a reference to and waits for on drain. A failure
        is logged with the task's name (one line) and counted in `background_failures`."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here: asyncio does not log it a second time
        if exc is not None:
            name = task.get_name()
            self.background_failures[name] += 1
            log.error(
                "background task failed",
                extra={"task": name, "error": type(exc).__name__, "failures": self.background_failures[name]},
                exc_info=exc,
            )

    async def background_idle(self) -> None:
        """Wait until every background task (status flushes, socket closes) is done."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    def live_bridge(self, call_sid: str) -> CallBridge | None:
        handle = self.calls.get(call_sid)
        return handle.bridge if handle is not None else None

    async def end_call(self, call_sid: str, reason: str) -> bool:
        """Close a live call's socket from our side (1000); its bridge finishes with `reason`."""
        handle = self.calls.get(call_sid)
        if handle is None:
            return False
        handle.ended_by = reason
        await handle.owner.close(code=1000, message=reason.encode()[:120])
        return True

    def take_over(self, call_sid: str, new_owner: str) -> None:
        """Another replica now owns the call (a newer stream landed there): close our socket
        (4409) and, through it, our model session; the bridge ends without `ended`."""
        handle = self.calls.get(call_sid)
        if handle is None:
            return
        self.stats.streams_replaced += 1
        handle.ended_by = TAKEN_OVER
        closing = handle.owner.close(code=CloseCode.REPLACED, message=b"taken over by another replica")
        self.spawn(closing, name="ws-close")

    def live_bridges(self) -> list[CallBridge]:
        return [h.bridge for h in self.calls.values()] + [h.bridge for h in self.finishing]

    @property
    def idle(self) -> bool:
        """No call is live or still flushing."""
        return not self.calls and not self.finishing

    @property
    def open_connections(self) -> int:
        """Media sockets open or being upgraded (each runs one connection task)."""
        return len(self.handlers) + self.pending_upgrades

    @property
    def ready(self) -> bool:
        return not self.draining and self.open_connections < self.settings.max_calls


RELAY: web.AppKey[RelayState] = web.AppKey("relay", RelayState)
