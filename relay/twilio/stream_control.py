"""Start and stop a call's assist stream over the REST Streams API: the one path used by
`/stream`, `/calls/{CallSid}/assist` and TaskRouter.

The stream is named `assist_{CallSid}` and points at `wss://…/ws/{CallSid}`, so a second
start for the same call (plugin and TaskRouter, or a re-delivered event) is refused by
Twilio as a duplicate name and reported as `already_running`, never a second stream.
Stopping a stream that is not running is `already_stopped`. Twilio's errors come back as
an outcome with their status and code (SDK exceptions are translated here); 429 and 5xx
are retried with backoff when the caller asks for retries.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioRestException

from relay.cluster.directory import CallDirectory, LocalDirectory
from relay.settings import Settings
from sync_publisher.backoff import backoff_delay
from sync_publisher.network import describe_failure

if TYPE_CHECKING:
    from twilio.rest import Client

log = logging.getLogger("relay.streams")


def stream_name(call_sid: str) -> str:
    return f"assist_{call_sid}"


class Result(enum.Enum):
    STARTED = "started"
    ALREADY_RUNNING = "already_running"
    STOPPED = "stopped"
    ALREADY_STOPPED = "already_stopped"
    NOT_CONFIGURED = "not_configured"
    CALL_NOT_FOUND = "call_not_found"  # 404
    CALL_NOT_IN_PROGRESS = "call_not_in_progress"  # 21220, 409
    TWILIO_FAILED = "twilio_failed"  # 429, 5xx (after retries)
    REFUSED = "refused"  # another 4xx
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    result: Result
    stream_sid: str | None = None
    status: int | None = None  # Twilio's HTTP status, when it answered an error
    code: int | None = None  # Twilio's error code
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.result in (Result.STARTED, Result.ALREADY_RUNNING, Result.STOPPED, Result.ALREADY_STOPPED)


class StreamControl:
    def __init__(
        self,
        client: Client | None,
        settings: Settings,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 4.0,
        seed: int | None = None,
        directory: CallDirectory | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        # Remembers the streams started here, with their parameters, so a stream-error
        # callback reaching any replica can start them again (`restart`).
        self._directory = directory or LocalDirectory()
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._rng = random.Random(seed)

    async def start(
        self, call_sid: str, parameters: dict[str, str] | None = None, *, retries: int = 0
    ) -> StreamOutcome:
        """Start assist on the call; `parameters` ride along as the stream's custom parameters."""
        settings = self._settings
        ws_url = settings.media_ws_public_url(f"/ws/{call_sid}")
        callback = settings.http_public_url("/twilio/stream-status")
        client = self._client
        if client is None or ws_url is None or callback is None:
            return StreamOutcome(Result.NOT_CONFIGURED)
        arguments: dict[str, str] = {}
        for i, (name, value) in enumerate((parameters or {}).items(), 1):
            arguments[f"parameter{i}_name"] = name
            arguments[f"parameter{i}_value"] = value

        async def create() -> StreamOutcome:
            stream = await client.calls(call_sid).streams.create_async(
                url=ws_url,
                name=stream_name(call_sid),
                track=settings.stream_track,
                status_callback=callback,
                status_callback_method="POST",
                **arguments,
            )
            return StreamOutcome(Result.STARTED, stream_sid=stream.sid)

        outcome = await self._with_retries("start", call_sid, create, retries)
        if outcome.result in (Result.STARTED, Result.ALREADY_RUNNING):
            await self._directory.want(call_sid, dict(parameters or {}))
        if outcome.result is Result.STARTED:
            log.info("assist stream started", extra={"call_sid": call_sid, "stream_sid": outcome.stream_sid})
        elif outcome.result is Result.ALREADY_RUNNING:
            log.info("assist already running for the call", extra={"call_sid": call_sid})
        return outcome

    async def stop(self, call_sid: str, *, retries: int = 0) -> StreamOutcome:
        client = self._client
        if client is None:
            return StreamOutcome(Result.NOT_CONFIGURED)

        async def update() -> StreamOutcome:
            await client.calls(call_sid).streams(stream_name(call_sid)).update_async(status="stopped")
            return StreamOutcome(Result.STOPPED)

        # Before asking: the stream-stopped callback this causes must not restart it.
        await self._directory.unwant(call_sid)

        outcome = await self._with_retries("stop", call_sid, update, retries)
        if outcome.result is Result.STOPPED:
            log.info("assist stream stopped", extra={"call_sid": call_sid})
        return outcome

    async def restart(self, call_sid: str, dead_stream_sid: str | None) -> StreamOutcome | None:
        """Twilio says the call's stream errored or stopped: start it again when the relay
        started it, nobody stopped it on purpose, and no newer stream feeds the call. None
        when no restart is due."""
        directory = self._directory
        parameters = await directory.wanted(call_sid)
        if parameters is None:
            return None
        current = await directory.owner_stream(call_sid)
        if current is not None and dead_stream_sid and current != dead_stream_sid:
            return None  # a newer stream already took the call over
        outcome = await self.start(call_sid, parameters, retries=2)
        started = outcome.result is Result.STARTED
        log.info(
            "assist stream restarted" if started else "assist stream not restarted",
            extra={"call_sid": call_sid, "dead_stream_sid": dead_stream_sid, "result": outcome.result.value},
        )
        if outcome.result in (Result.CALL_NOT_FOUND, Result.CALL_NOT_IN_PROGRESS):
            await directory.unwant(call_sid)  # the call is over
        return outcome

    async def _with_retries(
        self, action: str, call_sid: str, attempt: Callable[[], Awaitable[StreamOutcome]], retries: int
    ) -> StreamOutcome:
        host = urlsplit(self._settings.twilio_api_base_url).netloc
        for n in range(1, retries + 2):
            try:
                outcome: StreamOutcome = await attempt()
                return StreamOutcome(outcome.result, outcome.stream_sid, attempts=n)
            except TwilioRestException as exc:
                outcome = _translate(action, exc)
            except Exception as exc:  # transport: DNS, refused, timeout
                log.error(
                    f"stream {action} failed: Twilio unreachable",
                    extra={"call_sid": call_sid, "error": describe_failure(exc, host)},
                )
                outcome = StreamOutcome(Result.UNREACHABLE)
            outcome = StreamOutcome(outcome.result, status=outcome.status, code=outcome.code, attempts=n)
            retryable = outcome.result in (Result.TWILIO_FAILED, Result.UNREACHABLE)
            if not retryable or n > retries:
                if not outcome.ok:
                    log.warning(
                        "stream control refused by Twilio" if outcome.status else "stream control failed",
                        extra={
                            "call_sid": call_sid,
                            "action": action,
                            "status": outcome.status,
                            "code": outcome.code,
                            "result": outcome.result.value,
                            "attempts": n,
                        },
                    )
                return outcome
            await asyncio.sleep(backoff_delay(n, initial_s=self._backoff[0], max_s=self._backoff[1], rng=self._rng))
        raise AssertionError("unreachable")


def _translate(action: str, exc: TwilioRestException) -> StreamOutcome:
    status, code = int(exc.status), exc.code
    if action == "start" and status == 400 and (code == 31941 or "already" in str(exc.msg).lower()):
        return StreamOutcome(Result.ALREADY_RUNNING, status=status, code=code)
    if action == "stop" and status == 404:  # stopping is idempotent: nothing running is success
        return StreamOutcome(Result.ALREADY_STOPPED, status=status, code=code)
    if status == 404:
        return StreamOutcome(Result.CALL_NOT_FOUND, status=status, code=code)
    if code == 21220 or status == 409:
        return StreamOutcome(Result.CALL_NOT_IN_PROGRESS, status=status, code=code)
    if status >= 500 or status == 429:
        return StreamOutcome(Result.TWILIO_FAILED, status=status, code=code)
    return StreamOutcome(Result.REFUSED, status=status, code=code)
