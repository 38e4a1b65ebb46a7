"""Where the TaskRouter driver keeps what it knows: which events it has seen, each task's state,
each call's assisted tasks, and a lock per task.

One relay keeps it in memory (`LocalTaskLedger`): exactly the single-process behaviour.
Several relays behind a balancer share it through Redis (`RedisTaskLedger`, RELAY_REDIS_URL),
because webhooks (and Event Streams batches) reach any of them:

- **seen events**: `SET NX` per event id, so a re-delivery to another relay is a duplicate.
- **tasks and calls**: one JSON value each, changed by the pure `AssistLedger` rules inside an
  optimistic transaction (`WATCH` the task and its call, `MULTI`/`EXEC`, again on a conflict),
  so "an ended task stays ended", transfers and "the call's last task ended" hold whichever
  relay handles each event.
- **per-task lock**: a Redis lock with a TTL and a random token (released only by its holder),
  taken after the process's own lock, so one event of a task runs at a time across replicas and
  a crashed holder blocks the task for at most the TTL. A `task.completed` on one relay waits
  while another relay's stream create for the task is in flight, then stops it; if the lock
  could not be had, the creator finds the task ended when it records the stream and stops it.
- **the call's task**: which task a call's wrap-up goes to changes on another relay than the
  one holding the call's socket (a transfer accepted there, the task that ends the call): it
  is announced on a pub/sub channel, and the relay holding the call updates its bridge.

Redis unreachable: each operation falls back to this process's view (a mirror of what it last
read or wrote), the failure is logged (first, then every 1000th), counted in `errors`, and
Redis is not asked again for a few seconds. Events are still handled, as one relay would
handle them: stream start and stop are idempotent at Twilio (one stream name per call;
stopping a stopped stream is success), so the worst case is the single-process one for events
of one task split across relays. Refusing them (503) instead would stop assist everywhere while
Redis is out and rely on the sender retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from redis.exceptions import LockError, WatchError

from relay.cluster.redis_channel import listen_forever
from relay.taskrouter.events import (
    AssistLedger,
    CallRecordState,
    TaskRecord,
    call_from_json,
    call_to_json,
    task_from_json,
    task_to_json,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.lock import Lock

log = logging.getLogger("relay.taskrouter.driver")

R = TypeVar("R")
CallTaskHandler = Callable[[str, str, str], None]  # (call_sid, task_sid, workspace_sid)
_ATTEMPTS = 20  # optimistic transactions per operation (conflicts are rare: the task is locked)


@dataclass(frozen=True, slots=True)
class Started:
    ok: bool  # False: the task ended while its stream was being started
    previous_task: str | None = None  # the call's newest assisted task before this one


class TaskLedger(Protocol):
    shared: bool
    errors: Counter[str]

    @property
    def degraded(self) -> bool:
        """True while the shared store is unreachable and this process's view stands in."""
        ...

    def lock(self, task_sid: str) -> AbstractAsyncContextManager[None]:
        """One event of the task at a time, in arrival order within this process."""
        ...

    async def seen(self, event_id: str) -> bool:
        """True if the event was seen before; remembers it otherwise."""
        ...

    async def state(self, task_sid: str, workspace_sid: str) -> str: ...

    async def refused(self, task_sid: str, workspace_sid: str) -> None: ...

    async def assisting(self, task_sid: str, workspace_sid: str, call_sid: str, worker_sid: str | None) -> Started: ...

    async def end(self, task_sid: str, workspace_sid: str) -> str | None:
        """The task ended; returns the call whose stream must stop now, else None."""
        ...

    async def transfer_started(self, task_sid: str) -> None: ...

    async def transfer_ended(self, task_sid: str) -> str | None: ...

    async def stopped_by_policy(self, task_sid: str) -> str | None: ...

    async def open(self, on_call_task: CallTaskHandler) -> None:
        """Start hearing which task each call's wrap-up goes to, as other relays decide it."""
        ...

    async def announce(self, call_sid: str, task_sid: str, workspace_sid: str) -> None:
        """Tell the other relays the call's wrap-up now goes to this task."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock
    users: int = 0  # holders and waiters: the lock is forgotten only when none is left


class TaskLocks:
    """Per-key asyncio locks, forgotten when no one holds or waits for them.

    Deleting a lock as soon as it is released is wrong: a waiter woken by the release has not
    resumed yet, so the lock looks free, and a third event would create a new lock and run
    beside the second. Counting users closes that gap."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held(asyncio.Lock())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0 and self._held.get(key) is held:
                del self._held[key]


class LocalTaskLedger:
    """One process: the pure ledger in memory, and asyncio locks."""

    shared = False

    def __init__(self, ledger: AssistLedger | None = None) -> None:
        self.ledger = ledger or AssistLedger()
        self.locks = TaskLocks()
        self.errors: Counter[str] = Counter()

    @property
    def degraded(self) -> bool:
        return False

    def lock(self, task_sid: str) -> AbstractAsyncContextManager[None]:
        return self.locks.hold(task_sid)

    async def seen(self, event_id: str) -> bool:
        return self.ledger.duplicate(event_id)

    async def state(self, task_sid: str, workspace_sid: str) -> str:
        return self.ledger.task(task_sid, workspace_sid).state

    async def refused(self, task_sid: str, workspace_sid: str) -> None:
        self.ledger.refused(self.ledger.task(task_sid, workspace_sid))

    async def assisting(self, task_sid: str, workspace_sid: str, call_sid: str, worker_sid: str | None) -> Started:
        previous = self.ledger.current_task(call_sid)
        ok = self.ledger.assisting(self.ledger.task(task_sid, workspace_sid), call_sid, worker_sid)
        return Started(ok, previous.task_sid if previous is not None and previous.task_sid != task_sid else None)

    async def end(self, task_sid: str, workspace_sid: str) -> str | None:
        return self.ledger.end(task_sid, workspace_sid)

    async def transfer_started(self, task_sid: str) -> None:
        self.ledger.transfer_started(task_sid)

    async def transfer_ended(self, task_sid: str) -> str | None:
        return self.ledger.transfer_ended(task_sid)

    async def stopped_by_policy(self, task_sid: str) -> str | None:
        return self.ledger.stopped_by_policy(task_sid)

    async def open(self, on_call_task: CallTaskHandler) -> None:
        return None  # no other relay: the driver updates its own bridges

    async def announce(self, call_sid: str, task_sid: str, workspace_sid: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _on_call_task_message(data: str, on_call_task: CallTaskHandler) -> None:
    """`{call_sid} {task_sid} {workspace_sid}`: a call's task changed on another relay."""
    parts = data.split(" ")
    if len(parts) == 3:
        on_call_task(parts[0], parts[1], parts[2])


class RedisTaskLedger:
    """Shared through Redis (the official client's asyncio API)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int = 24 * 3600,
        lock_ttl_s: float = 120.0,
        lock_wait_s: float = 60.0,
        timeout_s: float = 1.0,
        retry_after_s: float = 2.0,
        prefix: str = "relay:taskrouter:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as aioredis

        self.errors: Counter[str] = Counter()
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._ttl = ttl_s
        self._lock_ttl = lock_ttl_s  # a crashed holder blocks its task this long at most
        self._lock_wait = lock_wait_s  # then the event runs anyway (the creator re-checks)
        self._retry_after = retry_after_s
        self._prefix = prefix
        self._clock = clock
        self._down_until: float | None = None  # None: Redis is believed reachable
        self._local = LocalTaskLedger()  # the fallback: what this process last read or wrote
        self._listener: asyncio.Task[None] | None = None

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    def _skip(self) -> bool:
        """Redis failed a moment ago: do not make every event pay a timeout again."""
        if self._down_until is None:
            return False
        return self._clock() < self._down_until  # past it: try again; `_up()` clears the mark

    def _up(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            log.info("taskrouter shared ledger reachable again")

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors[operation] += 1
        self._down_until = self._clock() + self._retry_after
        if self.errors[operation] == 1 or self.errors[operation] % 1000 == 0:
            log.warning(
                "taskrouter shared ledger unavailable; handling events with this relay's view",
                extra={
                    "operation": operation,
                    "error": f"{type(exc).__name__}: {exc}",
                    "count": self.errors[operation],
                },
            )

    # ------------------------------------------------------------------ lock

    def lock(self, task_sid: str) -> AbstractAsyncContextManager[None]:
        return self._hold(task_sid)

    @contextlib.asynccontextmanager
    async def _hold(self, task_sid: str) -> AsyncIterator[None]:
        # The process's own lock first: arrival order here, and one poller per task in Redis.
        async with self._local.lock(task_sid):
            shared = await self._acquire(task_sid)
            try:
                yield
            finally:
                if shared is not None:
                    await self._release(task_sid, shared)

    async def _acquire(self, task_sid: str) -> Lock | None:
        if self._skip():
            return None
        lock = self._client.lock(
            self._key("lock", task_sid),
            timeout=self._lock_ttl,
            sleep=0.05,
            blocking=True,
            blocking_timeout=self._lock_wait,
            thread_local=False,  # many tasks share the loop's thread; each lock has its own token
        )
        try:
            got = await lock.acquire()
        except Exception as exc:
            self._failed("lock", exc)
            return None
        self._up()
        if not got:
            self.errors["lock_wait_expired"] += 1
            log.warning(
                "taskrouter task lock not obtained in time; handling the event without it",
                extra={"task_sid": task_sid, "waited_s": self._lock_wait},
            )
            return None
        return lock

    async def _release(self, task_sid: str, lock: Lock) -> None:
        try:
            await lock.release()  # compare-and-delete on the token: never another holder's lock
        except LockError:
            self.errors["lock_expired"] += 1
            log.warning("taskrouter task lock expired before its event finished", extra={"task_sid": task_sid})
        except Exception as exc:
            self._failed("unlock", exc)

    # ------------------------------------------------------------------ events

    async def seen(self, event_id: str) -> bool:
        if not event_id:
            return False
        if await self._local.seen(event_id):
            return True
        if self._skip():
            return False
        try:
            first = await self._client.set(self._key("event", event_id), "1", nx=True, ex=self._ttl)
        except Exception as exc:
            self._failed("seen", exc)
            return False
        self._up()
        return not first

    # ------------------------------------------------------------------ transitions

    async def _transact(
        self,
        operation: str,
        task_sid: str,
        workspace_sid: str,
        change: Callable[[AssistLedger], R],
        *,
        call_sid: str | None = None,
    ) -> R:
        """Read the task (and its call, or `call_sid`'s), apply `change` with the pure rules,
        write back what changed unless another relay changed it meanwhile (then again). Falls
        back to this process's view when Redis fails."""
        if self._skip():
            return change(self._local.ledger)
        task_key = self._key("task", task_sid)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(_ATTEMPTS):
                    try:
                        await pipe.watch(task_key)
                        stored_task = _text(await pipe.get(task_key))
                        record = task_from_json(stored_task, task_sid, workspace_sid)
                        calls = [c for c in (call_sid, record.call_sid) if c is not None]
                        stored_calls: dict[str, str | None] = {}
                        for c in dict.fromkeys(calls):
                            await pipe.watch(self._key("call", c))
                            stored_calls[c] = _text(await pipe.get(self._key("call", c)))
                        ledger = AssistLedger()
                        for c, raw in stored_calls.items():
                            ledger.put(record, c, call_from_json(raw))
                        ledger.put(record, None, None)
                        result = change(ledger)
                        after = ledger.known(task_sid) or record
                        writes: list[tuple[str, str | None]] = []
                        if (now := task_to_json(after)) != stored_task and (stored_task or after.state != "new"):
                            writes.append((task_key, now))
                        for c, raw in stored_calls.items():
                            call = ledger.call(c)
                            if (now_call := call_to_json(call) if call is not None else None) != raw:
                                writes.append((self._key("call", c), now_call))
                        if writes:
                            pipe.multi()  # type: ignore[no-untyped-call]
                            for key, value in writes:
                                if value is None:
                                    pipe.delete(key)
                                else:
                                    pipe.set(key, value, ex=self._ttl)
                            await pipe.execute()
                        # (nothing to write: leaving the block unwatches)
                    except WatchError:
                        self.errors["conflict"] += 1  # another relay changed it first: read again
                        continue
                    self._up()
                    self._mirror(after, ledger, stored_calls)
                    return result
                raise RuntimeError(f"the task kept changing ({_ATTEMPTS} attempts)")
        except Exception as exc:
            self._failed(operation, exc)
            return change(self._local.ledger)

    def _mirror(self, record: TaskRecord, ledger: AssistLedger, calls: dict[str, str | None]) -> None:
        """Keep this process's view as Redis now has it, for when Redis is out."""
        local = self._local.ledger
        local.put(replace(record), None, None)
        for c in calls:
            call = ledger.call(c)
            copy = None if call is None else CallRecordState(list(call.tasks), call.transfer_pending)
            local.put(replace(record), c, copy)

    async def state(self, task_sid: str, workspace_sid: str) -> str:
        return await self._transact(
            "state", task_sid, workspace_sid, lambda ledger: ledger.task(task_sid, workspace_sid).state
        )

    async def refused(self, task_sid: str, workspace_sid: str) -> None:
        await self._transact(
            "refused", task_sid, workspace_sid, lambda ledger: ledger.refused(ledger.task(task_sid, workspace_sid))
        )

    async def assisting(self, task_sid: str, workspace_sid: str, call_sid: str, worker_sid: str | None) -> Started:
        def change(ledger: AssistLedger) -> Started:
            previous = ledger.call(call_sid)
            before = previous.tasks[-1] if previous is not None and previous.tasks else None
            ok = ledger.assisting(ledger.task(task_sid, workspace_sid), call_sid, worker_sid)
            return Started(ok, before if before != task_sid else None)

        return await self._transact("assisting", task_sid, workspace_sid, change, call_sid=call_sid)

    async def end(self, task_sid: str, workspace_sid: str) -> str | None:
        return await self._transact("end", task_sid, workspace_sid, lambda ledger: ledger.end(task_sid, workspace_sid))

    async def transfer_started(self, task_sid: str) -> None:
        await self._transact("transfer", task_sid, "", lambda ledger: ledger.transfer_started(task_sid))

    async def transfer_ended(self, task_sid: str) -> str | None:
        return await self._transact("transfer", task_sid, "", lambda ledger: ledger.transfer_ended(task_sid))

    async def stopped_by_policy(self, task_sid: str) -> str | None:
        return await self._transact("stop_policy", task_sid, "", lambda ledger: ledger.stopped_by_policy(task_sid))

    # ------------------------------------------------------------------ the call's task

    @property
    def channel(self) -> str:
        return self._key("call-task")

    async def open(self, on_call_task: CallTaskHandler) -> None:
        subscribed = asyncio.Event()
        self._listener = asyncio.create_task(
            listen_forever(
                self._client,
                self.channel,
                lambda data: _on_call_task_message(data, on_call_task),
                lambda exc: self._failed("listen", exc),
                subscribed,
            ),
            name="taskrouter-listener",
        )
        with contextlib.suppress(TimeoutError):  # Redis down at startup: the listener keeps trying
            await asyncio.wait_for(subscribed.wait(), timeout=5)

    async def announce(self, call_sid: str, task_sid: str, workspace_sid: str) -> None:
        if self._skip():
            return
        try:
            await self._client.publish(self.channel, f"{call_sid} {task_sid} {workspace_sid}")
        except Exception as exc:
            self._failed("announce", exc)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._client.aclose()


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


__all__ = ["LocalTaskLedger", "RedisTaskLedger", "Started", "TaskLedger", "TaskLocks"]
