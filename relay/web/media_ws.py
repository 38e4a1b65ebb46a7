"""`WS /media` and `WS /ws/{callSid}`: the thin I/O shell around the parser and bridge.

Before the upgrade: draining or full → 503; bad or missing Twilio signature (or API key
for minimal clients) → 403. Nothing that is refused costs a model session.
After: this handler is the only reader of the socket. One timer per connection enforces
the start timeout, the idle timeout and the maximum call length.

Duplicate streams: a second stream for a call that already has a live bridge *replaces*
the first socket (closed with 4409) and feeds the same bridge and model session; it never
opens a second session.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from aiohttp import WSMsgType, web

from relay.assist.bridge import build_bridge
from relay.logs import call_sid_var, stream_sid_var
from relay.twilio.media import (
    CloseCode,
    Connected,
    Dtmf,
    Ignored,
    Mark,
    Media,
    MediaStreamParser,
    ProtocolViolation,
    Start,
    Stop,
    Unknown,
)
from relay.web.state import RELAY, CallHandle, RelayState

log = logging.getLogger("relay.media")


def _refuse(state: RelayState, status: int, reason: str, text: str) -> web.Response:
    state.stats.refusals[reason] += 1
    log.warning("media upgrade refused", extra={"status": status, "reason": reason})
    return web.Response(status=status, text=text)


def authorize_upgrade(state: RelayState, request: web.Request) -> tuple[int, str] | None:
    """None when the caller may upgrade, else (HTTP status, reason)."""
    settings = state.settings
    api_key = settings.media_api_key
    if api_key is not None:
        presented = request.headers.get(settings.media_api_key_header)
        if presented is not None:
            if hmac.compare_digest(presented.encode(), api_key.get_secret_value().encode()):
                return None
            return 403, "bad_api_key"
    validator = state.request_validator
    if validator is not None and settings.require_twilio_signature:
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            return 403, "missing_signature"
        url = settings.media_ws_public_url(request.path)
        if url is None or not validator.validate(url, {}, signature):
            return 403, "bad_signature"
        return None
    if api_key is not None:
        return 403, "missing_api_key"
    return None  # open mode (no credentials configured); a warning was logged at startup


async def media_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[RELAY]
    if state.draining:
        return _refuse(state, 503, "draining", "draining")
    denied = authorize_upgrade(state, request)
    if denied is not None:
        return _refuse(state, denied[0], denied[1], "forbidden")
    if state.open_connections >= state.settings.max_calls:
        # Every open socket counts, started or not: a socket holds resources from the upgrade.
        return _refuse(state, 503, "at_capacity", "at capacity")

    # No permessage-deflate: Twilio never offers it, and accepting it would let any peer make
    # the relay inflate every frame (CPU per frame, and a compressed frame far under the size
    # limit can expand far past it).
    ws = web.WebSocketResponse(max_msg_size=state.settings.max_message_bytes, autoping=True, compress=False)
    state.pending_upgrades += 1
    try:
        await ws.prepare(request)
    finally:
        state.pending_upgrades -= 1
    connection = MediaConnection(state, ws, request.match_info.get("callSid"))
    # The connection runs in its own task: each of the 50 wake-ups a second per track then
    # resumes a shallow coroutine chain instead of aiohttp's handler and middleware frames.
    task = asyncio.create_task(connection.run(), name="media-connection")
    state.handlers.add(task)
    task.add_done_callback(state.handlers.discard)
    # aiohttp cancels this handler when the peer goes away; the shielded connection task
    # lives on, sees the close on its own read, and ends the call.
    await asyncio.shield(task)
    return ws


class MediaConnection:
    """One Media Streams WebSocket: read loop, watchdog, dispatch."""

    def __init__(self, state: RelayState, ws: web.WebSocketResponse, path_call_sid: str | None) -> None:
        self.state = state
        self.ws = ws
        self.path_call_sid = path_call_sid
        settings = state.settings
        self.parser = MediaStreamParser(max_custom_params_bytes=settings.max_custom_params_bytes)
        self.handle: CallHandle | None = None
        self.opened_at = time.monotonic()
        self.last_media = self.opened_at
        self.started_at: float | None = None
        self.close_code: int = CloseCode.NORMAL
        self.close_reason = ""
        self.end_reason = "socket_closed"
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    # ------------------------------------------------------------------ watchdog

    def _arm(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.05, delay), self._check_deadlines)

    def _check_deadlines(self) -> None:
        settings = self.state.settings
        now = time.monotonic()
        if self.started_at is None:
            remaining = self.opened_at + settings.start_timeout_s - now
            if remaining <= 0:
                self._close_soon(CloseCode.START_TIMEOUT, "no start message in time", "start_timeout")
                return
            self._arm(remaining)
            return
        idle_left = self.last_media + settings.idle_timeout_s - now
        length_left = self.started_at + settings.max_call_s - now
        if length_left <= 0:
            self._close_soon(CloseCode.CALL_TOO_LONG, "maximum call length reached", "call_too_long")
        elif idle_left <= 0:
            self._close_soon(CloseCode.IDLE_TIMEOUT, "no media received in time", "idle_timeout")
        else:
            self._arm(min(idle_left, length_left))

    def _close_soon(self, code: CloseCode, reason: str, end_reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.close_code, self.close_reason, self.end_reason = code, reason, end_reason
        self.state.stats.violations[end_reason] += 1
        self.state.spawn(self.ws.close(code=code, message=reason.encode()), name="ws-close")

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        self._arm(self.state.settings.start_timeout_s)
        try:
            await self._read_loop()
        except ProtocolViolation as violation:
            self.state.stats.violations[violation.kind] += 1
            log.warning(
                "media stream closed for a protocol violation",
                extra={"kind": violation.kind, "close_code": int(violation.code)},
            )
            self.end_reason = "protocol_violation"
            await self.ws.close(code=violation.code, message=violation.reason.encode())
        except Exception:
            log.exception("media handler failed")
            self.end_reason = "internal_error"
            await self.ws.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error")
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if not self.ws.closed:
                await self.ws.close(code=self.close_code, message=self.close_reason.encode())
            # Ending the call (flushing the model side and Sync) must survive any
            # cancellation of this task, so it runs in a task of its own.
            ending = self.state.spawn(self._end_call(), name="end-call")
            await asyncio.shield(ending)

    async def _read_loop(self) -> None:
        ws, parser = self.ws, self.parser
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                event = parser.receive(msg.data)
                if type(event) is Media:
                    self.last_media = time.monotonic()
                    handle = self.handle
                    if handle is not None and handle.owner is ws:
                        handle.bridge.on_media(event)
                    continue
                if type(event) is Start:
                    await self._on_start(event)
                    continue
                if self._dispatch(event):
                    return
            elif kind is WSMsgType.BINARY:
                raise ProtocolViolation(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted", "binary_frame")
            elif kind is WSMsgType.ERROR:
                exc = ws.exception()
                code = getattr(exc, "code", None)
                if code == CloseCode.MESSAGE_TOO_BIG:
                    self.state.stats.violations["message_too_big"] += 1
                    self.end_reason = "protocol_violation"
                    log.warning("media stream closed: message too big", extra={"close_code": 1009})
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    def _dispatch(self, event: object) -> bool:
        """Handle a non-media event; True when the stream is over."""
        stats = self.state.stats
        if isinstance(event, Ignored):
            handle = self.handle
            if event.event == "media" and handle is not None and handle.owner is self.ws:
                handle.bridge.on_ignored_media(event.reason)  # a frame received and dropped
            else:
                stats.media_events[f"ignored_{event.event}_{event.reason}"] += 1
            return False
        if isinstance(event, Stop):
            stats.media_events["stop"] += 1
            self.end_reason = "stop"
            self.close_reason = "stream stopped"
            return True
        name = {Connected: "connected", Mark: "mark", Dtmf: "dtmf"}.get(type(event))
        if name is None and isinstance(event, Unknown):
            name = "unknown"
        stats.media_events[name or "other"] += 1
        if self.handle is not None and name:
            self.handle.bridge.count_event(name)
        return False

    async def _on_start(self, start: Start) -> None:
        state = self.state
        if self.path_call_sid is not None and self.path_call_sid != start.call_sid:
            raise ProtocolViolation(CloseCode.PROTOCOL_ORDER, "callSid differs from the URL", "call_sid_mismatch")
        self.started_at = time.monotonic()
        self.last_media = self.started_at
        if self._timer is not None:  # from now on the idle and length deadlines apply
            self._timer.cancel()
        settings = state.settings
        self._arm(min(settings.idle_timeout_s, settings.max_call_s))
        call_sid_var.set(start.call_sid)
        stream_sid_var.set(start.stream_sid)
        # Once per stream (never per frame): own the call among the replicas (a stream for it
        # elsewhere closes; this stream is now the one a stream-error must be about to
        # restart anything), learn how many bridges it had, and what it said lately.
        directory = state.directory
        incarnation = await directory.claim(start.call_sid, start.stream_sid or "")
        continues = incarnation > 0 and start.call_sid not in state.calls
        seed = await directory.recent_context(start.call_sid) if continues else []
        existing = state.calls.get(start.call_sid)  # after the awaits: another stream may have started it
        if existing is not None:
            self._adopt(existing, start)
            return
        state.stats.calls_started += 1
        if incarnation > 0:
            state.stats.calls_continued += 1
        bridge = build_bridge(
            start,
            settings=settings,
            prompts=state.prompts,
            connector=state.connector,
            channel=state.open_channel(start.call_sid),
            send_delays=state.send_delay,
            retriever=state.retriever,
            wrapup=state.wrapup,
            recorder=state.records.recorder(start.call_sid, incarnation) if state.records is not None else None,
            seed_context=seed,
            on_context=(lambda line: directory.add_context(start.call_sid, line)) if directory.shared else None,
        )
        self.handle = CallHandle(bridge=bridge, owner=self.ws)
        state.calls[start.call_sid] = self.handle
        log.info("call started", extra={"tracks": list(start.tracks), "minimal": start.minimal})

    def _adopt(self, existing: CallHandle, start: Start) -> None:
        """Twilio re-opened a stream for this call: take over the bridge, never a 2nd session."""
        state = self.state
        old = existing.owner
        existing.replaced_sockets.append(old)
        existing.owner = self.ws
        existing.bridge.adopt_stream(start)
        state.stats.streams_replaced += 1
        log.info("stream replaced by a newer stream for the same call")
        closing = old.close(code=CloseCode.REPLACED, message=b"replaced by a newer stream")
        state.spawn(closing, name="ws-close")
        self.handle = existing

    async def _end_call(self) -> None:
        handle = self.handle
        if handle is None or handle.owner is not self.ws:
            return  # never started, or a newer stream owns the call now
        state = self.state
        # Leave the live map at once (a new stream for this call starts afresh), but stay
        # visible to metrics and drain until the bridge has flushed.
        if state.calls.get(handle.bridge.call_sid) is handle:
            del state.calls[handle.bridge.call_sid]
        state.finishing.add(handle)
        if self.end_reason == "stop":
            # Twilio ended the stream (hang-up, or a stop asked for): no restart wanted, and
            # no replica owns the call any more.
            state.spawn(_forget(state, handle.bridge.call_sid), name="directory-release")
        if state.draining and self.end_reason == "socket_closed":
            self.end_reason = "server_shutdown"
        elif handle.ended_by is not None and self.end_reason == "socket_closed":
            self.end_reason = handle.ended_by  # the relay closed it (e.g. the task went to wrap-up)
        try:
            summary = await handle.bridge.finish(self.end_reason)
        finally:
            state.finishing.discard(handle)
            state.stats.finished.fold(handle.bridge)
        state.stats.calls_ended[self.end_reason] += 1
        state.recent_summaries.append(summary)
        for latency in handle.bridge.suggestion_latencies:
            state.metrics.suggestion_latency.observe(latency)
            state.suggestion_latency.add(latency)
        log.info("call summary", extra=summary)


async def _forget(state: RelayState, call_sid: str) -> None:
    await state.directory.unwant(call_sid)
    await state.directory.release(call_sid)
