"""Pure: the price table (USD list prices per model) and what a count costs under it.

The table is TOML text (the bundled `prices.toml`, or an operator's file in the same shape):

    taken = "2026-12-05"            # the day the list prices were read
    source = "https://…/pricing"    # where
    currency = "USD"

    [realtime."gpt-realtime-1.5"]   # USD per 1M tokens, every kind of `counts.KINDS`
    source = "https://…"
    audio_in = 32.0
    audio_in_cached = 0.40
    text_in = 4.0
    text_in_cached = 0.40
    text_out = 16.0
    audio_out = 64.0

    [transcription."gpt-transcribe"]     # billed by audio duration
    per_minute = 0.0045
    [transcription."gpt-4o-transcribe"]  # billed by tokens, USD per 1M
    input_per_1m = 2.5
    output_per_1m = 10.0

`load_prices(text)` validates the whole file (a bad file fails at startup, not mid-call). A
model missing from the table has no price: its cost is `None`, never a guess. A dated
snapshot name (`…-2025-08-28`) falls back to its alias's price.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .counts import KINDS, TokenCounts, TranscriptionCounts

PER_MILLION = 1_000_000.0
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")

Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_P = TypeVar("_P")


class PriceFileError(ValueError):
    """The price file cannot be used; the message says where and why."""


class RealtimePrice(BaseModel):
    """USD per 1M tokens for each billed kind of a Realtime model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = ""
    audio_in: Price
    audio_in_cached: Price
    text_in: Price
    text_in_cached: Price
    text_out: Price
    audio_out: Price

    def cost(self, counts: TokenCounts) -> float:
        total: float = sum(float(getattr(counts, k)) * float(getattr(self, k)) for k in KINDS)
        return total / PER_MILLION


class TranscriptionPrice(BaseModel):
    """A transcription model is billed per minute of audio, or per 1M input and output tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = ""
    per_minute: Price | None = None
    input_per_1m: Price | None = None
    output_per_1m: Price | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> TranscriptionPrice:
        by_tokens = self.input_per_1m is not None and self.output_per_1m is not None
        half_tokens = (self.input_per_1m is None) != (self.output_per_1m is None)
        if half_tokens or (self.per_minute is None and not by_tokens):
            raise ValueError("give per_minute, or both input_per_1m and output_per_1m")
        return self

    def cost(self, counts: TranscriptionCounts) -> float | None:
        """`None` when the usage came in a unit this price does not cover (tokens for a
        per-minute model or the other way round)."""
        total = 0.0
        if counts.seconds:
            if self.per_minute is None:
                return None
            total += counts.seconds / 60.0 * self.per_minute
        if counts.input_tokens or counts.output_tokens:
            if self.input_per_1m is None or self.output_per_1m is None:
                return None
            total += (counts.input_tokens * self.input_per_1m + counts.output_tokens * self.output_per_1m) / PER_MILLION
        return total


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    taken: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    source: str
    currency: str = Field(pattern="^USD$")
    realtime: dict[str, RealtimePrice] = Field(default_factory=dict)
    transcription: dict[str, TranscriptionPrice] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PriceTable:
    taken: str
    source: str
    realtime: Mapping[str, RealtimePrice]
    transcription: Mapping[str, TranscriptionPrice]

    def realtime_price(self, model: str) -> RealtimePrice | None:
        return _lookup(self.realtime, model)

    def transcription_price(self, model: str) -> TranscriptionPrice | None:
        return _lookup(self.transcription, model)

    def token_cost(self, model: str, counts: TokenCounts) -> float | None:
        """USD for these tokens on this Realtime model; `None` for a model without a price."""
        price = self.realtime_price(model)
        return None if price is None else price.cost(counts)

    def transcription_cost(self, model: str, counts: TranscriptionCounts) -> float | None:
        price = self.transcription_price(model)
        return None if price is None else price.cost(counts)

    def unknown(self, realtime: Iterable[str] = (), transcription: Iterable[str] = ()) -> list[str]:
        """The models without a price, for the one startup warning."""
        missing = [m for m in realtime if self.realtime_price(m) is None]
        missing += [m for m in transcription if self.transcription_price(m) is None and m not in missing]
        return missing


def _lookup(table: Mapping[str, _P], model: str) -> _P | None:
    if model in table:
        return table[model]
    alias = _SNAPSHOT.sub("", model)
    return table.get(alias) if alias != model else None


def load_prices(text: str, *, origin: str = "prices") -> PriceTable:
    """Parse and validate a price file's text. Raises `PriceFileError` naming `origin`."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceFileError(f"{origin}: not TOML: {exc}") from None
    try:
        parsed = _PriceFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PriceFileError(f"{origin}: {where}: {first['msg']}") from None
    if not parsed.realtime and not parsed.transcription:
        raise PriceFileError(f"{origin}: no models")
    return PriceTable(parsed.taken, parsed.source, dict(parsed.realtime), dict(parsed.transcription))


def round_usd(value: float | None) -> float | None:
    """Costs in the summary line and records: micro-dollars are plenty."""
    return None if value is None or not math.isfinite(value) else round(value, 6)
