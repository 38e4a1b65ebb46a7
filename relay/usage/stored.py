"""Pure: a call's cost as the call records keep it, and the totals over many calls.

The records keep the summary line's `"usage"` (DESIGN §6a) beside the summary, and its
`cost_usd` in a column of its own, so a listing shows it and a period's total is one query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .counts import KINDS
from .prices import round_usd


def stored_usage(summary: Mapping[str, Any]) -> tuple[dict[str, Any] | None, float | None]:
    """A call summary → (its `usage`, its cost in USD); None for what it does not say."""
    usage = summary.get("usage")
    if not isinstance(usage, Mapping):
        return None, None
    cost = usage.get("cost_usd")
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost):
        return dict(usage), None
    return dict(usage), float(cost)


def usage_totals(row: Sequence[Any]) -> dict[str, Any]:
    """One aggregate row → the API's totals. The row: calls, calls with a cost, the sum of
    their costs, then the sum of each of `KINDS` and of `transcription_s` (SQL NULL for none)."""
    calls, priced, cost, *sums = row
    if len(sums) != len(KINDS) + 1:
        raise ValueError("an aggregate row has calls, priced calls, cost, the kinds and transcription_s")
    return {
        "calls": int(calls or 0),
        # Calls with a cost: a model without a price, or a call kept before costs were, has none.
        "calls_priced": int(priced or 0),
        "cost_usd": round_usd(float(cost or 0.0)),
        "tokens": {kind: int(value or 0) for kind, value in zip(KINDS, sums, strict=False)},
        "transcription_s": round(float(sums[-1] or 0.0), 3),
    }


def merge_usage(
    earlier: Mapping[str, Any] | None, later: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, float | None]:
    """A call served by several bridges (a stream restarted, a call continued on another
    replica) bills each one: the record keeps their sum. The cost is known only if every
    part's is; the model is the latest part's."""
    if earlier is None or later is None:
        only = later if later is not None else earlier
        return stored_usage({"usage": only}) if only is not None else (None, None)
    merged: dict[str, Any] = dict(later)
    for kind in (*KINDS, "transcription_s"):
        merged[kind] = _number(earlier.get(kind)) + _number(later.get(kind))
    merged["transcription_s"] = round(merged["transcription_s"], 3)
    _, cost_before = stored_usage({"usage": earlier})
    _, cost_now = stored_usage({"usage": later})
    merged["cost_usd"] = round_usd(cost_before + cost_now) if cost_before is not None and cost_now is not None else None
    return stored_usage({"usage": merged})


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return value
