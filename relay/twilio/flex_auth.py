"""Flex token validation against Twilio's IAM endpoint (reference §C), via the twilio SDK.

The same request `twilio-flex-token-validator` sends: `POST {iam}/v1/Accounts/{AC}/Tokens/validate`
with JSON `{"token": …}` and the account's credentials. Only `valid: true` passes — the
npm package accepts any truthy value and never looks at the HTTP status; we do both.
Verdicts are cached briefly, keyed by a SHA-256 of the token (the token itself is never
kept or logged). IAM unreachable or failing denies with 503: it never allows.

IAM is asked only on a cache miss, and a source (the client's address, which the caller
passes) may cost at most `failure_limit` IAM requests that did not prove a valid token per
`failure_window_s`: past that it is answered 429 with a Retry-After, without asking IAM, so a
flood of made-up tokens costs Twilio nothing. A valid token never counts against its source
(many agents behind one NAT).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from twilio.rest import Client

from relay.errors import RelayError
from sync_publisher.network import describe_failure

log = logging.getLogger("relay.twilio.flex_auth")

MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class FlexIdentity:
    identity: str
    roles: tuple[str, ...]
    worker_sid: str | None


class FlexAuthError(RelayError):
    """`status` is the HTTP answer: 401 (not a valid token), 403 (role), 429 (too many
    invalid tokens from this source; `retry_after_s`), 503 (IAM down)."""

    def __init__(self, status: int, reason: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class _Denied:
    """A cached refusal: a fresh FlexAuthError is raised from it each time (a cached
    exception instance would carry every earlier raise in its traceback)."""

    status: int
    reason: str

    def error(self) -> FlexAuthError:
        return FlexAuthError(self.status, self.reason)


class _Window:
    """IAM requests a source made in its current window that did not prove a valid token."""

    __slots__ = ("ends", "used")

    def __init__(self, ends: float) -> None:
        self.ends = ends
        self.used = 0


class FlexTokenValidator:
    def __init__(
        self,
        client: Client,
        *,
        account_sid: str,
        iam_base_url: str,
        cache_ttl_s: float = 60.0,
        cache_size: int = 10_000,
        failure_limit: int = 10,
        failure_window_s: float = 60.0,
        sources_max: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = f"{iam_base_url.rstrip('/')}/v1/Accounts/{account_sid}/Tokens/validate"
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, FlexIdentity | _Denied]] = OrderedDict()
        self._failure_limit = failure_limit
        self._failure_window_s = failure_window_s
        self._sources_max = sources_max
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # bounded: oldest forgotten
        self._in_flight: dict[str, asyncio.Task[FlexIdentity | FlexAuthError]] = {}
        self.requests = 0
        self.rate_limited = 0

    async def validate(self, token: str, source: str | None = None) -> FlexIdentity:
        """`source`: who presents the token (the client's address); None is not limited."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii() or any(c.isspace() for c in token):
            raise FlexAuthError(401, "malformed token")
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            verdict = cached[1]
            if isinstance(verdict, _Denied):
                raise verdict.error()
            return verdict
        task = self._in_flight.get(key)
        if task is None:
            window = self._window(source, now)
            if window is not None:
                if window.used >= self._failure_limit:
                    self.rate_limited += 1
                    raise FlexAuthError(
                        429, "too many invalid Flex tokens; try again later", retry_after_s=math.ceil(window.ends - now)
                    )
                window.used += 1  # taken before the request: concurrent requests count too
            # One IAM request per token however many ask at once (a burst of one agent's
            # requests, or many behind one proxy, must not spend the source's allowance).
            task = asyncio.ensure_future(self._check(key, token, window))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        result = await asyncio.shield(task)  # a caller that goes away leaves the check running
        if isinstance(result, FlexIdentity):
            return result
        raise FlexAuthError(result.status, result.reason)  # a fresh instance for every caller

    async def _check(self, key: str, token: str, window: _Window | None) -> FlexIdentity | FlexAuthError:
        result = await self._ask_iam(token)
        now = self._clock()
        outage = isinstance(result, FlexAuthError) and result.status == 503
        if window is not None and (outage or isinstance(result, FlexIdentity)):
            window.used -= 1  # a valid token, or IAM being down, costs the source nothing
        if isinstance(result, FlexIdentity):
            self._remember(key, now, result)
        elif not outage:  # never cache an outage
            self._remember(key, now, _Denied(result.status, result.reason))
        return result

    def _remember(self, key: str, now: float, verdict: FlexIdentity | _Denied) -> None:
        self._cache[key] = (now + self._ttl, verdict)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    def _window(self, source: str | None, now: float) -> _Window | None:
        if source is None:
            return None
        window = self._windows.get(source)
        if window is None or window.ends <= now:
            window = self._windows[source] = _Window(now + self._failure_window_s)
        self._windows.move_to_end(source)
        while len(self._windows) > self._sources_max:
            self._windows.popitem(last=False)
        return window

    async def _ask_iam(self, token: str) -> FlexIdentity | FlexAuthError:
        self.requests += 1
        try:
            response = await self._client.request_async(
                "POST",
                self._url,
                data=orjson.dumps({"token": token}).decode(),
                headers={"Content-Type": "application/json", "Cache-Control": "no-cache"},
            )
        except Exception as exc:  # network, timeout: the boundary translates them all
            log.error(
                "flex token check failed: IAM unreachable",
                extra={"error": describe_failure(exc, urlsplit(self._url).netloc)},
            )
            return FlexAuthError(503, "token service unavailable")
        status = int(response.status_code)
        if status >= 500 or (status in (401, 403, 429) and not _looks_like_verdict(response.text)):
            log.error("flex token check failed: IAM answered an error", extra={"status": status})
            return FlexAuthError(503, "token service unavailable")
        try:
            body: Any = orjson.loads(response.text)
        except orjson.JSONDecodeError:
            return FlexAuthError(503, "token service answered garbage")
        if not isinstance(body, dict) or body.get("valid") is not True or status != 200:
            return FlexAuthError(401, "invalid or expired Flex token")
        identity = body.get("identity")
        if not isinstance(identity, str) or not identity:
            return FlexAuthError(401, "Flex token has no identity")
        roles = body.get("roles")
        worker = body.get("worker_sid")
        return FlexIdentity(
            identity=identity,
            roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
            worker_sid=worker if isinstance(worker, str) else None,
        )


def _looks_like_verdict(text: str) -> bool:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and "valid" in body
