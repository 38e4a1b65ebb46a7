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
