"""`GET`/`PUT /calls/{CallSid}/wrapup` over real sockets: the agent's edit is validated,
redacted, saved in the SQLite record and written into the task's attributes with If-Match at
the fake Twilio; refusals (token, role, other agent, bad body) and Twilio's failures."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.records.postgres import PostgresStore
from relay.records.sqlite import SqliteStore
from relay.records.store import CallEnded, CallStarted
from tests.conftest import RunningRelay, StartRelay
from tests.fakes.postgres import PostgresServer
from tests.fakes.twilio_server import FakeTwilio, Fault

AGENT, OTHER_AGENT, SUPERVISOR, GUEST = (
    "flex-token-agent",
    "flex-token-other",
    "flex-token-supervisor",
    "flex-token-guest",
)
CALL = "CA" + "5a" * 16
GENERATED: dict[str, Any] = {
    "status": "ok",
    "summary": "The customer asked where the order is.",
    "questions": [{"text": "Where is my order?", "answered": True}],
    "action_items": [{"owner": "agent", "text": "send the tracking link", "due": None}],
    "follow_ups": [],
    "topics": ["orders"],
    "sentiment": {"start": "neutral", "end": "positive"},
    "disposition": "order_issue",
    "engine": "offline",
}
EDIT: dict[str, Any] = {
    "summary": "Order late; customer read card 4111 1111 1111 1111 for the reshipping fee.",
    "disposition": "follow_up_required",
    "action_items": [
        {"owner": "agent", "text": "email the new tracking number", "due": "today"},
        {"owner": "customer", "text": "confirm the address", "due": None},
    ],
}


@pytest.fixture(autouse=True)
def _agents(fake_twilio: FakeTwilio) -> None:
    fake_twilio.add_agent(AGENT, "alice_40example_2Ecom", ["agent"])
    fake_twilio.add_agent(OTHER_AGENT, "bob_40example_2Ecom", ["agent"])
    fake_twilio.add_agent(SUPERVISOR, "sam_40example_2Ecom", ["supervisor"])
    fake_twilio.add_agent(GUEST, "guest", ["guest"])


async def request(
    relay: RunningRelay, method: str, path: str, token: str | None = AGENT, **kwargs: Any
) -> tuple[int, Any]:
    headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as s, s.request(method, relay.http_url(path), headers=headers, **kwargs) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def seeded(
    start_relay: StartRelay, fake_twilio: FakeTwilio, *, task: bool = True, worker: str | None = "alice_40example_2Ecom"
) -> tuple[RunningRelay, str | None]:
    """A relay whose SQLite store holds one ended call with the relay's own wrap-up, and the
    call's task at the fake Twilio (with attributes of its own that must survive)."""
    relay = await start_relay()
    task_sid = fake_twilio.add_task({"type": "inbound", "call_sid": CALL, "keep": "me"}) if task else None
    records = relay.state.records
    assert records is not None
    await records.ready()
    now = time.time()
    await records.store.write(
        [
            CallStarted(CALL, "MZ" + "1" * 32, now - 60, "default", "offline", task_sid, worker),
            CallEnded(CALL, now, "stop", {"frames_in": 1}, GENERATED, "order_issue", task_sid),
        ]
    )
    return relay, task_sid


async def test_an_edit_is_redacted_saved_in_the_record_and_written_to_the_task(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    relay, task_sid = await seeded(start_relay, fake_twilio)
    assert task_sid is not None
    body = {**EDIT, "workspace_sid": fake_twilio.state.workspace_sid}
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json=body)
    assert status == 200, answer
    saved = answer["wrapup"]
    assert "4111" not in saved["summary"].replace("[card ending 1111]", "")
    assert "[card ending 1111]" in saved["summary"]
    assert saved["disposition"] == "follow_up_required"
    assert saved["action_items"] == [
        {"owner": "agent", "text": "email the new tracking number", "due": "today"},
        {"owner": "customer", "text": "confirm the address", "due": None},
    ]
    assert saved["edited_by"] == "alice_40example_2Ecom"
    assert saved["topics"] == ["orders"]  # what the agent did not edit stays the relay's
    assert saved["generated"]["summary"] == GENERATED["summary"]
    assert answer["task"] == {"written": True, "task_sid": task_sid, "attempts": 1}

    # The record, as a supervisor reads it.
    status, record = await request(relay, "GET", f"/calls/{CALL}", SUPERVISOR)
    assert status == 200
    assert record["wrapup"]["summary"] == saved["summary"] and record["disposition"] == "follow_up_required"

    # The task: our key replaced with If-Match, every other attribute kept.
    attributes = fake_twilio.task_attributes(task_sid)
    assert attributes["keep"] == "me" and attributes["call_sid"] == CALL
    written = attributes[relay.settings.task_summary_attribute]
    assert written["summary"] == saved["summary"] and written["disposition"] == "follow_up_required"
    assert "generated" not in written and written["call_sid"] == CALL
    updates = [req for req in fake_twilio.state.task_requests if req[0] == "POST"]
    assert updates and updates[-1][2]["If-Match"] == "0"

    # The agent reopens the tab: GET gives the saved edit and the operator's codes.
    status, again = await request(relay, "GET", f"/calls/{CALL}/wrapup")
    assert status == 200
    assert again["wrapup"]["summary"] == saved["summary"]
    codes = [d["code"] for d in again["dispositions"]]
    assert "follow_up_required" in codes and again["default"] in codes


async def test_a_second_edit_starts_from_the_relays_wrapup_and_a_late_end_row_keeps_it(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    relay, task_sid = await seeded(start_relay, fake_twilio, task=False)
    assert task_sid is None
    status, first = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json=EDIT)
    assert status == 200 and first["task"]["written"] is False
    status, second = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json={**EDIT, "summary": "Second."})
    assert status == 200
    assert second["wrapup"]["generated"]["summary"] == GENERATED["summary"]  # not the first edit
    # A continued call's end row arriving after the edit does not overwrite it.
    records = relay.state.records
    assert records is not None
    await records.store.write([CallEnded(CALL, time.time(), "stop", {}, GENERATED, "order_issue")])
    record = await records.store.get(CALL)
    assert record is not None
    assert record["wrapup"]["summary"] == "Second." and record["disposition"] == "follow_up_required"


async def test_an_unknown_call_is_404(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    relay, _ = await seeded(start_relay, fake_twilio)
    status, _ = await request(relay, "PUT", f"/calls/CA{'0' * 32}/wrapup", json=EDIT)
    assert status == 404
    status, _ = await request(relay, "GET", f"/calls/CA{'0' * 32}/wrapup")
    assert status == 404


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, 401), ("not-a-flex-token", 401), (GUEST, 403), (OTHER_AGENT, 403), (SUPERVISOR, 200), (AGENT, 200)],
)
async def test_only_the_calls_agent_or_a_supervisor_may_edit(
    start_relay: StartRelay, fake_twilio: FakeTwilio, token: str | None, expected: int
) -> None:
    relay, _ = await seeded(start_relay, fake_twilio)
    status, _ = await request(relay, "PUT", f"/calls/{CALL}/wrapup", token, json=EDIT)
    assert status == expected


async def test_a_token_in_the_url_is_refused(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    relay, _ = await seeded(start_relay, fake_twilio)
    status, body = await request(relay, "PUT", f"/calls/{CALL}/wrapup?Token={AGENT}", None, json=EDIT)
    assert status == 400 and "Authorization header" in body["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({**EDIT, "disposition": "made_up"}, "disposition must be one of"),
        ({**EDIT, "summary": "x" * 4001}, "summary"),
        ({**EDIT, "action_items": [{"owner": "agent", "text": "t"}] * 51}, "action_items"),
        ({**EDIT, "action_items": [{"owner": "boss", "text": "t"}]}, "owner"),
        ({**EDIT, "action_items": [{"owner": "agent", "text": ""}]}, "text"),
        ({**EDIT, "action_items": [{"owner": "agent", "text": "t", "due": "d" * 101}]}, "due"),
        ({**EDIT, "workspace_sid": "WS123"}, "workspace_sid"),
        ({**EDIT, "notes": "not a field"}, "notes"),
        ({"disposition": "resolved"}, "summary"),
        ([EDIT], "JSON object"),
    ],
)
async def test_a_bad_body_is_400_with_one_log_line(
    start_relay: StartRelay, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture, body: Any, says: str
) -> None:
    relay, _ = await seeded(start_relay, fake_twilio)
    caplog.set_level(logging.WARNING, logger="relay.wrapup.schema")
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json=body)
    assert status == 400 and says in answer["error"]
    refusals = [
        r for r in caplog.records if r.name == "relay.wrapup.schema" and r.getMessage() == "wrap-up edit refused"
    ]
    assert len(refusals) == 1 and "4111" not in caplog.text  # what was said never reaches the log
    record = await relay.state.records.store.get(CALL)  # type: ignore[union-attr]
    assert record is not None and record["wrapup"]["summary"] == GENERATED["summary"]  # untouched


async def test_malformed_json_and_an_oversized_body_are_400(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    relay, _ = await seeded(start_relay, fake_twilio)
    headers = {"Content-Type": "application/json"}
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", data=b"{not json", headers=headers)
    assert status == 400 and answer["error"] == "malformed JSON"
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", data=b" " * 40_000, headers=headers)
    assert status == 400 and "limited" in answer["error"]


async def test_a_task_that_keeps_changing_is_409_and_the_record_is_saved(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    relay, task_sid = await seeded(start_relay, fake_twilio)
    assert task_sid is not None
    fake_twilio.state.concurrent_edits = 100  # another writer after every read: 412 on each update
    body = {**EDIT, "workspace_sid": fake_twilio.state.workspace_sid}
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json=body)
    assert status == 409 and answer["task"]["conflict"] is True
    assert relay.settings.task_summary_attribute not in fake_twilio.task_attributes(task_sid)
    record = await relay.state.records.store.get(CALL)  # type: ignore[union-attr]
    assert record is not None and record["disposition"] == "follow_up_required"
    # One conflict is no conflict: the writer reads the new version and writes again.
    fake_twilio.state.concurrent_edits = 1
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json=body)
    assert status == 200 and answer["task"]["attempts"] == 2
    assert fake_twilio.task_attributes(task_sid)["edited_by_someone_else"] >= 1  # theirs kept


async def test_twilio_failing_is_502_and_the_record_is_saved(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    relay, _ = await seeded(start_relay, fake_twilio)
    fake_twilio.state.task_faults.extend([Fault(500, 20500, "Internal Server Error")] * 12)
    body = {**EDIT, "workspace_sid": fake_twilio.state.workspace_sid}
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", json=body)
    assert status == 502 and answer["task"]["failed"] is True
    record = await relay.state.records.store.get(CALL)  # type: ignore[union-attr]
    assert record is not None and record["wrapup"]["edited_by"] == "alice_40example_2Ecom"


async def test_the_default_workspace_is_used_when_the_plugin_sends_none(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    task_sid = fake_twilio.add_task({"type": "inbound"})
    relay = await start_relay(twilio_taskrouter_workspace_sid=fake_twilio.state.workspace_sid)
    records = relay.state.records
    assert records is not None
    await records.ready()
    await records.store.write([CallStarted(CALL, "MZ" + "2" * 32, time.time(), "default", "offline", task_sid, None)])
    # No known agent: the call is a supervisor's, not any agent's.
    status, _ = await request(relay, "PUT", f"/calls/{CALL}/wrapup", OTHER_AGENT, json=EDIT)
    assert status == 403
    status, answer = await request(relay, "PUT", f"/calls/{CALL}/wrapup", SUPERVISOR, json=EDIT)
    assert status == 200 and answer["task"]["written"] is True
    assert fake_twilio.task_attributes(task_sid)[relay.settings.task_summary_attribute]["summary"].startswith("Order")


_databases = itertools.count(1)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_both_stores_save_an_edit_and_keep_it_over_a_late_end_row(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if engine == "sqlite":
        store: SqliteStore | PostgresStore = SqliteStore(str(tmp_path / "relay.db"))
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = PostgresStore(server.create_database(f"wrapup_{next(_databases)}"))
    try:
        await store.migrate()
        assert await store.save_wrapup(CALL, {"summary": "x", "edited_at": 1.0}, "resolved") is False  # no call
        now = time.time()
        await store.write([CallStarted(CALL, "MZ" + "3" * 32, now, "default", "offline", None, "alice")])
        edit = {**GENERATED, "summary": "the agent's", "disposition": "resolved", "edited_at": now}
        assert await store.save_wrapup(CALL, edit, "resolved") is True
        await store.write([CallEnded(CALL, now + 1, "stop", {"frames_in": 1}, GENERATED, "order_issue")])
        record = await store.get(CALL)
        assert record is not None
        assert record["wrapup"]["summary"] == "the agent's" and record["disposition"] == "resolved"
        assert record["end_reason"] == "stop"  # the rest of the end row is written
    finally:
        await store.close()


async def test_an_edit_arriving_in_pieces_is_read_whole(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    # A browser's body can arrive over several segments; a read of n bytes returns only what
    # has arrived so far, and the edit would be refused as malformed JSON.
    relay, _ = await seeded(start_relay, fake_twilio)
    body = json.dumps(EDIT).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 40):
            yield body[start : start + 40]
            await asyncio.sleep(0.01)

    status, answer = await request(
        relay, "PUT", f"/calls/{CALL}/wrapup", data=pieces(), headers={"Content-Type": "application/json"}
    )
    assert status == 200, answer
    assert answer["wrapup"]["disposition"] == "follow_up_required"
