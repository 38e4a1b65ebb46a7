"""Pure: the bounded queue of converted audio between a call's socket reader and its model
sender. Beyond its bound the oldest audio goes first (and is counted by the caller)."""

from __future__ import annotations

from collections import deque


class AudioBuffer:
    """Bounded FIFO of (chunk, frames, pushed_at). Beyond the bound, the oldest audio goes first."""

    __slots__ = ("_bytes", "_chunks", "_max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._chunks: deque[tuple[bytes, int, float]] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def push(self, chunk: bytes, frames: int, pushed_at: float = 0.0) -> int:
        """Append; returns how many frames were evicted to stay within the bound."""
        self._chunks.append((chunk, frames, pushed_at))
        self._bytes += len(chunk)
        evicted = 0
        while self._bytes > self._max_bytes and len(self._chunks) > 1:
            old, old_frames, _ = self._chunks.popleft()
            self._bytes -= len(old)
            evicted += old_frames
        return evicted

    def push_front(self, chunk: bytes, frames: int, pushed_at: float = 0.0) -> None:
        self._chunks.appendleft((chunk, frames, pushed_at))
        self._bytes += len(chunk)

    def pop(self, merge_up_to: int = 0) -> tuple[bytes, int, tuple[float, ...]] | None:
        """The oldest chunk, with the push times of what it holds.

        With `merge_up_to`, fresh chunks queued behind it are joined to it up to that many
        bytes: a sender that fell behind catches up with fewer, larger appends (each append
        has a fixed cost), and the audio is byte-for-byte the same. Replayed chunks (0 frames,
        counted once already) are never joined to fresh ones.
        """
        chunks = self._chunks
        if not chunks:
            return None
        chunk, frames, pushed_at = chunks.popleft()
        self._bytes -= len(chunk)
        if not (merge_up_to and frames and chunks and chunks[0][1]):
            return chunk, frames, (pushed_at,)
        parts, times, size = [chunk], [pushed_at], len(chunk)
        while chunks and chunks[0][1] and size + len(chunks[0][0]) <= merge_up_to:
            more, more_frames, more_at = chunks.popleft()
            self._bytes -= len(more)
            parts.append(more)
            times.append(more_at)
            frames += more_frames
            size += len(more)
        return b"".join(parts), frames, tuple(times)

    def drain_frames(self) -> int:
        frames = sum(item[1] for item in self._chunks)
        self._chunks.clear()
        self._bytes = 0
        return frames
