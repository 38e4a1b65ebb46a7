"""The twilio SDK's async HTTP client, configured through its own hooks (no copy of its
`request()`, so the SDK's request/response logging and body handling stay as they are).

- Timeout: the SDK calls `request(timeout=None)`, and aiohttp reads `None` as *no timeout*;
  a call to a hung Twilio would wait forever. Each request runs under `asyncio.timeout`
  with the configured seconds, which also bounds connecting and reading the body.
- `Retry-After`: `TwilioRestException` carries no headers, so an aiohttp trace hook (the
  SDK's `trace_configs`) keeps the status and headers of the *current task's* last response
  in a ContextVar; the caller reads it after catching the error.
- The form body: the SDK hands aiohttp a dict, which aiohttp encodes through `FormData`, which
  first builds a `MultipartWriter` it then discards: a `uuid4`, so a `getrandom` system call
  that releases the GIL on the event loop, per request. `form_body` sends the same bytes
  (`urlencode`, as `FormData` does) without it: ~10 µs less per Sync message (measured).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDictProxy
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: CIMultiDictProxy[str]


last_response: contextvars.ContextVar[ResponseHead | None] = contextvars.ContextVar(
    "twilio_last_response", default=None
)


async def _record_response(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    # Runs inline in the requesting task, so the ContextVar is the caller's.
    last_response.set(ResponseHead(params.response.status, params.response.headers))


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_end.append(_record_response)
    return config


def form_body(data: dict[str, object]) -> bytes:
    """The bytes aiohttp's `FormData` would send for `data`, without building the form."""
    return urlencode(data, doseq=True).encode("ascii")


# twilio 9.x ships no type information (pyproject's mypy override), so its base class is Any;
# a twilio release with py.typed makes this ignore unused and mypy says so.
class RelayTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    def __init__(self, timeout: float = 10.0) -> None:
        super().__init__(pool_connections=True, timeout=timeout, trace_configs=[_trace_config()])
        self._timeout_s = timeout

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | str | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:
            # The SDK would build an aiohttp `BasicAuth`, which newer aiohttp deprecates: the
            # same header, built here.
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        last_response.set(None)  # never report a header of an earlier request
        # The SDK set the form's Content-Type for POST and PUT; the bytes go out as they are.
        # An empty form (a GET, a DELETE) and a body already encoded (the IAM check's JSON)
        # stay aiohttp's to handle, as before.
        body = form_body(data) if isinstance(data, dict) and data else data
        async with asyncio.timeout(timeout or self._timeout_s):
            response: Response = await super().request(
                method, url, params, body, headers, None, timeout or self._timeout_s, allow_redirects
            )
        return response


def retry_after_seconds() -> float | None:
    """`Retry-After` (seconds form) of the last response in this task, if any."""
    response = last_response.get()
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
