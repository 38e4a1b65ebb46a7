"""Send-rate limiter for one Sync stream (pure: the clock is passed in).

Twilio allows 30 messages per second per stream. A token bucket with a burst lets up to
2× that through inside one second, so we keep a log of recent sends instead and admit a
send only when fewer than `limit` of them completed within the last `window` seconds.
Stamping at *completion* (the server has seen the request by then) makes the bound hold
as the server observes it, whatever the network jitter: the next request starts after
the stamp, so it also arrives after it.
"""

from __future__ import annotations

from collections import deque


class SlidingWindowLimiter:
    __slots__ = ("_limit", "_stamps", "_window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be ≥ 1 and window > 0")
        self._limit = limit
        self._window = window
        self._stamps: deque[float] = deque(maxlen=limit)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next send may start (0 when it may start now)."""
        if len(self._stamps) < self._limit:
            return 0.0
        return max(0.0, self._stamps[0] + self._window - now)

    def record(self, completed_at: float) -> None:
        self._stamps.append(completed_at)


class RateLimiter:
    """Both of Twilio's windows: `rate` per second, and `rate × burst_window` per burst window."""

    __slots__ = ("_windows",)

    def __init__(self, rate_per_s: float, burst_window_s: float) -> None:
        per_second = max(1, int(rate_per_s))
        self._windows = [SlidingWindowLimiter(per_second, 1.0)]
        if burst_window_s > 1.0:
            self._windows.append(SlidingWindowLimiter(max(1, int(rate_per_s * burst_window_s)), burst_window_s))

    def delay(self, now: float) -> float:
        return max(w.delay(now) for w in self._windows)

    def record(self, completed_at: float) -> None:
        for w in self._windows:
            w.record(completed_at)
