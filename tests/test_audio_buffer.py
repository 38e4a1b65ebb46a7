"""AudioBuffer: the bounded queue between a call's socket reader and its model sender."""

from __future__ import annotations

import pytest

from relay.audio.buffer import AudioBuffer

A, B, C, D = b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10


def _buffer(items: list[tuple[bytes, int, float]], max_bytes: int = 1000) -> AudioBuffer:
    buffer = AudioBuffer(max_bytes)
    for chunk, frames, at in items:
        buffer.push(chunk, frames, at)
    return buffer


@pytest.mark.parametrize(
    ("items", "merge_up_to", "expected"),
    [
        # No merging asked: one chunk at a time.
        ([(A, 5, 1.0), (B, 5, 2.0)], 0, (A, 5, (1.0,))),
        # Fresh chunks behind the head join it, in order, with their frames and push times.
        ([(A, 5, 1.0), (B, 5, 2.0), (C, 5, 3.0)], 100, (A + B + C, 15, (1.0, 2.0, 3.0))),
        # Up to the size limit and no further.
        ([(A, 5, 1.0), (B, 5, 2.0), (C, 5, 3.0)], 25, (A + B, 10, (1.0, 2.0))),
        # A replayed chunk (0 frames: counted once already) is never joined to fresh audio...
        ([(A, 5, 1.0), (B, 0, 2.0), (C, 5, 3.0)], 100, (A, 5, (1.0,))),
        # ...nor fresh audio to it.
        ([(B, 0, 2.0), (C, 5, 3.0)], 100, (B, 0, (2.0,))),
        # A head alone is returned as is.
        ([(D, 5, 4.0)], 100, (D, 5, (4.0,))),
    ],
)
def test_pop_joins_queued_fresh_audio_up_to_the_limit(
    items: list[tuple[bytes, int, float]], merge_up_to: int, expected: tuple[bytes, int, tuple[float, ...]]
) -> None:
    buffer = _buffer(items)
    total = sum(len(chunk) for chunk, _, _ in items)
    popped = buffer.pop(merge_up_to)
    assert popped == expected
    assert buffer.size_bytes == total - len(expected[0])  # byte accounting follows what left
    assert len(buffer) == len(items) - len(expected[2])


def test_pop_until_empty_hands_out_every_byte_once_in_order() -> None:
    items = [(bytes([i]) * 7, 1 if i % 4 else 0, float(i)) for i in range(40)]
    buffer = _buffer(items)
    out = b""
    while (popped := buffer.pop(30)) is not None:
        out += popped[0]
    assert out == b"".join(chunk for chunk, _, _ in items)
    assert buffer.size_bytes == 0 and buffer.pop(30) is None


def test_overflow_evicts_the_oldest_and_reports_its_frames() -> None:
    buffer = AudioBuffer(25)
    assert buffer.push(A, 5, 1.0) == 0
    assert buffer.push(B, 5, 2.0) == 0
    assert buffer.push(C, 5, 3.0) == 5  # A goes first
    assert buffer.pop(100) == (B + C, 10, (2.0, 3.0))
