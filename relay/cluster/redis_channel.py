"""One Redis pub/sub channel listened to for as long as the relay runs.

The call directory (takeovers) and the TaskRouter ledger (a call's task changing on another
relay) each listen to a channel of their own; both need the same loop: subscribe, hand every
message on, and after a lost connection subscribe again with jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from sync_publisher.backoff import backoff_delay

if TYPE_CHECKING:  # imported only where Redis is configured
    import redis.asyncio as aioredis

INITIAL_RETRY_S = 0.1
MAX_RETRY_S = 5.0


async def listen_forever(
    client: aioredis.Redis,
    channel: str,
    on_message: Callable[[str], None],
    on_failure: Callable[[BaseException], None],
    subscribed: asyncio.Event,
    *,
    rng: random.Random | None = None,
) -> None:
    """Call `on_message` with each message's data until cancelled. `subscribed` is set once
    the first subscription holds; each failure is reported to `on_failure`, then retried."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            subscribed.set()
            attempt = 0
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    on_message(str(message["data"]))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        except Exception as exc:
            on_failure(exc)
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, initial_s=INITIAL_RETRY_S, max_s=MAX_RETRY_S, rng=rng))
