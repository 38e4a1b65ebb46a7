"""Network failures are named by host and root cause, however the SDK wrapped them."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp
import pytest

from sync_publisher.network import describe_failure


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("connect failed") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            socket.gaierror(-2, "Name or service not known"),
            "api.example: DNS lookup failed (Name or service not known)",
        ),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "api.example: connection refused"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "api.example: connection reset"),
        (TimeoutError(), "api.example: timed out"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "api.example: network unreachable"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "api.example: TLS failed"),
        (ValueError("odd"), "api.example: RuntimeError: connect failed"),
    ],
)
def test_the_root_cause_is_named_through_wrappers(exc: BaseException, expected: str) -> None:
    assert describe_failure(_wrapped(exc), "api.example").startswith(expected)


async def test_aiohttp_records_the_host_it_could_not_reach() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://127.0.0.1:{port}/")
    assert describe_failure(caught.value, "ignored.example") == f"127.0.0.1:{port}: connection refused"


def test_without_a_host_the_cause_alone() -> None:
    assert describe_failure(TimeoutError()) == "timed out"
