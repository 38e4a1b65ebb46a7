"""The Sync client sends its form body pre-encoded (no aiohttp `FormData` per request): the
bytes must be those `FormData` would have sent, for any form the SDK builds."""

from __future__ import annotations

from aiohttp import FormData
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_publisher.twilio_http import form_body

# Twilio parameter names (aiohttp refuses control characters in a field name).
keys = st.from_regex(r"[A-Za-z][A-Za-z0-9.]{0,11}", fullmatch=True)
values = st.one_of(
    st.text(max_size=80),
    st.integers(),
    st.lists(st.text(max_size=10), max_size=3),
)


def aiohttp_body(data: dict[str, object]) -> bytes:
    payload = FormData(data)()
    return bytes(payload._value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_the_same_bytes_as_aiohttp(data: dict[str, object]) -> None:
    assert form_body(data) == aiohttp_body(data)


def test_a_sync_message_is_urlencoded() -> None:
    data = {"Data": '{"type": "suggestion", "text": "Café & more: 100% + tax"}'}
    body = form_body(data)
    assert body == aiohttp_body(data)
    assert body.startswith(b"Data=%7B%22type%22%3A+%22suggestion%22")
