"""Twilio's media side for the fake Twilio: when a stream is created over REST, open its
WebSocket like Twilio does (signed upgrade to the stream's `wss://` URL, `connected`,
`start` with the stream parameters, 20 ms μ-law frames at real-time pace), and report the
stream's life to its status callback (signed form posts): `stream-started`, then
`stream-stopped` when the stream is stopped over REST or the call ends, or `stream-error`
when the relay side drops the socket.

Public URLs (what Twilio would dial) are mapped to loopback addresses through `dial_base`
and `callback_base`, so the relays behind a balancer see exactly Twilio's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.request_validator import RequestValidator

from relay.twilio.media import Media, Start, encode_connected, encode_media, encode_start, encode_stop

FRAME = 160  # 20 ms of 8 kHz μ-law


@dataclass
class DialedStream:
    sid: str
    call_sid: str
    name: str | None
    opened_at: float = 0.0
    ended_at: float | None = None
    end: str = ""  # "stopped" (REST or call end), "error" (the relay side dropped it), "refused"
    frames_sent: int = 0
    close_code: int | None = None


@dataclass
class MediaDialer:
    auth_token: str
    dial_base: str  # ws://127.0.0.1:PORT: where wss://public/... is really reached
    callback_base: str  # http://127.0.0.1:PORT: where https://public/... is really reached
    audio: bytes = b"\xff" * 8000  # looped; μ-law silence by default
    streams: dict[str, DialedStream] = field(default_factory=dict)
    callbacks: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _stop: dict[str, asyncio.Event] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    def dial(self, resource: dict[str, Any], form: dict[str, str]) -> None:
        stream = DialedStream(resource["sid"], resource["call_sid"], resource.get("name"))
        self.streams[stream.sid] = stream
        self._stop[stream.sid] = asyncio.Event()
        task = asyncio.create_task(self._run(stream, resource, form), name=f"dial-{stream.sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self, sid: str) -> None:
        """The stream was stopped over REST, or its call ended: Twilio sends `stop`."""
        event = self._stop.get(sid)
        if event is not None:
            event.set()

    def live(self) -> list[DialedStream]:
        return [s for s in self.streams.values() if s.ended_at is None]

    async def aclose(self) -> None:
        for event in self._stop.values():
            event.set()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit: every stream holds its connection for the whole call.
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=5)
            )
        return self._session

    async def _run(self, stream: DialedStream, resource: dict[str, Any], form: dict[str, str]) -> None:
        public = form["Url"]
        path = urlsplit(public).path
        parameters = {
            form[f"Parameter{i}.Name"]: form.get(f"Parameter{i}.Value", "")
            for i in range(1, 100)
            if f"Parameter{i}.Name" in form
        }
        signature = RequestValidator(self.auth_token).compute_signature(public, {})
        callback = form.get("StatusCallback")
        stopped = self._stop[stream.sid]
        try:
            ws = await self._client().ws_connect(
                self.dial_base + path, headers={"X-Twilio-Signature": signature}, autoping=True, heartbeat=None
            )
        except (aiohttp.ClientError, OSError) as exc:
            stream.end, stream.ended_at = "refused", time.monotonic()
            resource["status"] = "stopped"
            await self._report(callback, stream, "stream-error", f"Stream - WebSocket - Handshake Error ({exc})")
            return
        stream.opened_at = time.monotonic()
        await self._report(callback, stream, "stream-started")
        start = Start(stream.call_sid, stream.sid, resource["account_sid"], ("inbound",), MappingProxyType(parameters))
        error: str | None = None
        try:
            await ws.send_str(encode_connected())
            await ws.send_str(encode_start(start, sequence_number=1))
            closed = asyncio.create_task(self._until_closed(ws))
            began = time.monotonic()
            n = 0
            while not stopped.is_set() and not closed.done():
                offset = (n * FRAME) % len(self.audio)
                payload = self.audio[offset : offset + FRAME].ljust(FRAME, b"\xff")
                await ws.send_str(encode_media(Media("inbound", payload, n * 20), stream_sid=stream.sid, chunk=n + 1))
                n += 1
                stream.frames_sent = n
                delay = began + n * 0.02 - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stopped.wait()), delay)
            if closed.done():
                error = "Stream - WebSocket - Connection Broken Pipe"
            else:
                await ws.send_str(encode_stop(stream_sid=stream.sid, call_sid=stream.call_sid))
                await ws.close()
                closed.cancel()
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            error = "Stream - WebSocket - Connection Broken Pipe"
        stream.close_code = ws.close_code
        stream.ended_at = time.monotonic()
        resource["status"] = "stopped"
        if error is not None:
            stream.end = "error"
            await self._report(callback, stream, "stream-error", error)
        else:
            stream.end = "stopped"
            await self._report(callback, stream, "stream-stopped")

    @staticmethod
    async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _ in ws:
            pass

    async def _report(self, url: str | None, stream: DialedStream, event: str, error: str = "") -> None:
        if not url:
            return
        form = {
            "AccountSid": "AC" + "1" * 32,
            "CallSid": stream.call_sid,
            "StreamSid": stream.sid,
            "StreamName": stream.name or stream.sid,
            "StreamEvent": event,
            "StreamError": error,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        signature = RequestValidator(self.auth_token).compute_signature(url, form)
        self.callbacks.append((time.monotonic(), event, form))
        target = self.callback_base + urlsplit(url).path
        for _ in range(3):  # through the balancer: a relay going away may drop one attempt
            try:
                async with self._client().post(target, data=form, headers={"X-Twilio-Signature": signature}) as r:
                    if r.status < 500:
                        return
            except (aiohttp.ClientError, OSError, RuntimeError):  # RuntimeError: shutting down
                pass
            await asyncio.sleep(0.2)
