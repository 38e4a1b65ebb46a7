"""Silencing spans of recorded audio: the utterances whose transcript had an entity masked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mask_spans(
    pcm: np.ndarray,
    sample_rate: int,
    spans: Sequence[tuple[float, float]],
    *,
    start_s: float = 0.0,
    channel: int | None = None,
) -> np.ndarray:
    """A copy of `pcm` with every span silenced (set to zero).

    `pcm` is one block of samples, 1-D (mono) or 2-D (samples, channels); `start_s` is the time
    of its first sample, so a recorder can mask the spans that fall in each block it writes.
    Spans are (start, end) in seconds on the same clock; each is widened outwards to whole
    samples and clipped to the block; empty, reversed or non-finite spans are ignored.
    `channel` picks one channel of a 2-D block (the speaker's track); None silences all.
    """
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    if pcm.ndim not in (1, 2):
        raise ValueError("pcm must be 1-D or 2-D (samples, channels)")
    if channel is not None and (pcm.ndim != 2 or not 0 <= channel < pcm.shape[1]):
        raise ValueError("channel out of range")
    out = pcm.copy()
    length = pcm.shape[0]
    for begin, end in spans:
        if not (math.isfinite(begin) and math.isfinite(end)) or end <= begin:
            continue
        first = max(0, math.floor((begin - start_s) * sample_rate))
        last = min(length, math.ceil((end - start_s) * sample_rate))
        if first >= last:
            continue
        if channel is None:
            out[first:last] = 0
        else:
            out[first:last, channel] = 0
    return out
