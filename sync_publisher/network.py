"""Name a network failure for a log line or a status reason: the host and the root cause.

SDKs wrap the socket error (aiohttp's `ClientConnectorError`, websockets' handshake errors);
the operator needs "api.openai.com: DNS lookup failed", not "ClientConnectorError".
"""

from __future__ import annotations

import errno
import socket
import ssl

_UNREACHABLE = {errno.ENETUNREACH: "network unreachable", errno.EHOSTUNREACH: "host unreachable"}


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        inner = getattr(current, "os_error", None)  # aiohttp keeps the socket error here
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return chain


def _cause(exc: BaseException) -> str:
    for err in reversed(_causes(exc)):  # the root first
        detail = getattr(err, "strerror", None) or str(err) or type(err).__name__
        if isinstance(err, socket.gaierror):
            return f"DNS lookup failed ({detail})"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, ConnectionResetError):
            return "connection reset"
        if isinstance(err, ssl.SSLError):
            return f"TLS failed ({getattr(err, 'reason', None) or detail})"
        if isinstance(err, TimeoutError):
            return "timed out"
        if isinstance(err, OSError) and err.errno in _UNREACHABLE:
            return _UNREACHABLE[err.errno]
    message = str(exc)
    return f"{type(exc).__name__}: {message}"[:160] if message else type(exc).__name__


def describe_failure(exc: BaseException, host: str | None = None) -> str:
    """`host: cause`, e.g. `sync.twilio.com: connection refused`. The host is taken from the
    exception when the SDK recorded it (aiohttp does), else from the caller."""
    for err in _causes(exc):
        recorded = getattr(err, "host", None)
        if isinstance(recorded, str) and recorded:
            port = getattr(err, "port", None)
            host = f"{recorded}:{port}" if port not in (None, 80, 443) else recorded
            break
    cause = _cause(exc)
    return f"{host}: {cause}" if host else cause
