"""Pure: the token and transcription counts one call's model sessions bill, read from the
usage objects the Realtime API sends.

`response.done` carries `response.usage` (field names as in the openai SDK's
`RealtimeResponseUsage`):

    {"input_tokens", "output_tokens",
     "input_token_details": {"text_tokens", "audio_tokens", "cached_tokens",
                             "cached_tokens_details": {"text_tokens", "audio_tokens"}},
     "output_token_details": {"text_tokens", "audio_tokens"}}

Cached tokens are a subset of the input tokens, so the billed kinds are
`text_in = text_tokens − cached text`, `audio_in = audio_tokens − cached audio` (uncached, as
billed) and the cached counts themselves.

`conversation.item.input_audio_transcription.completed` carries `usage`, either
`{"type": "duration", "seconds"}` or `{"type": "tokens", "input_tokens", "output_tokens",
"input_token_details": {"text_tokens", "audio_tokens"}}`.

The parsers never raise: a usage object that cannot be read whole is refused with a reason
(`Refused`), and the caller counts it. A usage is taken whole or not at all, so a half-read
object never skews the totals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

KINDS: Final = ("audio_in", "audio_in_cached", "text_in", "text_in_cached", "text_out", "audio_out")
"""The six billed token kinds, in the order of the summary line and the metrics' `kind` label."""


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Tokens of one response, one model or one call, by billed kind. `audio_in` and `text_in`
    are uncached input (input − cached)."""

    audio_in: int = 0
    audio_in_cached: int = 0
    text_in: int = 0
    text_in_cached: int = 0
    text_out: int = 0
    audio_out: int = 0

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(*(getattr(self, k) + getattr(other, k) for k in KINDS))

    @property
    def input_tokens(self) -> int:
        return self.audio_in + self.audio_in_cached + self.text_in + self.text_in_cached

    @property
    def cached_tokens(self) -> int:
        return self.audio_in_cached + self.text_in_cached

    @property
    def output_tokens(self) -> int:
        return self.text_out + self.audio_out

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in KINDS}


assert tuple(f.name for f in fields(TokenCounts)) == KINDS


@dataclass(frozen=True, slots=True)
class TranscriptionCounts:
    """What input transcription billed: seconds of audio (duration-billed models) and tokens
    (token-billed models)."""

    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __add__(self, other: TranscriptionCounts) -> TranscriptionCounts:
        return TranscriptionCounts(
            self.seconds + other.seconds,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.requests + other.requests,
        )


@dataclass(frozen=True, slots=True)
class Refused:
    """A usage object that was not counted, and why (a short label for a counter)."""

    reason: str


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _count(obj: Mapping[str, object], key: str, *, required: bool = True) -> int:
    """A non-negative int field; a missing optional field is 0. `bool` is not a count."""
    if key not in obj or obj[key] is None:
        if required:
            raise _Bad("missing_field")
        return 0
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad("not_int")
    if value < 0:
        raise _Bad("negative")
    return value


def _object(obj: Mapping[str, object], key: str) -> Mapping[str, object] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Bad("not_object")
    return value


def parse_response_usage(usage: object) -> TokenCounts | Refused:
    """`response.done`'s `response.usage` → billed counts, or why it was refused."""
    try:
        return _response_usage(usage)
    except _Bad as exc:
        return Refused(exc.reason)


def _response_usage(usage: object) -> TokenCounts:
    if not isinstance(usage, Mapping):
        raise _Bad("not_object")
    input_tokens = _count(usage, "input_tokens")
    output_tokens = _count(usage, "output_tokens")
    details_in = _object(usage, "input_token_details")
    details_out = _object(usage, "output_token_details")
    # Without the details the split between text and audio (8× apart in price) is unknown:
    # refuse rather than guess, unless there is nothing to split.
    if details_in is None:
        if input_tokens:
            raise _Bad("missing_details")
        details_in = {}
    if details_out is None:
        if output_tokens:
            raise _Bad("missing_details")
        details_out = {}
    text = _count(details_in, "text_tokens", required=bool(input_tokens))
    audio = _count(details_in, "audio_tokens", required=bool(input_tokens))
    cached = _count(details_in, "cached_tokens", required=False)
    cached_details = _object(details_in, "cached_tokens_details")
    if cached_details is None:
        if cached:
            raise _Bad("missing_details")
        cached_details = {}
    cached_text = _count(cached_details, "text_tokens", required=False)
    cached_audio = _count(cached_details, "audio_tokens", required=False)
    if cached_text > text or cached_audio > audio:
        raise _Bad("inconsistent")
    # Cached image tokens may make the total larger than text + audio, never smaller.
    if details_in.get("cached_tokens") is not None and cached_text + cached_audio > cached:
        raise _Bad("inconsistent")
    text_out = _count(details_out, "text_tokens", required=bool(output_tokens))
    audio_out = _count(details_out, "audio_tokens", required=bool(output_tokens))
    return TokenCounts(
        audio_in=audio - cached_audio,
        audio_in_cached=cached_audio,
        text_in=text - cached_text,
        text_in_cached=cached_text,
        text_out=text_out,
        audio_out=audio_out,
    )


def parse_transcription_usage(usage: object) -> TranscriptionCounts | Refused:
    """A transcription's `usage` → counts (one request), or why it was refused."""
    try:
        return _transcription_usage(usage)
    except _Bad as exc:
        return Refused(exc.reason)


def _transcription_usage(usage: object) -> TranscriptionCounts:
    if not isinstance(usage, Mapping):
        raise _Bad("not_object")
    kind = usage.get("type")
    if kind == "duration":
        seconds = usage.get("seconds")
        if seconds is None:
            raise _Bad("missing_field")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise _Bad("not_number")
        if not math.isfinite(seconds) or seconds < 0:
            raise _Bad("negative")
        return TranscriptionCounts(seconds=float(seconds), requests=1)
    if kind == "tokens":
        return TranscriptionCounts(
            input_tokens=_count(usage, "input_tokens"), output_tokens=_count(usage, "output_tokens"), requests=1
        )
    raise _Bad("unknown_type")
