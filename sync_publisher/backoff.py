"""Exponential backoff with jitter: one rule for every retry loop (Sync publishing, the
model link's reconnects)."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1-based): the cap doubles from `initial_s` up to
    `max_s`, and the delay is drawn from [cap/2, cap] so clients that failed together do
    not retry together."""
    cap = min(max_s, initial_s * 2 ** (max(1, attempt) - 1))
    return rng.uniform(cap / 2, cap)
