"""Pure: one call's model usage, per model, fed with the raw usage objects as they arrive.

The live call's wiring (not here) does, per model event:

    usage = CallUsage(model=settings.realtime_model)
    delta = usage.add_response(event_usage)                       # response.done
    delta = usage.add_transcription(event_usage, model=transcription_model)
    # delta is None when the object was refused (counted in usage.refused);
    # else it is what this event added: increment the metrics by it, priced with
    # prices.token_cost(model, delta) / prices.transcription_cost(model, delta).
    if budget and (usage.cost_usd(prices) or 0) > budget: ...     # the per-call budget
    summary["usage"] = usage.to_summary(prices)                   # at the call's end

Nothing here raises on what the network sends: hostile values are refused and counted.
"""

from __future__ import annotations

from collections import Counter

from .counts import (
    Refused,
    TokenCounts,
    TranscriptionCounts,
    parse_response_usage,
    parse_transcription_usage,
)
from .prices import PriceTable, round_usd

MAX_MODEL_NAME = 100  # a model name is a label on metrics: keep it bounded


class CallUsage:
    """Token and transcription counts for one call, by model."""

    def __init__(self, model: str) -> None:
        self.model = model  # the call's Realtime model: the summary's `model`
        self._tokens: dict[str, TokenCounts] = {}
        self._transcription: dict[str, TranscriptionCounts] = {}
        self.responses = 0
        self.refused: Counter[str] = Counter()  # reason → usage objects not counted

    # ------------------------------------------------------------------ feeding

    def add_response(self, usage: object, model: str | None = None) -> TokenCounts | None:
        """Count one `response.done`'s `response.usage`; the counts it added, or `None`."""
        name = self._name(self.model if model is None else model)
        if name is None:
            return None
        parsed = parse_response_usage(usage)
        if isinstance(parsed, Refused):
            self.refused[parsed.reason] += 1
            return None
        self._tokens[name] = self._tokens.get(name, TokenCounts()) + parsed
        self.responses += 1
        return parsed

    def add_transcription(self, usage: object, model: str) -> TranscriptionCounts | None:
        """Count one completed transcription's `usage`; the counts it added, or `None`."""
        name = self._name(model)
        if name is None:
            return None
        parsed = parse_transcription_usage(usage)
        if isinstance(parsed, Refused):
            self.refused[parsed.reason] += 1
            return None
        self._transcription[name] = self._transcription.get(name, TranscriptionCounts()) + parsed
        return parsed

    def _name(self, model: object) -> str | None:
        if not isinstance(model, str) or not model or len(model) > MAX_MODEL_NAME:
            self.refused["bad_model"] += 1
            return None
        return model

    # ------------------------------------------------------------------ reading

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def tokens(self, model: str | None = None) -> TokenCounts:
        """One model's tokens, or all Realtime models' together."""
        if model is not None:
            return self._tokens.get(model, TokenCounts())
        return sum(self._tokens.values(), TokenCounts())

    def transcription(self, model: str | None = None) -> TranscriptionCounts:
        if model is not None:
            return self._transcription.get(model, TranscriptionCounts())
        return sum(self._transcription.values(), TranscriptionCounts())

    def realtime_models(self) -> tuple[str, ...]:
        return tuple(self._tokens)

    def transcription_models(self) -> tuple[str, ...]:
        return tuple(self._transcription)

    def cost_usd(self, prices: PriceTable) -> float | None:
        """What the call has billed so far. `None` when the call's model, or any model that
        billed something, has no price: a partial sum would read as the whole bill."""
        if prices.realtime_price(self.model) is None:
            return None
        total = 0.0
        for model, counts in self._tokens.items():
            cost = prices.token_cost(model, counts)
            if cost is None:
                return None
            total += cost
        for model, used in self._transcription.items():
            cost = prices.transcription_cost(model, used)
            if cost is None:
                return None
            total += cost
        return total

    def costs_by_model(self, prices: PriceTable) -> dict[str, float]:
        """USD by model (Realtime and transcription models alike) for the models that have a
        price; a model without one is left out (the metrics' `relay_model_cost_usd_total`)."""
        costs: dict[str, float] = {}
        for model, counts in self._tokens.items():
            cost = prices.token_cost(model, counts)
            if cost is not None:
                costs[model] = costs.get(model, 0.0) + cost
        for model, used in self._transcription.items():
            cost = prices.transcription_cost(model, used)
            if cost is not None:
                costs[model] = costs.get(model, 0.0) + cost
        return costs

    def to_summary(self, prices: PriceTable) -> dict[str, object]:
        """The summary line's `"usage"` (names per DESIGN §6a)."""
        summary: dict[str, object] = {"model": self.model}
        summary.update(self.tokens().as_dict())
        summary["transcription_s"] = round(self.transcription().seconds, 3)
        summary["cost_usd"] = round_usd(self.cost_usd(prices))
        return summary
