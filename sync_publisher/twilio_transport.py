"""Twilio Sync through the official SDK, behind the `SyncTransport` seam.

SDK and aiohttp exceptions are translated here into `sync_publisher.errors`, so the
publisher's retry policy never sees a vendor type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

from .errors import (
    SyncAlreadyExistsError,
    SyncError,
    SyncNotFoundError,
    SyncRejectedError,
    SyncRetryableError,
)
from .network import describe_failure
from .twilio_http import RelayTwilioHttpClient, retry_after_seconds

T = TypeVar("T")

_ALREADY_EXISTS_CODES = {54301}
_NOT_FOUND_CODES = {20404}


def make_twilio_client(
    *,
    account_sid: str,
    auth_token: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    api_base_url: str | None = None,
    sync_base_url: str | None = None,
    taskrouter_base_url: str | None = None,
    timeout_s: float = 10.0,
) -> Client:
    """An async-capable twilio `Client` whose domains point where the settings say."""
    if api_key and api_secret:
        client = Client(api_key, api_secret, account_sid, http_client=RelayTwilioHttpClient(timeout_s))
    else:
        client = Client(account_sid, auth_token, http_client=RelayTwilioHttpClient(timeout_s))
    # Each domain reads base_url at request time (reference B4): tests and edges override it.
    if api_base_url:
        client.api.base_url = api_base_url.rstrip("/")
    if sync_base_url:
        client.sync.base_url = sync_base_url.rstrip("/")
    if taskrouter_base_url:
        client.taskrouter.base_url = taskrouter_base_url.rstrip("/")
    return client


def translate(exc: BaseException) -> SyncError:
    """Map an SDK/transport exception to the publisher's error classes."""
    if isinstance(exc, TwilioRestException):
        status, code = int(exc.status), exc.code
        message = f"Twilio {status} {code}"
        if status == 429 or status >= 500:
            return SyncRetryableError(message, status=status, code=code, retry_after=retry_after_seconds())
        if status == 404 or code in _NOT_FOUND_CODES:
            return SyncNotFoundError(message, status=status, code=code)
        if status == 409 or code in _ALREADY_EXISTS_CODES:
            return SyncAlreadyExistsError(message, status=status, code=code)
        return SyncRejectedError(message, status=status, code=code)
    if isinstance(exc, TwilioServiceException):
        status = int(getattr(exc, "status", 0) or 0)
        code = getattr(exc, "code", None)
        if status == 429 or status >= 500:
            return SyncRetryableError("Twilio service error", status=status, code=code)
        return SyncRejectedError("Twilio service error", status=status, code=code)
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return SyncRetryableError(f"connection error: {describe_failure(exc)}")
    return SyncError(f"unexpected error: {type(exc).__name__}")


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except (TimeoutError, TwilioRestException, TwilioServiceException, aiohttp.ClientError, OSError) as exc:
        raise translate(exc) from exc


class TwilioSyncTransport:
    def __init__(self, client: Client, service_sid: str) -> None:
        self._client = client
        self._service = client.sync.v1.services(service_sid)

    async def create_stream(self, name: str, ttl: int) -> None:
        await _call(self._service.sync_streams.create_async(unique_name=name, ttl=ttl))

    async def set_stream_ttl(self, name: str, ttl: int) -> None:
        await _call(self._service.sync_streams(name).update_async(ttl=ttl))

    async def publish(self, name: str, data: str) -> None:
        # A str passes through the SDK unchanged, so the bytes sized by the publisher
        # are the bytes sent.
        await _call(self._service.sync_streams(name).stream_messages.create_async(data=data))

    async def aclose(self) -> None:
        await self._client.http_client.close()
