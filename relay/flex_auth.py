"""Flex token validation against Twilio's IAM endpoint (reference §C), via the twilio SDK.

The same request `twilio-flex-token-validator` sends: `POST {iam}/v1/Accounts/{AC}/Tokens/validate`
with JSON `{"token": …}` and the account's credentials. Only `valid: true` passes — the
npm package accepts any truthy value and never looks at the HTTP status; we do both.
Verdicts are cached briefly, keyed by a SHA-256 of the token (the token itself is never
kept or logged). IAM unreachable or failing denies with 503: it never allows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from twilio.rest import Client

from sync_publisher.network import describe_failure

from .errors import RelayError

log = logging.getLogger("relay.flex_auth")

MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class FlexIdentity:
    identity: str
    roles: tuple[str, ...]
    worker_sid: str | None


class FlexAuthError(RelayError):
    """`status` is the HTTP answer: 401 (not a valid token), 403 (role), 503 (IAM down)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FlexTokenValidator:
    def __init__(
        self,
        client: Client,
        *,
        account_sid: str,
        iam_base_url: str,
        cache_ttl_s: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = f"{iam_base_url.rstrip('/')}/v1/Accounts/{account_sid}/Tokens/validate"
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, FlexIdentity | FlexAuthError]] = OrderedDict()
        self.requests = 0

    async def validate(self, token: str) -> FlexIdentity:
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii() or any(c.isspace() for c in token):
            raise FlexAuthError(401, "malformed token")
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            verdict = cached[1]
            if isinstance(verdict, FlexAuthError):
                raise verdict
            return verdict
        verdict = await self._ask_iam(token)
        if not (isinstance(verdict, FlexAuthError) and verdict.status == 503):  # never cache an outage
            self._cache[key] = (now + self._ttl, verdict)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        if isinstance(verdict, FlexAuthError):
            raise verdict
        return verdict

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
