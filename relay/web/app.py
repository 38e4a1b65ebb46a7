"""App factory: `create_app(settings, **adapters)` wires the relay together.

Adapters (model connector, Sync transport, Flex token validator, Twilio REST client) are
built from settings in a `cleanup_ctx` unless a caller passes its own, which is how tests
point the relay at loopback servers without mocks. What the context builds it closes, in
reverse order, through one `AsyncExitStack`, also when setup fails half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web
from twilio.request_validator import RequestValidator

from relay.bundled import DataDirs
from relay.cluster.directory import LocalDirectory, RedisDirectory
from relay.engines.local import LocalConnector
from relay.errors import ConfigurationError
from relay.knowledge.base import KnowledgeBase
from relay.knowledge.prompts import PromptLibrary
from relay.knowledge.retrieval import Retriever
from relay.model.session import RealtimeConnector
from relay.records.service import Records, open_store
from relay.settings import Settings
from relay.taskrouter.driver import DriverConfig, TaskRouterDriver
from relay.taskrouter.ledger import LocalTaskLedger, RedisTaskLedger, TaskLedger
from relay.taskrouter.policy import compile_policy
from relay.twilio.media import CloseCode
from relay.twilio.stream_control import StreamControl
from relay.twilio.task_attributes import TaskAttributeWriter
from relay.usage import PriceFileError, startup_prices
from relay.web import console, http_api, media_ws, records_api, wrapup_api
from relay.web.local_hub import LocalHub
from relay.web.metrics import monitor_loop_lag
from relay.web.stall_monitor import StallMonitor
from relay.web.state import RELAY, RelayState
from relay.wrapup.schema import Dispositions
from relay.wrapup.service import WrapUpService
from relay.wrapup.summarizers import ExtractiveSummarizer, OpenAISummarizer, Summarizer
from sync_publisher import PublisherConfig, SyncPublisher, SyncTransport
from sync_publisher.twilio_transport import TwilioSyncTransport, make_twilio_client

if TYPE_CHECKING:
    from twilio.rest import Client

    from relay.twilio.flex_auth import FlexTokenValidator

log = logging.getLogger("relay.web.app")

__all__ = ["create_app", "drain", "publisher_config", "reload_knowledge"]


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
    dirs = settings.data_dirs()
    prompts = PromptLibrary.load(dirs.prompts, settings.prompt)
    log.info(
        "prompts loaded",
        extra={"folder": str(dirs.prompts), "origin": dirs.prompts_origin, "prompts": list(prompts.names)},
    )
    knowledge = KnowledgeBase.load(dirs.knowledge)
    log.info(
        "knowledge loaded",
        extra={"folder": str(dirs.knowledge), "origin": dirs.knowledge_origin, "passages": len(knowledge.passages)},
    )
    wrapup_files = _load_wrapup_files(settings, dirs) if settings.wrapup else None
    try:  # the price table every call is billed at: a bad file stops the relay here, not mid-call
        openai = settings.effective_engine == "openai"
        startup_prices(
            settings.prices_file,
            realtime=[settings.realtime_model] if openai else [],
            transcription=[settings.transcription_model] if openai else [],
        )
    except PriceFileError as exc:
        raise ConfigurationError(f"RELAY_PRICES_FILE: {exc}") from None
    state = RelayState(settings=settings, prompts=prompts, retriever=Retriever(knowledge))
    if settings.twilio_auth_token is not None:
        state.request_validator = RequestValidator(settings.twilio_auth_token.get_secret_value())

    app = web.Application(client_max_size=1024 * 1024)
    app[RELAY] = state
    app.router.add_get("/media", media_ws.media_handler)
    app.router.add_get("/ws/{callSid}", media_ws.media_handler)
    http_api.add_routes(app)
    records_api.add_routes(app)
    wrapup_api.add_routes(app)
    console.add_routes(app)

    async def adapters(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await _set_up_adapters(
                state,
                stack,
                dirs,
                connector=connector,
                sync_transport=sync_transport,
                hub=hub,
                twilio_client=twilio_client,
                flex_validator=flex_validator,
            )
            if wrapup_files is not None:
                state.wrapup = _wrapup_service(state, stack, *wrapup_files)
            if settings.records:
                state.records = _records(settings)
                state.records.start()
                stack.push_async_callback(state.records.close, settings.sync_flush_deadline_s + 5)
            _warm_up(state)
            _warn_about_open_doors(settings, state)
            lag_task = asyncio.create_task(monitor_loop_lag(state.metrics, record=state.loop_lag))
            stack.callback(lag_task.cancel)
            state.metrics.watch_gc()
            stack.callback(state.metrics.unwatch_gc)
            if settings.stall_monitor_ms > 0:
                stalls = StallMonitor.start_on(state.metrics.registry, settings.stall_monitor_ms / 1000)
                stack.callback(stalls.stop)
            yield
            await drain(state, deadline_s=0.0)

    app.cleanup_ctx.append(adapters)
    return app


async def _set_up_adapters(
    state: RelayState,
    stack: contextlib.AsyncExitStack,
    dirs: DataDirs,
    *,
    connector: RealtimeConnector | None,
    sync_transport: SyncTransport | None,
    hub: LocalHub | None,
    twilio_client: Client | None,
    flex_validator: FlexTokenValidator | None,
) -> None:
    """Fill the state's adapters: the caller's where given, else built from settings (and
    registered on `stack` to be closed)."""
    settings = state.settings
    if connector is not None:
        state.connector = connector
    elif settings.effective_engine == "local":
        local = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: LocalConnector(
                state.retriever,
                min_score=settings.retrieval_min_score,
                min_confidence=settings.local_min_confidence,
                recognizer=settings.offline_recognizer,
                whisper_model=settings.whisper_model,
            ),
        )
        stack.push_async_callback(local.aclose)
        await local.recognizer.warm_up()
        state.connector = local
        log.info(
            "offline engine ready",
            extra={"recognizer": local.recognizer.name, "vocabulary": len(local.recognizer.vocabulary_words)},
        )
    elif settings.openai_api_key is not None:
        from relay.model.openai import OpenAIConnector

        openai_connector = OpenAIConnector(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            model=settings.realtime_model,
            connect_timeout_s=settings.realtime_connect_timeout_s,
            direct_frames=settings.append_writer == "frames",
        )
        stack.push_async_callback(openai_connector.aclose)
        openai_connector.warm_up()
        state.connector = openai_connector
    # else: the UnconfiguredConnector tells each call assist is unavailable.

    state.twilio_client = twilio_client
    if twilio_client is None and settings.twilio_configured:
        state.twilio_client = _twilio_client(settings)
        stack.push_async_callback(state.twilio_client.http_client.close)

    if settings.redis_url is not None:
        directory = RedisDirectory(
            settings.redis_url.get_secret_value(),
            replica_id=settings.replica_id,
            ttl_s=int(settings.max_call_s) + 3600,
        )
        try:
            await directory.open(on_takeover=state.take_over)
        except Exception as exc:
            await directory.aclose()
            raise ConfigurationError(f"RELAY_REDIS_URL: cannot reach Redis ({type(exc).__name__}: {exc})") from exc
        stack.push_async_callback(directory.aclose)
        state.directory = directory
        log.info("shared call state in Redis", extra={"replica": directory.replica_id})
    elif settings.replica_id is not None:
        state.directory = LocalDirectory(settings.replica_id)
    state.stream_control = StreamControl(state.twilio_client, settings, directory=state.directory)
    # Webhooks reach any replica: with Redis, what the TaskRouter driver knows is shared too.
    ledger: TaskLedger = LocalTaskLedger()
    if settings.redis_url is not None:
        ledger = RedisTaskLedger(settings.redis_url.get_secret_value(), ttl_s=int(settings.max_call_s) + 24 * 3600)
        stack.push_async_callback(ledger.aclose)
    state.taskrouter = TaskRouterDriver(
        DriverConfig(
            policy=compile_policy(settings.taskrouter_policy),
            stop_policy=compile_policy(settings.taskrouter_stop_policy),
            opt_out_attribute=settings.taskrouter_opt_out_attribute,
            stop_grace_s=settings.taskrouter_stop_grace_s,
        ),
        stream_control=state.stream_control,
        client=state.twilio_client,
        live_bridge=state.live_bridge,
        end_call=state.end_call,
        spawn=lambda coro: state.spawn(coro, name="taskrouter"),
        ledger=ledger,
    )
    await state.taskrouter.open()

    if sync_transport is None and settings.sync_configured and state.twilio_client is not None:
        assert settings.twilio_sync_service_sid is not None
        # Shares the client's HTTP session, which is closed above.
        sync_transport = TwilioSyncTransport(state.twilio_client, settings.twilio_sync_service_sid)
    if sync_transport is not None:
        state.sync = SyncPublisher(
            sync_transport,
            publisher_config(settings),
            settings.stream_name_for,
            # The directory keeps each stream's `seq`: in this process, or (several replicas)
            # leased from the counter they share.
            seq_source=state.directory.seq_source,
        )
    else:
        state.hub = hub or LocalHub()

    state.flex_validator = flex_validator
    if flex_validator is None and state.twilio_client is not None:
        from relay.twilio.flex_auth import FlexTokenValidator

        state.flex_validator = FlexTokenValidator(
            state.twilio_client,
            account_sid=settings.twilio_account_sid or "",
            iam_base_url=settings.twilio_iam_base_url,
            cache_ttl_s=settings.flex_verdict_cache_s,
        )


def _records(settings: Settings) -> Records:
    audio_dir = settings.data_dir.resolve() / "audio" if settings.record_audio else None
    store = open_store(settings.database)
    log.info(
        "call records",
        extra={"engine": store.engine, "audio": audio_dir is not None, "retention_days": settings.retention_days},
    )
    return Records(
        store, audio_dir=audio_dir, retention_days=settings.retention_days, queue_max=settings.records_queue_max
    )


def _load_wrapup_files(settings: Settings, dirs: DataDirs) -> tuple[str, Dispositions]:
    """The wrap-up's instructions and disposition codes, checked at startup (exit 2 if broken)."""
    folder = dirs.wrapup
    try:
        instructions = (folder / "summary.md").read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"{folder / 'summary.md'}: cannot read the wrap-up instructions ({exc.strerror})"
        ) from exc
    dispositions = Dispositions.load(folder / "dispositions.yaml")
    log.info(
        "wrap-up configured",
        extra={"folder": str(folder), "origin": dirs.wrapup_origin, "dispositions": list(dispositions.names)},
    )
    return instructions, dispositions


def _wrapup_service(
    state: RelayState, stack: contextlib.AsyncExitStack, instructions: str, dispositions: Dispositions
) -> WrapUpService:
    settings = state.settings
    summarizer: Summarizer
    if settings.effective_engine == "openai" and settings.openai_api_key is not None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url)
        stack.push_async_callback(client.close)
        summarizer = OpenAISummarizer(
            client,
            model=settings.summary_model,
            instructions=instructions,
            token_budget=settings.summary_token_budget,
            max_output_tokens=settings.summary_max_output_tokens,
            max_attempts=settings.summary_max_attempts,
            request_timeout_s=settings.summary_request_timeout_s,
        )
        summarizer.warm_up(dispositions.names)
    else:
        summarizer = ExtractiveSummarizer()
    writer = TaskAttributeWriter(state.twilio_client) if state.twilio_client is not None else None
    return WrapUpService(
        summarizer,
        dispositions,
        deadline_s=settings.summary_deadline_s,
        task_attribute=settings.task_summary_attribute,
        task_writer=writer,
        default_workspace_sid=settings.twilio_taskrouter_workspace_sid,
        spawn=lambda coro: state.spawn(coro, name="task-wrapup"),
    )


def _twilio_client(settings: Settings) -> Client:
    assert settings.twilio_account_sid is not None and settings.twilio_auth_token is not None
    return make_twilio_client(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        api_key=settings.twilio_api_key,
        api_secret=settings.twilio_api_secret.get_secret_value() if settings.twilio_api_secret else None,
        api_base_url=settings.twilio_api_base_url,
        sync_base_url=settings.twilio_sync_base_url,
        taskrouter_base_url=settings.twilio_taskrouter_base_url,
        timeout_s=settings.twilio_http_timeout_s,
    )


def _warm_up(state: RelayState) -> None:
    """First-call work done at startup instead: filter design (scipy imports lazily), the
    twilio SDK's lazily imported domains."""
    from relay.audio.dsp import design_upsampling_filter

    design_upsampling_filter(2)
    design_upsampling_filter(3)
    client = state.twilio_client
    if client is not None:
        _ = client.sync.v1.services
        _ = client.api.v2010.account


def _warn_about_open_doors(settings: Settings, state: RelayState) -> None:
    if state.request_validator is None and settings.media_api_key is None:
        log.warning("media endpoint is unauthenticated: set TWILIO_AUTH_TOKEN and RELAY_PUBLIC_URL")
    if not settings.redact:
        log.warning("redaction is off (RELAY_REDACT=false): card numbers and personal data are stored and sent as said")
    if state.sync is None:
        log.warning("Twilio Sync is not configured: messages go to the in-process hub (console only)")
        if console.console_opened(settings) and settings.console_token is None and state.flex_validator is None:
            # Reachable from elsewhere with no credential that could open it: the data routes refuse all.
            log.warning("console reachable from other machines: its data routes need RELAY_CONSOLE_TOKEN")


async def reload_knowledge(state: RelayState) -> bool:
    """Load the knowledge folder again (SIGHUP). A broken file is logged with its path and
    line and the knowledge in force stays; a good load replaces it for new turns at once.

    Reloads take turns, and the last one requested wins: one still waiting when a newer one
    is requested is skipped (the newer one reads the folder later)."""
    state.reloads_requested += 1
    ticket = state.reloads_requested
    async with state.reload_lock:
        if ticket != state.reloads_requested:
            state.stats.knowledge_reloads["superseded"] += 1
            return True
        return await _reload_knowledge(state)


async def _reload_knowledge(state: RelayState) -> bool:
    folder = state.settings.data_dirs().knowledge
    loop = asyncio.get_running_loop()
    try:
        knowledge = await loop.run_in_executor(None, KnowledgeBase.load, folder)
        retriever = await loop.run_in_executor(None, Retriever, knowledge)
        if isinstance(state.connector, LocalConnector):
            await state.connector.use_knowledge(retriever)
    except ConfigurationError as exc:
        state.stats.knowledge_reloads["error"] += 1
        log.error("knowledge reload failed; the previous knowledge stays", extra={"error": str(exc)})
        return False
    state.retriever = retriever
    state.stats.knowledge_reloads["ok"] += 1
    log.info("knowledge reloaded", extra={"folder": str(folder), "passages": len(knowledge.passages)})
    return True


DRAIN_CLOSE_DEADLINE_S = 5.0


async def drain(state: RelayState, deadline_s: float) -> None:
    """Refuse new streams (readiness turns 503 at once), let calls end by themselves until
    the deadline, then close them. The only writer of `state.draining`."""
    if not state.draining:
        state.draining = True
        log.info("draining", extra={"deadline_s": deadline_s, "calls": len(state.calls)})
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while state.calls and loop.time() < end:  # noqa: ASYNC110 - calls end on their own; poll is cheap
        await asyncio.sleep(min(0.1, max(0.0, end - loop.time())))
    handles = list(state.calls.values())
    for handle in handles:
        log.info("closing call for shutdown", extra={"call_sid": handle.bridge.call_sid})
    if handles:
        # All at once: each close waits for the peer's answer (up to aiohttp's 10 s), and a
        # peer that never answers must not hold up the others. Past the deadline the
        # transports are closed without it.
        closing = asyncio.gather(
            *(h.owner.close(code=CloseCode.GOING_AWAY, message=b"server shutting down") for h in handles),
            return_exceptions=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing, timeout=DRAIN_CLOSE_DEADLINE_S)
    pending = list(state.handlers) + list(state.background)
    if pending:
        # Ending calls flush Sync and write their wrap-up (each bounded by its own deadline).
        settings = state.settings
        wrapup_s = settings.summary_deadline_s if state.wrapup is not None else 0.0
        await asyncio.wait(pending, timeout=settings.sync_flush_deadline_s + wrapup_s + 5)
