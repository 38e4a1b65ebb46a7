"""Counters have one owner, and shared rules are one function."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import fields

import pytest

from relay.model.link import LinkCounters
from sync_publisher.backoff import backoff_delay
from sync_publisher.publisher import PublishCounts, StreamReport


@pytest.mark.parametrize(
    ("attempt", "cap"),
    [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 8.0), (7, 8.0), (50, 8.0), (0, 0.25)],
)
def test_backoff_doubles_to_its_cap_with_jitter_in_the_upper_half(attempt: int, cap: float) -> None:
    rng = random.Random(7)
    draws = [backoff_delay(attempt, initial_s=0.25, max_s=8.0, rng=rng) for _ in range(200)]
    assert all(cap / 2 <= d <= cap for d in draws)
    assert max(draws) - min(draws) > cap / 4  # jittered, not constant


def test_link_counters_add_every_field() -> None:
    a, b = LinkCounters(), LinkCounters()
    for i, f in enumerate(fields(LinkCounters), start=1):
        if isinstance(getattr(b, f.name), Counter):
            getattr(b, f.name)["x"] = i
        else:
            setattr(b, f.name, i)
    a.add(b)
    a.add(b)
    for i, f in enumerate(fields(LinkCounters), start=1):
        value = getattr(a, f.name)
        assert (value["x"] if isinstance(value, Counter) else value) == 2 * i, f.name


def test_a_stream_report_is_the_same_counts_as_the_totals() -> None:
    # One field list for both views: a new counter cannot exist in one and not the other.
    report_fields = {f.name for f in fields(StreamReport)} - {"stream"}
    assert report_fields == {f.name for f in fields(PublishCounts)}
    assert StreamReport(stream="s").as_dict()["stream"] == "s"
