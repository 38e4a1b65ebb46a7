"""The wrap-up written into a TaskRouter task's attributes, against the fake Twilio: one key
set, every other attribute kept, `If-Match` with the task's ETag, and 412/429/404 handled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from twilio.rest import Client

from relay.twilio.task_attributes import TaskAttributeWriter, TaskWriteFailed
from sync_publisher.twilio_transport import make_twilio_client
from tests.conftest import TWILIO_TOKEN
from tests.fakes.twilio_server import FakeTwilio, Fault

FLEX_ATTRIBUTES = {"call_sid": "CA" + "a" * 32, "from": "+15551234567", "conversations": {"segment_link": "x"}}


@pytest.fixture
async def client(fake_twilio: FakeTwilio) -> AsyncIterator[Client]:
    sdk = make_twilio_client(
        account_sid=fake_twilio.state.account_sid,
        auth_token=TWILIO_TOKEN,
        taskrouter_base_url=fake_twilio.base_url,
        timeout_s=5,
    )
    yield sdk
    await sdk.http_client.close()


def writer(client: Client) -> TaskAttributeWriter:
    return TaskAttributeWriter(client, max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.02, seed=1)


async def test_the_key_is_set_with_if_match_and_other_attributes_are_kept(
    fake_twilio: FakeTwilio, client: Client
) -> None:
    task = fake_twilio.add_task(FLEX_ATTRIBUTES)
    attempts = await writer(client).set_attribute(fake_twilio.state.workspace_sid, task, "assist_wrapup", {"a": 1})
    assert attempts == 1
    assert fake_twilio.task_attributes(task) == {**FLEX_ATTRIBUTES, "assist_wrapup": {"a": 1}}
    [get, post] = fake_twilio.state.task_requests
    assert get[0] == "GET" and post[0] == "POST" and post[2]["If-Match"] == "0"


async def test_a_concurrent_edit_costs_a_412_and_a_fresh_read_never_a_lost_update(
    fake_twilio: FakeTwilio, client: Client
) -> None:
    task = fake_twilio.add_task(FLEX_ATTRIBUTES)
    fake_twilio.state.concurrent_edits = 2  # someone else writes right after each of our next 2 reads
    w = writer(client)
    attempts = await w.set_attribute(fake_twilio.state.workspace_sid, task, "assist_wrapup", {"a": 1})
    assert attempts == 3 and w.conflicts == 2
    attributes = fake_twilio.task_attributes(task)
    assert attributes["edited_by_someone_else"] == 2  # their edits survived ours
    assert attributes["assist_wrapup"] == {"a": 1} and attributes["from"] == FLEX_ATTRIBUTES["from"]


async def test_429_and_5xx_are_retried_with_backoff(fake_twilio: FakeTwilio, client: Client) -> None:
    task = fake_twilio.add_task({})
    fake_twilio.state.task_faults.extend([Fault(429, 20429, "Too Many Requests"), Fault(503, 20503, "Unavailable")])
    w = writer(client)
    assert await w.set_attribute(fake_twilio.state.workspace_sid, task, "k", 1) == 3
    assert w.retries == 2 and fake_twilio.task_attributes(task) == {"k": 1}


async def test_a_missing_task_fails_at_once_with_its_code(fake_twilio: FakeTwilio, client: Client) -> None:
    with pytest.raises(TaskWriteFailed) as failure:
        await writer(client).set_attribute(fake_twilio.state.workspace_sid, "WT" + "9" * 32, "k", 1)
    assert (failure.value.status, failure.value.code) == (404, 20404)
    assert len(fake_twilio.state.task_requests) == 1


async def test_attributes_that_are_not_json_are_never_overwritten(fake_twilio: FakeTwilio, client: Client) -> None:
    task = fake_twilio.add_task({})
    fake_twilio.state.tasks[task]["attributes"] = "not json"
    with pytest.raises(TaskWriteFailed, match="not JSON"):
        await writer(client).set_attribute(fake_twilio.state.workspace_sid, task, "k", 1)
    assert fake_twilio.state.tasks[task]["attributes"] == "not json"
