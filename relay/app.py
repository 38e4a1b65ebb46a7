"""App factory: `create_app(settings, **adapters)` wires the relay together.

Adapters (model connector, Sync transport, Flex token validator, Twilio REST client) are
built from settings in a `cleanup_ctx` unless a caller passes its own, which is how tests
point the relay at loopback servers without mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from twilio.request_validator import RequestValidator

from sync_publisher import Channel, PublisherConfig, SyncPublisher, SyncTransport
from sync_publisher.twilio_transport import TwilioSyncTransport, make_twilio_client

from .bridge import BridgeConfig, CallBridge
from .local_hub import LocalHub
from .metrics import LAG_WINDOW, SEND_DELAY_WINDOW, Metrics, RelayCollector, RelayStats, monitor_loop_lag
from .model_link import LinkConfig
from .prompts import PromptLibrary
from .realtime import OpenAIConnector, RealtimeConnectError, RealtimeConnector, RealtimeSession, SessionConfig
from .recent import RecentSamples
from .settings import Settings
from .twilio_media import CloseCode, Start

if TYPE_CHECKING:
    from twilio.rest import Client

    from .flex_auth import FlexTokenValidator
    from .media_ws import CallHandle

log = logging.getLogger("relay.app")

_BYTES_PER_MS = {"pcm24k": 48, "pcm16k": 32, "pcmu": 8}


class UnconfiguredConnector:
    """Stands in when no model is configured: every call is told assist is unavailable."""

    async def open(self, config: SessionConfig) -> RealtimeSession:
        raise RealtimeConnectError("no model configured (set OPENAI_API_KEY or RELAY_ENGINE=local)", fatal=True)


@dataclass(eq=False)
class RelayState:
    settings: Settings
    prompts: PromptLibrary
    connector: RealtimeConnector
    stats: RelayStats
    metrics: Metrics
    sync: SyncPublisher | None = None
    hub: LocalHub | None = None
    request_validator: RequestValidator | None = None
    twilio_client: Client | None = None
    flex_validator: FlexTokenValidator | None = None
    calls: dict[str, CallHandle] = field(default_factory=dict)
    finishing: set[CallHandle] = field(default_factory=set)
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    pending_upgrades: int = 0
    draining: bool = False
    loop_lag: RecentSamples = field(default_factory=lambda: RecentSamples(LAG_WINDOW))
    send_delay: RecentSamples = field(default_factory=lambda: RecentSamples(SEND_DELAY_WINDOW))
    recent_summaries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))

    def open_channel(self, call_sid: str) -> Channel:
        if self.sync is not None:
            return self.sync.open(call_sid)
        if self.hub is None:
            self.hub = LocalHub()
        return self.hub.open(call_sid)

    def new_bridge(self, start: Start) -> CallBridge:
        settings = self.settings
        selection = self.prompts.select(start.custom_parameters.get("prompt"))
        # The offline engine's recognizer takes 16 kHz; OpenAI takes 24 kHz PCM or μ-law.
        audio_format = "pcm16k" if settings.effective_engine == "local" else settings.audio_format
        bytes_per_ms = _BYTES_PER_MS[audio_format]
        config = BridgeConfig(
            audio_format=audio_format,
            append_batch_ms=settings.append_batch_ms,
            flush_deadline_s=settings.sync_flush_deadline_s,
            log_transcripts=settings.log_transcripts,
            link=LinkConfig(
                buffer_max_bytes=settings.audio_buffer_max_ms * bytes_per_ms,
                max_attempts=settings.reconnect_max_attempts,
                initial_delay_s=settings.reconnect_initial_delay_s,
                max_delay_s=settings.reconnect_max_delay_s,
                session_max_age_s=settings.session_max_age_s,
                rollover_grace_s=min(120.0, max(5.0, 3600 - settings.session_max_age_s - 30)),
                replay_max_bytes=settings.reconnect_replay_ms * bytes_per_ms,
                # Catching up after falling behind: at most 1 s of audio per append.
                merge_max_bytes=1000 * bytes_per_ms,
                send_delays=self.send_delay,
            ),
        )
        session_config = SessionConfig(
            instructions=selection.text,
            audio_format=audio_format,
            transcription_model=settings.transcription_model,
            transcription_language=settings.transcription_language,
        )
        agent_config = None
        if settings.transcribe_agent and "outbound" in start.tracks:
            agent_config = dataclasses.replace(session_config, instructions="", transcription_only=True)
        return CallBridge(
            start,
            connector=self.connector,
            session_config=session_config,
            agent_session_config=agent_config,
            channel=self.open_channel(start.call_sid),
            config=config,
            prompt_name=selection.name,
        )

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        """A background task the app keeps a reference to and waits for on drain."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def background_idle(self) -> None:
        """Wait until every background task (status flushes, socket closes) is done."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

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


def publisher_config(settings: Settings) -> PublisherConfig:
    return PublisherConfig(
        rate_per_s=settings.sync_rate_per_s,
        burst_window_s=settings.sync_burst_window_s,
        queue_max=settings.sync_queue_max,
        retry_budget_s=settings.sync_retry_budget_s,
        stream_ttl_s=settings.sync_stream_ttl_s,
    )


def create_app(
    settings: Settings,
    *,
    connector: RealtimeConnector | None = None,
    sync_transport: SyncTransport | None = None,
    hub: LocalHub | None = None,
    twilio_client: Client | None = None,
    flex_validator: FlexTokenValidator | None = None,
) -> web.Application:
    from . import console, http_api, media_ws

    dirs = settings.data_dirs()
    prompts = PromptLibrary.load(dirs.prompts, settings.prompt)
    log.info(
        "prompts loaded",
        extra={"folder": str(dirs.prompts), "origin": dirs.prompts_origin, "prompts": list(prompts.names)},
    )
    stats = RelayStats()
    holder: dict[str, RelayState] = {}
    loop_lag, send_delay = RecentSamples(LAG_WINDOW), RecentSamples(SEND_DELAY_WINDOW)
    collector = RelayCollector(
        stats,
        loop_lag=loop_lag,
        send_delay=send_delay,
        live_bridges=lambda: holder["state"].live_bridges() if holder else [],
        publisher_stats=lambda: holder["state"].sync.stats if holder and holder["state"].sync else None,
    )
    state = RelayState(
        settings=settings,
        prompts=prompts,
        connector=connector or UnconfiguredConnector(),
        stats=stats,
        metrics=Metrics(collector),
        hub=hub,
        twilio_client=twilio_client,
        flex_validator=flex_validator,
        loop_lag=loop_lag,
        send_delay=send_delay,
    )
    holder["state"] = state
    if settings.twilio_auth_token is not None:
        state.request_validator = RequestValidator(settings.twilio_auth_token.get_secret_value())

    app = web.Application(client_max_size=1024 * 1024)
    app[RELAY] = state
    app.router.add_get("/media", media_ws.media_handler)
    app.router.add_get("/ws/{callSid}", media_ws.media_handler)
    http_api.add_routes(app)
    console.add_routes(app)

    async def adapters(app: web.Application) -> AsyncIterator[None]:
        owned: list[Any] = []
        if connector is None and settings.effective_engine == "local":
            from .local_engine import LocalConnector

            local = await asyncio.get_running_loop().run_in_executor(
                None, lambda: LocalConnector(dirs.knowledge, min_score=settings.local_min_score)
            )
            await local.recognizer.warm_up()
            state.connector = local
            owned.append(local)
            log.info(
                "offline engine ready",
                extra={
                    "entries": len(local.kb.entries),
                    "folder": str(dirs.knowledge),
                    "origin": dirs.knowledge_origin,
                },
            )
        elif connector is None and settings.openai_api_key is not None:
            openai_connector = OpenAIConnector(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                model=settings.realtime_model,
                connect_timeout_s=settings.realtime_connect_timeout_s,
            )
            openai_connector.warm_up()
            state.connector = openai_connector
            owned.append(openai_connector)
        if state.twilio_client is None and settings.twilio_configured:
            state.twilio_client = _twilio_client(settings)
            owned.append(state.twilio_client.http_client)
        transport = sync_transport
        if transport is None and settings.sync_configured and state.twilio_client is not None:
            assert settings.twilio_sync_service_sid is not None
            transport = TwilioSyncTransport(state.twilio_client, settings.twilio_sync_service_sid)
        if transport is not None:
            state.sync = SyncPublisher(transport, publisher_config(settings), settings.stream_name_for)
        elif state.hub is None:
            state.hub = LocalHub()
        if state.flex_validator is None and state.twilio_client is not None:
            from .flex_auth import FlexTokenValidator

            state.flex_validator = FlexTokenValidator(
                state.twilio_client,
                account_sid=settings.twilio_account_sid or "",
                iam_base_url=settings.twilio_iam_base_url,
                cache_ttl_s=settings.flex_verdict_cache_s,
            )
        _warm_up(state)
        _warn_about_open_doors(settings, state)
        lag_task = asyncio.create_task(monitor_loop_lag(state.metrics, record=state.loop_lag))
        state.metrics.watch_gc()
        yield
        state.metrics.unwatch_gc()
        lag_task.cancel()
        await drain(state, deadline_s=0.0)
        for resource in owned:
            with contextlib.suppress(Exception):
                await _close(resource)
        if sync_transport is None and state.sync is not None and state.twilio_client is None:
            await state.sync.aclose()

    app.cleanup_ctx.append(adapters)
    return app


async def _close(resource: Any) -> None:
    for name in ("aclose", "close"):
        method = getattr(resource, name, None)
        if method is not None:
            result = method()
            if asyncio.iscoroutine(result):
                await result
            return


def _twilio_client(settings: Settings) -> Client:
    assert settings.twilio_account_sid is not None and settings.twilio_auth_token is not None
    return make_twilio_client(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        api_key=settings.twilio_api_key,
        api_secret=settings.twilio_api_secret.get_secret_value() if settings.twilio_api_secret else None,
        api_base_url=settings.twilio_api_base_url,
        sync_base_url=settings.twilio_sync_base_url,
        timeout_s=settings.twilio_http_timeout_s,
    )


def _warm_up(state: RelayState) -> None:
    """First-call work done at startup instead: filter design (scipy imports lazily), the
    twilio SDK's lazily imported domains."""
    from .audio import design_upsampling_filter

    design_upsampling_filter(2)
    design_upsampling_filter(3)
    client = state.twilio_client
    if client is not None:
        _ = client.sync.v1.services
        _ = client.api.v2010.account


def _warn_about_open_doors(settings: Settings, state: RelayState) -> None:
    if state.request_validator is None and settings.media_api_key is None:
        log.warning("media endpoint is unauthenticated: set TWILIO_AUTH_TOKEN and RELAY_PUBLIC_URL")
    if state.sync is None:
        log.warning("Twilio Sync is not configured: messages go to the in-process hub (console only)")


async def drain(state: RelayState, deadline_s: float) -> None:
    """Refuse new streams, let calls end by themselves until the deadline, then close them."""
    state.draining = True
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while state.calls and loop.time() < end:  # noqa: ASYNC110 - calls end on their own; poll is cheap
        await asyncio.sleep(min(0.1, max(0.0, end - loop.time())))
    for handle in list(state.calls.values()):
        log.info("closing call for shutdown", extra={"call_sid": handle.bridge.call_sid})
        await handle.owner.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
    pending = list(state.handlers) + list(state.background)
    if pending:
        await asyncio.wait(pending, timeout=state.settings.sync_flush_deadline_s + 5)
