"""The twilio SDK's async HTTP client, adjusted at one seam.

- It passes a float `timeout` straight to aiohttp; we hand aiohttp a `ClientTimeout`.
- `TwilioRestException` carries no headers, so the last response of the *current task*
  is kept in a ContextVar: the caller can read `Retry-After` after catching the error.
"""

from __future__ import annotations

import base64
import contextvars
from typing import Any

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

last_response: contextvars.ContextVar[Response | None] = contextvars.ContextVar("twilio_last_response", default=None)


class RelayTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    def __init__(self, timeout: float = 10.0) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self._timeout_s = timeout

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        session = self.session
        assert session is not None
        headers = dict(headers or {})
        if auth:
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        async with session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=aiohttp.ClientTimeout(total=timeout or self._timeout_s),
            allow_redirects=allow_redirects,
        ) as http_response:
            text = await http_response.text()
            response = Response(http_response.status, text, http_response.headers)
        last_response.set(response)
        return response


def retry_after_seconds() -> float | None:
    """`Retry-After` (seconds form) of the last response in this task, if any."""
    response = last_response.get()
    if response is None or response.headers is None:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
