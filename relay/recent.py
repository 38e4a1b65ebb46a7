"""A bounded record of recent measurements, read as quantiles (loop lag, audio send delay).

Prometheus histograms answer "how many in each bucket since start"; operators and the load
bench also want "p99 over the last few seconds". Samples go into a fixed numpy ring (an add
is one store), and only a scrape does work: a partial sort of at most `keep` values, ~10×
cheaper than sorting a list, because a scrape runs on the event loop.
"""

from __future__ import annotations

import numpy as np


class RecentSamples:
    __slots__ = ("_added", "_keep", "_ring")

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._ring = np.zeros(keep, dtype=np.float64)
        self._added = 0

    def add(self, value: float) -> None:
        self._ring[self._added % self._keep] = value
        self._added += 1

    def quantiles(self, qs: tuple[float, ...], last: int | None = None) -> list[float] | None:
        """The given quantiles (1.0 is the max) of the last `last` samples, or None if empty.

        Quantile q is the value at index int(q·n) of the sorted samples (clamped to the end).
        """
        n = min(self._added, self._keep, last or self._keep)
        if n == 0:
            return None
        end = self._added % self._keep
        if n <= end:
            recent = self._ring[end - n : end].copy()
        else:  # the newest samples wrap around the end of the ring
            recent = np.concatenate((self._ring[self._keep - (n - end) :], self._ring[:end]))
        ranks = [min(n - 1, int(q * n)) for q in qs]
        recent.partition(sorted(set(ranks)))
        return [float(recent[r]) for r in ranks]

    def __len__(self) -> int:
        return min(self._added, self._keep)
