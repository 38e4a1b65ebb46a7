"""Prometheus metrics. Hot-path counters are plain ints summed at scrape time.

Incrementing a prometheus_client Counter takes a lock; doing it 50×/s per track is
measurable. Bridges keep their own ints; a custom collector adds the live calls to the
totals folded in from finished calls whenever `/metrics` is scraped.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relay.model.link import LinkCounters
from relay.recent import RecentSamples

if TYPE_CHECKING:
    from relay.assist.bridge import CallBridge
    from relay.records.writer import RecordWriter
    from relay.taskrouter.driver import TaskRouterStats
    from relay.wrapup.service import WrapUpStats
    from sync_publisher import PublisherStats


@dataclass(slots=True)
class FinishedTotals:
    frames_in: int = 0
    frames_dropped: Counter[str] = field(default_factory=Counter)
    links: LinkCounters = field(default_factory=LinkCounters)  # every model link of every call
    suggestions: int = 0
    suggestions_suppressed: int = 0
    transcripts: int = 0
    # What the calls' model sessions billed (DESIGN §6a): (model, kind) → tokens; model → USD
    # (priced models only); transcription model → seconds; calls that passed their budget.
    model_tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    model_cost_usd: dict[str, float] = field(default_factory=dict)
    transcription_s: dict[str, float] = field(default_factory=dict)
    budget_exceeded: int = 0
    redactions: Counter[str] = field(default_factory=Counter)  # by entity
    pauses: Counter[str] = field(default_factory=Counter)  # paused, resumed, expired, ended

    def fold(self, bridge: CallBridge) -> None:
        add_bridge(self, bridge)


def add_bridge(totals: FinishedTotals, bridge: CallBridge) -> None:
    totals.frames_in += bridge.frames_in
    totals.frames_dropped.update(bridge.frames_dropped())
    totals.links.add(bridge.link_totals())
    totals.suggestions += bridge.suggestions
    totals.suggestions_suppressed += bridge.suggestions_suppressed
    totals.transcripts += bridge.transcripts
    usage = bridge.usage
    for model in usage.realtime_models():
        for kind, tokens in usage.tokens(model).as_dict().items():
            totals.model_tokens[(model, kind)] += tokens
    for model, cost in usage.costs_by_model(bridge.prices).items():
        totals.model_cost_usd[model] = totals.model_cost_usd.get(model, 0.0) + cost
    for model in usage.transcription_models():
        totals.transcription_s[model] = totals.transcription_s.get(model, 0.0) + usage.transcription(model).seconds
    totals.budget_exceeded += bridge.budget_exceeded
    totals.redactions.update(bridge.privacy.redactions)
    totals.pauses.update(bridge.privacy.pause_events)


@dataclass(slots=True)
class RelayStats:
    finished: FinishedTotals = field(default_factory=FinishedTotals)
    calls_started: int = 0
    calls_ended: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    media_events: Counter[str] = field(default_factory=Counter)
    stream_callbacks: Counter[str] = field(default_factory=Counter)
    flex_auth: Counter[str] = field(default_factory=Counter)
    streams_replaced: int = 0
    calls_continued: int = 0  # bridges opened for a call that had one before (here or elsewhere)
    knowledge_reloads: Counter[str] = field(default_factory=Counter)  # by outcome: ok, error


# The lag monitor samples every 20 ms: 500 samples are the last 10 s, enough for a p99
# that is not just the maximum.
LAG_WINDOW = 500
LAG_INTERVAL_S = 0.02
# Audio send delays: one sample per 100 ms batch sent (~5/s per call and track).
SEND_DELAY_WINDOW = 20_000
SUGGESTION_WINDOW = 2_000
_QUANTILES = (0.5, 0.99, 1.0)


class RelayCollector(Collector):
    def __init__(
        self,
        stats: RelayStats,
        live_bridges: Callable[[], Iterable[CallBridge]],
        publisher_stats: Callable[[], PublisherStats | None],
        loop_lag: RecentSamples | None = None,
        send_delay: RecentSamples | None = None,
        suggestion_latency: RecentSamples | None = None,
        knowledge_passages: Callable[[], int] = lambda: 0,
        wrapup_stats: Callable[[], WrapUpStats | None] = lambda: None,
        taskrouter_stats: Callable[[], TaskRouterStats | None] = lambda: None,
        records: Callable[[], RecordWriter | None] = lambda: None,
        directory_errors: Callable[[], Counter[str]] = Counter,
    ) -> None:
        self._records = records
        self._directory_errors = directory_errors
        self._taskrouter = taskrouter_stats
        self._wrapup = wrapup_stats
        self._loop_lag = loop_lag
        self._send_delay = send_delay
        self._suggestion_latency = suggestion_latency
        self._knowledge_passages = knowledge_passages
        self._stats = stats
        self._live = live_bridges
        self._publisher = publisher_stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        totals = copy.deepcopy(stats.finished)  # finished calls, plus the live ones below
        live = list(self._live())
        for bridge in live:
            add_bridge(totals, bridge)

        yield _gauge("relay_active_calls", "Calls with a live bridge", len(live))
        yield _counter("relay_calls_started", "Calls started", stats.calls_started)
        yield _labelled("relay_calls_ended", "Calls ended, by reason", "reason", stats.calls_ended)
        yield _counter("relay_frames_in", "Media frames received", totals.frames_in)
        yield _counter("relay_frames_forwarded", "Media frames forwarded to the model", totals.links.forwarded_frames)
        yield _labelled("relay_frames_dropped", "Media frames dropped, by reason", "reason", totals.frames_dropped)
        yield _counter("relay_realtime_appends", "input_audio_buffer.append events sent", totals.links.appends)
        yield _counter(
            "relay_realtime_merged_appends",
            "Appends that joined several queued batches because the sender had fallen behind",
            totals.links.merged_appends,
        )
        yield _counter("relay_realtime_audio_bytes", "Audio bytes sent to the model", totals.links.forwarded_bytes)
        yield _counter("relay_realtime_connects", "Model sessions opened", totals.links.connects)
        yield _counter("relay_realtime_connect_failures", "Failed model connects", totals.links.connect_failures)
        yield _counter("relay_realtime_reconnects", "Model reconnects after a lost session", totals.links.reconnects)
        yield _counter("relay_realtime_rollovers", "Planned session rollovers", totals.links.rollovers)
        yield _labelled("relay_realtime_errors", "Model errors, by code", "code", totals.links.errors)
        yield _counter("relay_suggestions", "Suggestions produced", totals.suggestions)
        yield _counter(
            "relay_suggestions_suppressed",
            "Suggestions not shown: the agent had already said what their passages say",
            totals.suggestions_suppressed,
        )
        yield _counter("relay_knowledge_tool_calls", "Knowledge searches the model made", totals.links.tool_calls)
        yield _counter(
            "relay_knowledge_tool_errors", "Knowledge searches refused with an error", totals.links.tool_errors
        )
        yield _counter("relay_transcripts", "Final transcripts produced", totals.transcripts)
        yield _labelled(
            "relay_redactions", "Entities masked before any text left a call, by entity", "entity", totals.redactions
        )
        yield _labelled(
            "relay_pauses", "Payment pauses, by event (paused, resumed, expired, ended)", "event", totals.pauses
        )
        yield _by_labels(
            "relay_model_tokens",
            "Tokens the Realtime sessions billed, by model and kind (audio_in and text_in are uncached input)",
            ("model", "kind"),
            {key: float(n) for key, n in totals.model_tokens.items()},
        )
        yield _by_labels(
            "relay_model_cost_usd",
            "What the model sessions billed at the price table (USD), by model; models without a price are left out",
            ("model",),
            {(model,): usd for model, usd in totals.model_cost_usd.items()},
        )
        yield _by_labels(
            "relay_transcription_seconds",
            "Seconds of audio input transcription billed, by transcription model",
            ("model",),
            {(model,): seconds for model, seconds in totals.transcription_s.items()},
        )
        yield _counter(
            "relay_calls_budget_exceeded",
            "Calls that passed RELAY_MAX_COST_PER_CALL_USD and went on with transcripts only",
            totals.budget_exceeded,
        )
        yield _labelled("relay_ws_refusals", "Media WebSocket upgrades refused, by reason", "reason", stats.refusals)
        yield _labelled(
            "relay_protocol_violations",
            "Connections closed for a protocol violation",
            "kind",
            stats.violations,
        )
        yield _labelled("relay_media_events", "Non-audio Media Streams events, by name", "event", stats.media_events)
        yield _labelled("relay_stream_callbacks", "Stream status callbacks, by event", "event", stats.stream_callbacks)
        yield _labelled("relay_flex_auth", "Flex token checks, by outcome", "outcome", stats.flex_auth)
        yield _labelled("relay_knowledge_reloads", "Knowledge reloads, by outcome", "outcome", stats.knowledge_reloads)
        yield _gauge("relay_knowledge_passages", "Knowledge passages in force", self._knowledge_passages())
        yield _counter(
            "relay_streams_replaced",
            "Streams replaced by a newer stream for the same call",
            stats.streams_replaced,
        )
        yield _counter(
            "relay_calls_continued",
            "Calls whose stream started again after an earlier bridge (restart, another replica)",
            stats.calls_continued,
        )
        yield _labelled(
            "relay_shared_state_errors",
            "Shared-state (Redis) operations that failed and fell back to this process's view",
            "operation",
            self._directory_errors(),
        )
        yield from _recent(
            "relay_event_loop_lag_recent_seconds",
            f"Event-loop lag over the last {LAG_WINDOW} samples (quantile 1 is the max)",
            self._loop_lag,
        )
        yield from _recent(
            "relay_audio_send_delay_recent_seconds",
            "From a batch's newest audio frame arriving to its append being written to the model's socket, "
            f"over the last {SEND_DELAY_WINDOW} batches (quantile 1 is the max)",
            self._send_delay,
        )
        yield from _recent(
            "relay_suggestion_latency_recent_seconds",
            "From the customer's speech_stopped to the suggestion handed to Sync, over the last "
            f"{SUGGESTION_WINDOW} suggestions of finished calls (quantile 1 is the max)",
            self._suggestion_latency,
        )
        wrapup = self._wrapup()
        if wrapup is not None:
            yield _labelled(
                "relay_wrapups", "Wrap-ups composed, by outcome (failed:<reason>)", "outcome", wrapup.results
            )
            yield _labelled("relay_wrapup_tokens", "Tokens the wrap-up model used, by kind", "kind", wrapup.tokens)
            yield _counter("relay_wrapup_requests", "Wrap-up model requests (retries included)", wrapup.requests)
            yield _counter("relay_wrapup_retries", "Wrap-up model requests retried", wrapup.retries)
            yield _labelled(
                "relay_wrapup_task_writes",
                "Wrap-ups written to TaskRouter tasks, by outcome",
                "outcome",
                wrapup.task_writes,
            )
            yield from _recent(
                "relay_wrapup_latency_recent_seconds",
                "From the call's end (model links closed) to its wrap-up composed (quantile 1 is the max)",
                wrapup.latency,
            )
        writer = self._records()
        if writer is not None:
            written = writer.stats
            yield _counter("relay_records_rows_written", "Call record rows committed", written.written)
            yield _counter("relay_records_batches", "Call record write transactions committed", written.batches)
            yield _counter(
                "relay_records_retries", "Call record batches retried (database unavailable)", written.retries
            )
            yield _labelled(
                "relay_records_dropped", "Call record rows not written, by reason", "reason", written.dropped
            )
            yield _gauge("relay_records_pending", "Call record rows queued, not yet written", writer.pending)
        taskrouter = self._taskrouter()
        if taskrouter is not None:
            yield _labelled("relay_taskrouter_events", "TaskRouter events received, by type", "type", taskrouter.events)
            yield _labelled(
                "relay_taskrouter_outcomes",
                "TaskRouter events by what came of them (duplicate, not_selected, late_after_end, …)",
                "outcome",
                taskrouter.outcomes,
            )
            yield _labelled(
                "relay_taskrouter_rest_calls",
                "REST calls TaskRouter events led to, by action:result (Twilio status on errors)",
                "action",
                taskrouter.actions,
            )
        publisher = self._publisher()
        if publisher is not None:
            yield _counter("relay_sync_published", "Sync messages accepted", publisher.published)
            yield _counter("relay_sync_retried", "Sync publish retries", publisher.retried)
            yield _counter("relay_sync_coalesced", "Partial messages merged before sending", publisher.coalesced)
            yield _counter("relay_sync_recreated", "Sync streams recreated after vanishing", publisher.recreated)
            yield _labelled("relay_sync_dropped", "Sync messages dropped, by reason", "reason", publisher.dropped)


def _counter(name: str, doc: str, value: float) -> Metric:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _gauge(name: str, doc: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _recent(name: str, doc: str, samples: RecentSamples | None) -> Iterator[Metric]:
    values = samples.quantiles(_QUANTILES) if samples is not None else None
    if values is None:
        return
    family = GaugeMetricFamily(name, doc, labels=["quantile"])
    for q, value in zip(_QUANTILES, values, strict=True):
        family.add_metric([str(q)], value)
    yield family


def _labelled(name: str, doc: str, label: str, values: Counter[str]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _by_labels(name: str, doc: str, labels: tuple[str, ...], values: dict[tuple[str, ...], float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


class Metrics:
    """The registry of one app: the custom collector plus two real histograms."""

    def __init__(self, collector: RelayCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.suggestion_latency = Histogram(
            "relay_suggestion_latency_seconds",
            "From speech_stopped to the suggestion being queued for Sync",
            buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13),
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "relay_event_loop_lag_seconds",
            "How late a periodic timer fires: the event loop's responsiveness",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )

        self.gc_pause = Histogram(
            "relay_gc_pause_seconds",
            "Time the event loop spent in CPython's cyclic garbage collector, per collection",
            ["generation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self._gc_started = 0.0

    def watch_gc(self) -> None:
        gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pause.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._gc_started)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def monitor_loop_lag(
    metrics: Metrics | None, interval_s: float = LAG_INTERVAL_S, record: RecentSamples | None = None
) -> None:
    """Measure how late `sleep(interval)` wakes up; runs until cancelled. Observed into
    `metrics`' histogram and/or `record` (the load bench's floor server keeps only the latter).

    The clock is `perf_counter`, not `loop.time()`: uvloop's loop clock ticks in whole
    milliseconds, which would round every lag to 0 or 1 ms steps.
    """
    clock = time.perf_counter
    while True:
        expected = clock() + interval_s
        await asyncio.sleep(interval_s)
        lag = max(0.0, clock() - expected)
        if metrics is not None:
            metrics.loop_lag.observe(lag)
        if record is not None:
            record.add(lag)
