"""Card numbers and personal data kept nowhere, end to end over real sockets.

A both-tracks call, recorded (records, FLAC audio, transcripts in the log), in which the
customer reads a card number as digits, as words and mixed, an SSN and a security code; the
agent repeats the number; the model's answer and the wrap-up quote it back. Then every place
the relay writes to is searched for the numbers in any written or spoken form: the Sync
messages, the log, every table of the store (SQLite, or PostgreSQL with Redis), the files on
disk, the Redis keys, what the relay sent the model, the wrap-up requests, the TaskRouter
task the wrap-up is written to. The utterances that
held them are silent in the recording, on both channels.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from relay.cli.simulator import CallSpec, stream_call
from relay.logs import JsonFormatter
from tests.conftest import RunningRelay, StartRelay, speech_like_ulaw, tone_ulaw, wait_until
from tests.fakes.postgres import PostgresServer
from tests.fakes.realtime_server import FakeRealtimeServer, Turn
from tests.fakes.responses_api import Outcome
from tests.fakes.twilio_server import FakeTwilio

SUPERVISOR = "flex-token-supervisor-redaction"
CARD_A, CARD_B, SSN, CVV = "4111111111111111", "5555555555554444", "372814690", "491"

CUSTOMER = [
    Turn(
        "Hi, I want to pay my bill. My card number is 4111 1111 1111 1111.",
        json.dumps(
            {
                "question": "Can you confirm my card 4111 1111 1111 1111?",
                "answer": "Yes, the card 4111111111111111 is on file; SSN 372-81-4690 checked.",
            }
        ),
    ),
    Turn("Sorry, that is four one one one, one one one one, one one one one, one one one one.", "{}"),
    Turn("The other card is 5 5 five five 5555 five five five five 4444.", "{}"),
    Turn("My social security number is 372-81-4690.", "{}"),
    Turn("And the security code is 491.", "{}"),
]
AGENT = [
    Turn("Sure, I can help with that.", ""),
    Turn("Let me read that back: card number 4111 1111 1111 1111, is that right?", ""),
    Turn("Thank you.", ""),
    Turn("Got it.", ""),
    Turn("All set, thanks.", ""),
]
MASKED_UTTERANCES = 6  # five of the customer's, one of the agent's
WRAPUP = {
    "summary": "The customer paid with card 4111 1111 1111 1111 and gave SSN 372-81-4690.",
    "questions": [{"text": "Can you confirm card 4111111111111111?", "answered": True}],
    "action_items": [{"owner": "agent", "text": "Charge card five five five five 5555 5555 4444", "due": None}],
    "follow_ups": [],
    "topics": ["payment"],
    "sentiment": {"start": "neutral", "end": "positive"},
    "disposition": "resolved",
}

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_WORD = re.compile(r"[a-z]+")
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\s\-.,/]+(?=\d)")


def _normalized(text: str) -> str:
    """Number words as digits, separators between digits gone: every form the numbers were
    said or written in becomes their digits."""
    words = _WORD.sub(lambda m: _DIGIT_WORDS.get(m.group(), m.group()), text.lower())
    return _BETWEEN_DIGITS.sub("", words)


def leaks(text: str, *, strings: bool = True) -> list[str]:
    """The numbers of the call found in `text`. `strings`: text fields (not binary files), where
    the 3-digit security code is looked for too, as a number of its own."""
    flat = _normalized(text)
    found = [n for n in (CARD_A, CARD_B, SSN) if n in flat]
    if strings and re.search(rf"(?<![0-9a-z]){CVV}(?![0-9a-z])", flat):
        found.append(CVV)
    return found


def test_the_search_finds_every_form_the_numbers_take() -> None:
    """The search below must be able to fail: each spoken and written form is found."""
    for turn in [*CUSTOMER, AGENT[1]]:
        assert leaks(turn.transcript), turn.transcript
    assert leaks(json.dumps(WRAPUP)) == [CARD_A, CARD_B, SSN]
    assert leaks("[card ending 1111] [ssn] [security code] order 4911 at 4:91") == []


# ---------------------------------------------------------------------------- the call


async def _record(relay: RunningRelay, call_sid: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(relay.http_url(f"/calls/{call_sid}"), headers={"Authorization": f"Bearer {SUPERVISOR}"}) as r,
    ):
        assert r.status == 200
        record: dict[str, Any] = await r.json()
        return record


async def _metrics(relay: RunningRelay) -> str:
    async with aiohttp.ClientSession() as s, s.get(relay.http_url("/metrics")) as r:
        return await r.text()


async def _call(
    relay: RunningRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> tuple[CallSpec, bytes]:
    fake_realtime.behaviour.turns = list(CUSTOMER)
    fake_realtime.behaviour.agent_turns = list(AGENT)
    fake_realtime.behaviour.turn_every_bytes = 48_000  # a turn per second of audio
    fake_realtime.responses.default = Outcome(payload=WRAPUP)
    customer, agent = speech_like_ulaw(6.6), tone_ulaw(300.0, seconds=6.6)
    # Real time: the recorder holds the newest audio back while an utterance's final is due.
    task = fake_twilio.add_task({"call_sid": "CA" + "b" * 32})  # the wrap-up is written to it too
    parameters = {"WorkerIdentity": "alice", "TaskSid": task, "WorkspaceSid": fake_twilio.state.workspace_sid}
    spec = CallSpec(audio={"inbound": customer, "outbound": agent}, pace=1.0, custom_parameters=parameters)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle and not relay.state.background, timeout_s=20)
    assert relay.state.records is not None and await relay.state.records.writer.idle()
    return spec, customer


def _files(root: Path) -> dict[str, bytes]:
    """Every file the relay wrote (the database and its journal, the audio)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _sqlite_rows(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type in ('table')")]
        return [repr(row) for table in tables for row in db.execute(f'select * from "{table}"')]
    finally:
        db.close()


async def _postgres_rows(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch("select table_name from information_schema.tables where table_schema = 'public'")
        rows = []
        for t in tables:
            rows += [repr(dict(r)) for r in await conn.fetch(f'select * from "{t["table_name"]}"')]
        return rows
    finally:
        await conn.close()


async def _redis_values(url: str) -> list[str]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        values = []
        async for key in client.scan_iter("*"):
            kind = await client.type(key)
            if kind == "string":
                values.append(f"{key}={await client.get(key)}")
            elif kind == "list":
                values.append(f"{key}={await client.lrange(key, 0, -1)}")
            elif kind == "hash":
                values.append(f"{key}={await client.hgetall(key)}")
            else:
                values.append(f"{key} ({kind})")
        return values
    finally:
        await client.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"])
async def test_a_recorded_call_with_card_numbers_keeps_them_nowhere(
    backend: str,
    request: pytest.FixtureRequest,
    start_relay: StartRelay,
    fake_realtime: FakeRealtimeServer,
    fake_twilio: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_twilio.add_agent(SUPERVISOR, "sam_40example_2Ecom", ["supervisor"])
    caplog.set_level(logging.DEBUG, logger="relay")
    overrides: dict[str, Any] = {"record_audio": True, "stream_track": "both_tracks", "log_transcripts": True}
    database_url = redis_url = None
    if backend == "postgres+redis":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        database_url = postgres.create_database("redaction_flow")
        redis_url = request.getfixturevalue("redis_url")
        overrides.update(database_url=database_url, redis_url=redis_url, replica_id="relay-a")
    relay = await start_relay(**overrides)
    spec, customer = await _call(relay, fake_realtime, fake_twilio)
    if redis_url is not None:
        # The call continues on another relay: its new model session is seeded from Redis.
        other = await start_relay(**{**overrides, "replica_id": "relay-b"})
        again = CallSpec(audio={"inbound": speech_like_ulaw(0.4)}, call_sid=spec.call_sid, pace=0)
        await stream_call(other.ws_url(), again, headers=other.signed_headers())
        await wait_until(lambda: other.state.idle, timeout_s=20)
        assert other.state.records is not None and await other.state.records.writer.idle()

    # ---- what was said is there, masked
    stream = f"FLEX_ASSIST_{spec.call_sid}"
    published = fake_twilio.messages_for(stream)
    finals = [(m["speaker"], m["text"]) for m in published if m["type"] == "transcript" and m["final"]]
    assert ("customer", "Hi, I want to pay my bill. My card number is [card ending 1111].") in finals
    assert ("customer", "The other card is [card ending 4444].") in finals
    assert ("customer", "My social security number is [ssn].") in finals
    assert ("customer", "And the security code is [security code].") in finals
    assert ("agent", "Let me read that back: card number [card ending 1111], is that right?") in finals
    [suggestion] = [m for m in published if m["type"] == "suggestion"]
    assert suggestion["answer"] == "Yes, the card [card ending 1111] is on file; SSN [ssn] checked."
    summary_message = next(m for m in published if m["type"] == "summary")  # (a continued call: two)
    assert summary_message["summary"] == "The customer paid with card [card ending 1111] and gave SSN [ssn]."

    privacy = relay.state.recent_summaries[-1]["privacy"]  # the first bridge's (a call may continue)
    assert privacy["redactions"]["card"] >= 5 and privacy["redactions"]["ssn"] >= 2
    assert privacy["redactions"]["security_code"] == 1
    assert len(privacy["audio_masked"]) == MASKED_UTTERANCES and privacy["audio_masked_late"] == 0
    record = await _record(relay, spec.call_sid)
    spans = record["audio_masked"]  # every bridge's spans, kept as rows
    assert [{k: s[k] for k in ("speaker", "start_s", "end_s")} for s in spans] == privacy["audio_masked"]
    assert {s["speaker"] for s in spans} == {"customer", "agent"}
    metrics = await _metrics(relay)
    assert re.search(r'relay_redactions_total\{entity="card"\} ([0-9.]+)', metrics)

    # ---- searched everywhere
    places: dict[str, list[str]] = {
        "sync": [json.dumps(m.data) for m in fake_twilio.state.messages],
        "log": [JsonFormatter().format(r) for r in caplog.records],
        "model": [
            json.dumps([s.session_config, s.context_items, s.tool_outputs], default=str) for s in fake_realtime.sessions
        ],
        "wrapup": [json.dumps(r.body) for r in fake_realtime.responses.requests],
        "record": [json.dumps(record)],
        "task": [json.dumps(task) for task in fake_twilio.state.tasks.values()],
    }
    assert any("assist_wrapup" in t and "[card ending 1111]" in t for t in places["task"])
    logged = [r for r in caplog.records if r.getMessage() == "transcript"]
    assert len(logged) >= 10  # transcript logging was on: the search below read them
    assert any("Agent said: Let me read that back: card number [card ending 1111]" in m for m in places["model"])
    assert any("[ssn]" in w for w in places["wrapup"]) and len(places["wrapup"]) >= 1
    if database_url is not None:
        places["tables"] = await _postgres_rows(database_url)
    else:
        places["tables"] = _sqlite_rows(Path(relay.settings.database.removeprefix("sqlite:///")))
    assert any("[card ending 4444]" in row for row in places["tables"])
    if redis_url is not None:
        places["redis"] = await _redis_values(redis_url)
        assert any("[card ending 1111]" in value for value in places["redis"])  # the shared context
        seeded = [m for m in places["model"][-2:] if "Context from earlier in this call" in m]
        assert seeded and "[card ending 1111]" in seeded[0]
    for place, texts in places.items():
        found = {n for text in texts for n in leaks(text)}
        assert not found, f"{sorted(found)} in {place}"
    files = await asyncio.to_thread(_files, Path(relay.settings.data_dir))
    assert any(name.endswith(".flac") for name in files)
    for name, content in files.items():
        found_in_file = leaks(content.decode("latin-1"), strings=False)
        assert not found_in_file, f"{found_in_file} in {name}"

    # ---- the recording: silent over every span, both channels; the rest is there
    records = relay.state.records
    assert records is not None
    samples, rate = sf.read(io.BytesIO(records.audio_path(spec.call_sid).read_bytes()), dtype="int16")
    assert rate == 8000 and samples.shape == (len(customer), 2)
    silenced = np.zeros(len(samples), dtype=bool)
    for span in spans:
        first, last = int(span["start_s"] * rate), min(len(samples), int(np.ceil(span["end_s"] * rate)))
        assert last - first >= rate // 2  # at least the margins: a real span, not an empty one
        assert not samples[first:last].any(), span
        silenced[first:last] = True
    assert np.count_nonzero(samples[~silenced, 1]) > 0.9 * np.count_nonzero(~silenced)  # the agent's tone


async def test_with_redaction_off_the_numbers_are_found_and_startup_warns(
    start_relay: StartRelay,
    fake_realtime: FakeRealtimeServer,
    fake_twilio: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RELAY_REDACT=false: one warning at startup, and the search above finds the numbers
    (it is not blind)."""
    caplog.set_level(logging.INFO, logger="relay")
    fake_realtime.behaviour.turns = CUSTOMER[:2]
    fake_realtime.behaviour.turn_every_bytes = 48_000
    relay = await start_relay(redact=False, records=False)
    assert [r for r in caplog.records if "RELAY_REDACT=false" in r.getMessage()]
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.5)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=20)
    published = json.dumps(fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}"))
    assert leaks(published) == [CARD_A, SSN]
    summary = relay.state.recent_summaries[-1]
    assert summary["privacy"]["redaction"] is False and summary["privacy"]["redactions"] == {}


async def test_partials_ending_in_a_number_are_held_and_the_rest_masked(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    # The fake sends the first half of each transcript's words as a partial.
    fake_realtime.behaviour.turns = [
        Turn("My card number is 4111 1111 1111 1111 thanks", "{}"),  # "My card number is": shown
        Turn("card 4111 1111 1111 1111 please", "{}"),  # "card 4111 1111": held
    ]
    fake_realtime.behaviour.turn_every_bytes = 48_000
    relay = await start_relay(records=False)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.5)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=20)
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    # (Sync supersedes an unsent partial by its final: which partials reach it depends on timing.)
    partials = [m["text"] for m in published if m["type"] == "transcript" and not m["final"]]
    finals = [m["text"] for m in published if m["type"] == "transcript" and m["final"]]
    assert set(partials) <= {"My card number is"}
    assert finals == ["My card number is [card ending 1111] thanks", "card [card ending 1111] please"]
    assert relay.state.recent_summaries[-1]["events"]["partials_held"] == 1
    assert "4111" not in json.dumps(published)
