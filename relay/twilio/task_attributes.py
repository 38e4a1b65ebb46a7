"""Write one key of a TaskRouter task's attributes without clobbering the others.

Read-modify-write through the twilio SDK: fetch the task (its `ETag` header is the task's
version), set our key in its attributes, update with `If-Match: <ETag>`. If someone else
changed the task in between, TaskRouter answers 412 (code 20412) and we read it again; 429
and 5xx are retried with backoff; 404 and other refusals end the write with their code. SDK
and transport exceptions are translated here into `TaskWriteFailed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from sync_publisher.backoff import backoff_delay
from sync_publisher.network import describe_failure
from sync_publisher.twilio_http import last_response

log = logging.getLogger("relay.taskrouter.driver")


class TaskWriteFailed(Exception):
    def __init__(self, reason: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


class TaskAttributeWriter:
    def __init__(
        self,
        client: Client,
        *,
        max_attempts: int = 6,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 4.0,
        seed: int | None = None,
    ) -> None:
        self._client = client
        self._max_attempts = max_attempts
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._rng = random.Random(seed)
        self.conflicts = 0  # 412s met (another writer changed the task first)
        self.retries = 0

    async def set_attribute(self, workspace_sid: str, task_sid: str, key: str, value: Any) -> int:
        """Set `attributes[key] = value`; returns how many attempts it took."""
        task = self._client.taskrouter.v1.workspaces(workspace_sid).tasks(task_sid)
        for attempt in range(1, self._max_attempts + 1):
            try:
                fetched = await task.fetch_async()
                head = last_response.get()
                etag = head.headers.get("ETag") if head is not None else None
                attributes = _attributes(fetched.attributes)
                attributes[key] = value
                await task.update_async(attributes=json.dumps(attributes), if_match=etag if etag else None)
                return attempt
            except TwilioRestException as exc:
                status = int(exc.status)
                if status == 412:
                    self.conflicts += 1
                    continue  # read the newer version at once
                if status == 429 or status >= 500:
                    if attempt == self._max_attempts:
                        raise TaskWriteFailed(f"Twilio {status} {exc.code}", status=status, code=exc.code) from exc
                    self.retries += 1
                    await self._sleep(attempt)
                    continue
                raise TaskWriteFailed(f"Twilio {status} {exc.code}", status=status, code=exc.code) from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt == self._max_attempts:
                    raise TaskWriteFailed(f"unreachable: {describe_failure(exc)}") from exc
                self.retries += 1
                await self._sleep(attempt)
        raise TaskWriteFailed(f"gave up after {self._max_attempts} attempts (the task kept changing)", status=412)

    async def _sleep(self, attempt: int) -> None:
        await asyncio.sleep(backoff_delay(attempt, initial_s=self._backoff[0], max_s=self._backoff[1], rng=self._rng))


def _attributes(raw: object) -> dict[str, Any]:
    if isinstance(raw, dict):
        return dict(raw)
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TaskWriteFailed("the task's attributes are not JSON; not overwriting them") from exc
    if not isinstance(value, dict):
        raise TaskWriteFailed("the task's attributes are not a JSON object; not overwriting them")
    return value
