"""Per-call state that outlives one socket, and with Redis, one process.

One relay keeps it in memory (`LocalDirectory`): exactly the single-process behaviour. Several
relays behind a balancer share it through Redis (`RedisDirectory`, RELAY_REDIS_URL):

- **owner**: the replica whose socket feeds the call. `claim()` makes this replica the owner
  and tells the previous one (a pub/sub message on its own channel) to close its socket and
  its model session: a duplicate stream arriving elsewhere takes over, never a 2nd session.
- **incarnation**: how many bridges the call has had, so a later bridge's call-record rows
  never collide with an earlier one's (`(call_sid, n)` is the rows' key).
- **seq**: a Sync stream's `seq`, leased in blocks (`INCRBY`) so it keeps increasing whichever
  replica publishes, at one round trip per block of messages, none per frame.
- **wanted streams**: the streams the relay itself started (plugin, TaskRouter) with their
  parameters, so a `stream-error`/`stream-stopped` callback reaching any replica can start
  the stream again while the call still wants assist.
- **context**: the call's last lines, to seed a session opened on another replica.

Every round trip is per stream start, per Sync block or per transcript line; none is per
frame. Redis failures never harm a call: each operation falls back to what this process
knows, and is counted (`errors`) and logged once per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import orjson

from relay.cluster.redis_channel import listen_forever
from sync_publisher.publisher import SeqCounters

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("relay.directory")

SeqSource = Callable[[], Awaitable[int]]
TakeoverHandler = Callable[[str, str], None]  # (call_sid, new owner)

_MEMORY = 10_000  # calls (or streams) whose state one process remembers
SEQ_BLOCK = 64  # Sync seqs leased per round trip
_CONTEXT_QUEUE_MAX = 10_000  # context lines waiting for Redis


def default_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CallDirectory(Protocol):
    replica_id: str
    shared: bool
    errors: Counter[str]

    async def open(self, on_takeover: TakeoverHandler) -> None: ...

    async def aclose(self) -> None: ...

    async def claim(self, call_sid: str, stream_sid: str) -> int:
        """Own the call from now on (fed by `stream_sid`); returns its incarnation (0 for its
        first bridge)."""
        ...

    async def owner_stream(self, call_sid: str) -> str | None:
        """The StreamSid that last claimed the call, if known."""
        ...

    async def release(self, call_sid: str) -> None:
        """The call's stream ended here for good: forget the owner if it is still us."""
        ...

    def seq_source(self, stream: str) -> SeqSource: ...

    async def want(self, call_sid: str, parameters: dict[str, str]) -> None: ...

    async def unwant(self, call_sid: str) -> None: ...

    async def wanted(self, call_sid: str) -> dict[str, str] | None: ...

    def add_context(self, call_sid: str, line: str) -> None: ...

    async def recent_context(self, call_sid: str) -> list[str]: ...


V = TypeVar("V")


class _Bounded(OrderedDict[str, V]):
    """An insertion-ordered map that forgets its oldest keys past a size."""

    def __init__(self, limit: int = _MEMORY) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: V) -> V:
        self.pop(key, None)
        self[key] = value
        while len(self) > self.limit:
            self.popitem(last=False)
        return value


class LocalDirectory:
    """One process: the state lives here (bounded), and nothing is ever taken over."""

    shared = False

    def __init__(self, replica_id: str | None = None, *, context_lines: int = 12) -> None:
        self.replica_id = replica_id or default_replica_id()
        self.errors: Counter[str] = Counter()
        self._incarnations: _Bounded[int] = _Bounded()
        self._owner_streams: _Bounded[str] = _Bounded()
        self._seqs = SeqCounters(_MEMORY)
        self._wanted: _Bounded[dict[str, str]] = _Bounded()
        self._context: _Bounded[deque[str]] = _Bounded()
        self._context_lines = context_lines

    async def open(self, on_takeover: TakeoverHandler) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def claim(self, call_sid: str, stream_sid: str) -> int:
        n = self._incarnations.get(call_sid, -1) + 1
        self._incarnations.put(call_sid, n)
        self._owner_streams.put(call_sid, stream_sid)
        return n

    async def owner_stream(self, call_sid: str) -> str | None:
        return self._owner_streams.get(call_sid)

    async def release(self, call_sid: str) -> None:
        return None

    def seq_source(self, stream: str) -> SeqSource:
        return self._seqs(stream)

    async def want(self, call_sid: str, parameters: dict[str, str]) -> None:
        self._wanted.put(call_sid, dict(parameters))

    async def unwant(self, call_sid: str) -> None:
        self._wanted.pop(call_sid, None)

    async def wanted(self, call_sid: str) -> dict[str, str] | None:
        return self._wanted.get(call_sid)

    def add_context(self, call_sid: str, line: str) -> None:
        lines = self._context.get(call_sid)
        if lines is None:
            lines = self._context.put(call_sid, deque(maxlen=self._context_lines))
        lines.append(line)

    async def recent_context(self, call_sid: str) -> list[str]:
        return list(self._context.get(call_sid, ()))


class RedisSeq:
    """A stream's `seq` leased from Redis in blocks: `INCRBY seq 64` returns the block's top.

    Another replica's lease is always above every number leased before it, so the stream's
    `seq` keeps increasing across replicas (with gaps, which a browser ignores). If Redis is
    unreachable the numbers continue from this process's last one (counted)."""

    __slots__ = ("_directory", "_key", "_next", "_top")

    def __init__(self, directory: RedisDirectory, key: str) -> None:
        self._directory = directory
        self._key = key
        self._next = 1
        self._top = 0  # the block is [_next, _top]

    async def __call__(self) -> int:
        if self._next > self._top:
            top = await self._directory.lease(self._key, SEQ_BLOCK)
            if top is None:  # Redis down: carry on locally rather than restart or stall
                self._top = self._next + SEQ_BLOCK - 1
            else:
                self._next, self._top = max(self._next, top - SEQ_BLOCK + 1), top
        value = self._next
        self._next += 1
        return value


def _takeover(data: str) -> tuple[str, str]:
    """A takeover message: `{call_sid} {new_owner}`."""
    call_sid, _, new_owner = data.partition(" ")
    return call_sid, new_owner


class RedisDirectory:
    """Shared through Redis (the official client's asyncio API)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        replica_id: str | None = None,
        ttl_s: int = 4 * 3600,
        context_lines: int = 12,
        timeout_s: float = 1.0,
        prefix: str = "relay:",
    ) -> None:
        import redis.asyncio as aioredis

        self.replica_id = replica_id or default_replica_id()
        self.errors: Counter[str] = Counter()
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._ttl = ttl_s
        self._context_lines = context_lines
        self._prefix = prefix
        self._seqs: _Bounded[RedisSeq] = _Bounded()
        self._listener: asyncio.Task[None] | None = None
        self._context_out: deque[tuple[str, str]] = deque()
        self._context_writer: asyncio.Future[None] | None = None
        self._fallback = LocalDirectory(self.replica_id, context_lines=context_lines)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    @property
    def channel(self) -> str:
        return self._key("takeover", self.replica_id)

    async def open(self, on_takeover: TakeoverHandler) -> None:
        """Check the server answers (a wrong URL stops startup), then listen for takeovers."""
        await self._client.ping()
        subscribed = asyncio.Event()
        self._listener = asyncio.create_task(
            listen_forever(
                self._client,
                self.channel,
                lambda data: on_takeover(*_takeover(data)),
                lambda exc: self._failed("listen", exc),
                subscribed,
            ),
            name="directory-listener",
        )
        await asyncio.wait_for(subscribed.wait(), timeout=5)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._context_writer is not None and not self._context_writer.done():
            await asyncio.wait([self._context_writer], timeout=1)
        await self._client.aclose()

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors[operation] += 1
        if self.errors[operation] == 1 or self.errors[operation] % 1000 == 0:
            log.warning(
                "shared state unavailable; carrying on with this process's view",
                extra={
                    "operation": operation,
                    "error": f"{type(exc).__name__}: {exc}",
                    "count": self.errors[operation],
                },
            )

    async def claim(self, call_sid: str, stream_sid: str) -> int:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(self._key("call", call_sid, "incarnation"))
                pipe.expire(self._key("call", call_sid, "incarnation"), self._ttl)
                owner = f"{self.replica_id} {stream_sid}"
                pipe.set(self._key("call", call_sid, "owner"), owner, ex=self._ttl, get=True)
                incarnation, _, was = await pipe.execute()
            previous = str(was).partition(" ")[0] if was else ""
            if previous and previous != self.replica_id:
                await self._client.publish(self._key("takeover", previous), f"{call_sid} {self.replica_id}")
                log.info("call taken over from another replica", extra={"call_sid": call_sid, "previous": previous})
            return int(incarnation) - 1
        except Exception as exc:
            self._failed("claim", exc)
            return await self._fallback.claim(call_sid, stream_sid) + 1000  # past any shared number in practice

    async def owner_stream(self, call_sid: str) -> str | None:
        try:
            owner = await self._client.get(self._key("call", call_sid, "owner"))
        except Exception as exc:
            self._failed("owner", exc)
            return await self._fallback.owner_stream(call_sid)
        return str(owner).partition(" ")[2] or None if owner else None

    async def release(self, call_sid: str) -> None:
        # Compare-and-delete: a newer owner elsewhere keeps its claim.
        script = (
            "local v = redis.call('GET', KEYS[1]) "
            "if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then "
            "return redis.call('DEL', KEYS[1]) end return 0"
        )
        try:
            await self._client.eval(script, 1, self._key("call", call_sid, "owner"), self.replica_id)
        except Exception as exc:
            self._failed("release", exc)

    def seq_source(self, stream: str) -> SeqSource:
        return self._seqs.put(stream, self._seqs.get(stream) or RedisSeq(self, self._key("seq", stream)))

    async def lease(self, key: str, block: int) -> int | None:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incrby(key, block)
                pipe.expire(key, max(self._ttl, 25 * 3600))  # outlives the Sync stream's TTL
                top, _ = await pipe.execute()
            return int(top)
        except Exception as exc:
            self._failed("seq", exc)
            return None

    async def want(self, call_sid: str, parameters: dict[str, str]) -> None:
        await self._fallback.want(call_sid, parameters)
        try:
            await self._client.set(self._key("call", call_sid, "wanted"), orjson.dumps(parameters), ex=self._ttl)
        except Exception as exc:
            self._failed("want", exc)

    async def unwant(self, call_sid: str) -> None:
        await self._fallback.unwant(call_sid)
        try:
            await self._client.delete(self._key("call", call_sid, "wanted"))
        except Exception as exc:
            self._failed("unwant", exc)

    async def wanted(self, call_sid: str) -> dict[str, str] | None:
        try:
            raw = await self._client.get(self._key("call", call_sid, "wanted"))
        except Exception as exc:
            self._failed("wanted", exc)
            return await self._fallback.wanted(call_sid)
        if raw is None:
            return None
        loaded = orjson.loads(raw)
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    def add_context(self, call_sid: str, line: str) -> None:
        self._fallback.add_context(call_sid, line)
        if len(self._context_out) >= _CONTEXT_QUEUE_MAX:
            self.errors["context_queue_full"] += 1
            return
        self._context_out.append((call_sid, line))
        if self._context_writer is None or self._context_writer.done():
            self._context_writer = asyncio.ensure_future(self._write_context())

    async def _write_context(self) -> None:
        """One writer, so a call's lines reach Redis in order; what queued meanwhile goes in
        one pipeline (a round trip per batch, not per line)."""
        while self._context_out:
            batch = list(self._context_out)
            self._context_out.clear()
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for call_sid in dict.fromkeys(c for c, _ in batch):
                        key = self._key("call", call_sid, "context")
                        pipe.rpush(key, *[line for c, line in batch if c == call_sid])
                        pipe.ltrim(key, -self._context_lines, -1)
                        pipe.expire(key, self._ttl)
                    await pipe.execute()
            except Exception as exc:
                self._failed("context", exc)

    @property
    def context_pending(self) -> bool:
        return bool(self._context_out) or (self._context_writer is not None and not self._context_writer.done())

    async def recent_context(self, call_sid: str) -> list[str]:
        try:
            lines = await self._client.lrange(self._key("call", call_sid, "context"), 0, -1)
            return [str(line) for line in lines]
        except Exception as exc:
            self._failed("context", exc)
            return await self._fallback.recent_context(call_sid)
