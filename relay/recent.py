"""A bounded record of recent measurements, read as quantiles (loop lag, audio send delay).

Prometheus histograms answer "how many in each bucket since start"; operators and the load
bench also want "p99 over the last few seconds", which this answers cheaply: appends are
O(1) amortised and only a scrape sorts.
"""

from __future__ import annotations


class RecentSamples:
    __slots__ = ("_keep", "_values")

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._values: list[float] = []

    def add(self, value: float) -> None:
        values = self._values
        values.append(value)
        if len(values) >= 2 * self._keep:
            del values[: len(values) - self._keep]

    def quantiles(self, qs: tuple[float, ...], last: int | None = None) -> list[float] | None:
        """The given quantiles (1.0 is the max) of the last `last` samples, or None if empty."""
        recent = sorted(self._values[-(last or self._keep) :])
        if not recent:
            return None
        return [recent[min(len(recent) - 1, int(q * len(recent)))] for q in qs]

    def __len__(self) -> int:
        return min(len(self._values), self._keep)
