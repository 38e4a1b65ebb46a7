"""RecentSamples: the 'p99 over the last few seconds' behind the lag and send-delay gauges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.recent import RecentSamples


@pytest.mark.parametrize(
    ("values", "qs", "expected"),
    [
        ([], (0.5,), None),
        ([3.0], (0.5, 0.99, 1.0), [3.0, 3.0, 3.0]),
        ([float(v) for v in range(100)], (0.5, 0.99, 1.0), [50.0, 99.0, 99.0]),
        ([float(v) for v in range(1000)], (0.99,), [990.0]),
        ([5.0, 1.0, 4.0, 2.0, 3.0], (0.0, 1.0), [1.0, 5.0]),  # order of arrival does not matter
    ],
)
def test_quantiles_of_what_was_added(values: list[float], qs: tuple[float, ...], expected: list[float] | None) -> None:
    samples = RecentSamples(keep=10_000)
    for v in values:
        samples.add(v)
    assert samples.quantiles(qs) == expected


def test_only_the_most_recent_samples_count_and_memory_stays_bounded() -> None:
    samples = RecentSamples(keep=100)
    for v in range(10_000):
        samples.add(1000.0 if v < 9_900 else 1.0)  # the old spike must age out
    assert samples.quantiles((1.0,)) == [1.0]
    assert len(samples) == 100
    assert samples._ring.shape == (100,)  # a fixed ring, whatever was added


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=300),
    keep=st.integers(min_value=1, max_value=120),
    last=st.one_of(st.none(), st.integers(min_value=1, max_value=150)),
)
def test_quantiles_match_sorting_the_window_by_hand(values: list[float], keep: int, last: int | None) -> None:
    """Across ring wrap-arounds and windows: the same answer as sorting the last samples."""
    samples = RecentSamples(keep=keep)
    for v in values:
        samples.add(v)
    window = values[-min(keep, last or keep) :]
    ordered = sorted(window)
    qs = (0.0, 0.5, 0.99, 1.0)
    expected = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in qs]
    assert samples.quantiles(qs, last=last) == expected


def test_a_shorter_view_reads_only_the_last_samples() -> None:
    samples = RecentSamples(keep=1000)
    for v in range(1000):
        samples.add(float(v))
    assert samples.quantiles((0.0, 1.0), last=10) == [990.0, 999.0]
