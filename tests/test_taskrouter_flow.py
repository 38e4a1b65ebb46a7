"""TaskRouter drives assist, over real sockets: signed events into `POST /twilio/taskrouter`,
REST calls asserted at the fake Twilio (Streams, Tasks, Workers, Conference participants)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from relay.cli.simulator import CallSpec, stream_call
from tests.conftest import PUBLIC_URL, TWILIO_TOKEN, RunningRelay, StartRelay, speech_like_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_server import FakeTwilio, Fault

URL = f"{PUBLIC_URL}/twilio/taskrouter"
CA = "CA" + "c" * 32
_event_ids = itertools.count(1)


def flex_task(call_sid: str = CA, **extra: Any) -> dict[str, Any]:
    return {"call_sid": call_sid, "from": "+15551230000", "to": "+15559870000", "direction": "inbound", **extra}


async def send(relay: RunningRelay, form: dict[str, str], *, sign: bool = True) -> int:
    headers = {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(URL, form)} if sign else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            relay.http_url("/twilio/taskrouter"),
            data=urlencode(form),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        ) as r,
    ):
        return r.status


def event(
    fake: FakeTwilio,
    kind: str,
    task: str,
    *,
    attributes: dict[str, Any] | None = None,
    worker: str | None = None,
    worker_attributes: dict[str, Any] | None = None,
    event_id: str | None = None,
    **extra: str,
) -> dict[str, str]:
    form = {
        "Sid": event_id or f"EV{next(_event_ids):032x}",
        "EventType": kind,
        "AccountSid": fake.state.account_sid,
        "WorkspaceSid": fake.state.workspace_sid,
        "TaskSid": task,
        "TaskAttributes": json.dumps(attributes if attributes is not None else flex_task()),
        "TaskChannelUniqueName": "voice",
        "TaskQueueName": "Support",
        "ResourceSid": task,
        "Timestamp": "1760000000",
        **extra,
    }
    if worker:
        form["WorkerSid"] = worker
        form["WorkerName"] = "alice@example.com"
    if worker_attributes is not None:
        form["WorkerAttributes"] = json.dumps(worker_attributes)
    return form


def creates(fake: FakeTwilio) -> list[tuple[str, dict[str, str]]]:
    return [(call, form) for kind, call, form in fake.state.rest_calls if kind == "create"]


def stops(fake: FakeTwilio) -> list[str]:
    return [call for kind, call, _ in fake.state.rest_calls if kind == "update"]


async def settled(relay: RunningRelay) -> None:
    await wait_until(lambda: not relay.state.background, timeout_s=15)


@pytest.fixture
def worker_ok() -> dict[str, Any]:
    return {"contact_uri": "client:alice_40example_2Ecom", "assist": True}


async def test_an_accepted_reservation_starts_the_stream_with_task_and_worker_parameters(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    relay = await start_relay()
    task, worker = "WT" + "1" * 32, "WK" + "1" * 32
    status = await send(
        relay, event(fake_twilio, "reservation.accepted", task, worker=worker, worker_attributes=worker_ok)
    )
    assert status == 204
    await settled(relay)
    [(call, form)] = creates(fake_twilio)
    assert call == CA
    assert form["Url"] == f"wss://relay.example.test/ws/{CA}" and form["Name"] == f"assist_{CA}"
    parameters = {form[f"Parameter{i}.Name"]: form[f"Parameter{i}.Value"] for i in range(1, 5)}
    assert parameters == {
        "TaskSid": task,
        "WorkspaceSid": fake_twilio.state.workspace_sid,
        "WorkerSid": worker,
        "WorkerIdentity": "alice_40example_2Ecom",
    }
    assert relay.state.taskrouter is not None
    assert relay.state.taskrouter.stats.actions == {"start:started": 1}


async def test_duplicates_redeliveries_and_the_plugin_make_no_second_stream(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    fake_twilio.add_agent("flex-token-agent", "alice_40example_2Ecom")
    relay = await start_relay()
    task = "WT" + "2" * 32
    accepted = event(fake_twilio, "reservation.accepted", task, worker="WK" + "2" * 32, worker_attributes=worker_ok)
    assert await send(relay, accepted) == 204
    assert await send(relay, accepted) == 204  # the same event again (at-least-once delivery)
    again = {**accepted, "Sid": "EV" + "f" * 32}  # re-delivered under another event id
    assert await send(relay, again) == 204
    await settled(relay)
    async with (
        aiohttp.ClientSession() as s,
        s.post(relay.http_url("/stream"), json={"action": "start", "callSid": CA, "Token": "flex-token-agent"}) as r,
    ):
        assert r.status == 200 and (await r.json())["already_running"] is True
    running = [s for s in fake_twilio.state.media_streams.values() if s["status"] == "in-progress"]
    assert len(running) == 1
    assert relay.state.taskrouter is not None
    assert relay.state.taskrouter.stats.outcomes["duplicate"] == 1
    assert relay.state.taskrouter.stats.actions == {"start:started": 1, "start:already_running": 1}


@pytest.mark.parametrize(
    ("attributes", "worker_attributes", "policy"),
    [
        (flex_task(), {"assist": False}, None),  # the worker opted out (default policy)
        ({"from": "client:alice", "to": "client:bob", "call_sid": CA}, {}, None),  # worker to worker
        (flex_task(assist_opt_out=True), {}, None),  # the task opted out
        (flex_task(), {"assist": True}, 'taskqueue.name IN ["Billing"]'),  # not in an assisted queue
        (flex_task(), {"team": "Tier 2"}, 'worker.team == "Tier 1"'),
    ],
)
async def test_tasks_the_policy_does_not_select_start_nothing(
    start_relay: StartRelay,
    fake_twilio: FakeTwilio,
    attributes: dict[str, Any],
    worker_attributes: dict[str, Any],
    policy: str | None,
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    relay = await start_relay(**({"taskrouter_policy": policy} if policy else {}))
    form = event(
        fake_twilio,
        "reservation.accepted",
        "WT" + "3" * 32,
        attributes=attributes,
        worker="WK" + "3" * 32,
        worker_attributes=worker_attributes,
    )
    assert await send(relay, form) == 204
    await settled(relay)
    assert creates(fake_twilio) == []
    assert relay.state.taskrouter is not None and relay.state.taskrouter.stats.outcomes == {"not_selected": 1}


async def test_a_completed_task_before_its_accepted_reservation_starts_nothing(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    relay = await start_relay()
    task = "WT" + "4" * 32
    await send(relay, event(fake_twilio, "task.completed", task))
    await settled(relay)
    await send(
        relay, event(fake_twilio, "reservation.accepted", task, worker="WK" + "4" * 32, worker_attributes=worker_ok)
    )
    await settled(relay)
    assert creates(fake_twilio) == [] and stops(fake_twilio) == []
    assert relay.state.taskrouter is not None
    assert relay.state.taskrouter.stats.outcomes["late_after_end"] == 1


async def test_an_end_arriving_while_the_start_is_in_flight_stops_the_stream_after_it(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    fake_twilio.state.stream_create_delay_s = 0.5
    relay = await start_relay(taskrouter_stop_grace_s=0.1)
    task = "WT" + "5" * 32
    await send(
        relay, event(fake_twilio, "reservation.accepted", task, worker="WK" + "5" * 32, worker_attributes=worker_ok)
    )
    await send(relay, event(fake_twilio, "task.canceled", task))
    await settled(relay)
    assert [call for call, _ in creates(fake_twilio)] == [CA] and stops(fake_twilio) == [CA]
    assert all(s["status"] == "stopped" for s in fake_twilio.state.media_streams.values())


async def test_the_customer_leg_is_found_through_the_conference_and_the_worker_over_rest(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    conference = fake_twilio.add_conference({"customer": CA, "worker": "CA" + "d" * 32})
    worker = fake_twilio.add_worker({"contact_uri": "client:bob", "assist": True}, name="bob")
    relay = await start_relay()
    form = event(
        fake_twilio,
        "reservation.accepted",
        "WT" + "6" * 32,
        attributes={"from": "+15551230000", "conference": {"sid": conference}},
        worker=worker,  # no WorkerAttributes in the event: fetched
    )
    await send(relay, form)
    await settled(relay)
    [(call, created)] = creates(fake_twilio)
    assert call == CA and created["Parameter4.Value"] == "bob"
    assert ("participants", conference, {}) in fake_twilio.state.rest_calls
    assert relay.state.taskrouter is not None
    assert relay.state.taskrouter.stats.actions["participants:ok"] == 1
    assert relay.state.taskrouter.stats.actions["worker_fetch:ok"] == 1


async def test_twilio_errors_are_retried_or_reported_with_their_code(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    fake_twilio.state.api_faults.extend([Fault(429, 20429, "Too Many Requests"), Fault(503, 20503, "Unavailable")])
    relay = await start_relay()
    await send(
        relay, event(fake_twilio, "reservation.accepted", "WT" + "7" * 32, worker="WK7", worker_attributes=worker_ok)
    )
    await settled(relay)
    gone = "CA" + "e" * 32  # a call that ended already: 404
    await send(
        relay,
        event(
            fake_twilio,
            "reservation.accepted",
            "WT" + "8" * 32,
            attributes=flex_task(gone),
            worker="WK8",
            worker_attributes=worker_ok,
        ),
    )
    await wait_until(lambda: len(creates(fake_twilio)) >= 4, timeout_s=20)
    await settled(relay)
    assert relay.state.taskrouter is not None
    assert relay.state.taskrouter.stats.actions == {"start:started": 1, "start:call_not_found": 1}
    assert [call for call, _ in creates(fake_twilio)].count(CA) == 3  # 429, 503, then started


async def test_a_transfer_keeps_the_stream_and_the_last_task_ends_it(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    relay = await start_relay(taskrouter_stop_grace_s=0.1)
    first, second = "WT" + "a" * 32, "WT" + "b" * 32
    await send(relay, event(fake_twilio, "reservation.accepted", first, worker="WKa", worker_attributes=worker_ok))
    await settled(relay)
    await send(relay, event(fake_twilio, "task.transfer-initiated", first))
    await send(relay, event(fake_twilio, "task.wrapup", first))
    await send(relay, event(fake_twilio, "reservation.accepted", second, worker="WKb", worker_attributes=worker_ok))
    await settled(relay)
    assert stops(fake_twilio) == []  # the call goes on with the second worker
    assert len([s for s in fake_twilio.state.media_streams.values() if s["status"] == "in-progress"]) == 1
    await send(relay, event(fake_twilio, "task.completed", second))
    await settled(relay)
    assert stops(fake_twilio) == [CA]


async def test_an_external_transfer_stops_assist_by_the_stop_policy(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    relay = await start_relay(taskrouter_stop_grace_s=0.1)
    task = "WT" + "c" * 32
    await send(relay, event(fake_twilio, "reservation.accepted", task, worker="WKc", worker_attributes=worker_ok))
    await settled(relay)
    await send(relay, event(fake_twilio, "task.updated", task, attributes=flex_task(transfer_target_type="internal")))
    await settled(relay)
    assert stops(fake_twilio) == []
    external = flex_task(conference={"sid": "CF1", "participants": {"customer": CA, "external": "CA" + "f" * 32}})
    await send(relay, event(fake_twilio, "task.updated", task, attributes=external))
    await settled(relay)
    assert stops(fake_twilio) == [CA]


async def test_event_streams_batches_are_accepted_when_signed(
    start_relay: StartRelay, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    fake_twilio.state.calls[CA] = "in-progress"
    relay = await start_relay()
    payload = {
        "sid": "EV" + "5" * 32,
        "eventtype": "reservation.accepted",
        "workspace_sid": fake_twilio.state.workspace_sid,
        "task_sid": "WT" + "d" * 32,
        "task_attributes": json.dumps(flex_task()),
        "task_channel_unique_name": "voice",
        "worker_sid": "WK" + "d" * 32,
        "worker_attributes": json.dumps(worker_ok),
    }
    body = json.dumps(
        [
            {
                "specversion": "1.0",
                "type": "com.twilio.taskrouter.reservation.accepted",
                "id": "NO1",
                "data": {"payload": payload},
            }
        ]
    )
    digest = hashlib.sha256(body.encode()).hexdigest()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{URL}?bodySHA256={digest}", {})
    async with aiohttp.ClientSession() as s:
        async with s.post(
            relay.http_url(f"/twilio/taskrouter?bodySHA256={digest}"),
            data=body,
            headers={"Content-Type": "application/json", "X-Twilio-Signature": signature},
        ) as r:
            assert r.status == 204
        async with s.post(
            relay.http_url(f"/twilio/taskrouter?bodySHA256={digest}"),
            data=body.replace("voice", "video"),  # the body no longer matches its hash
            headers={"Content-Type": "application/json", "X-Twilio-Signature": signature},
        ) as r:
            assert r.status == 403
        unhashed = RequestValidator(TWILIO_TOKEN).compute_signature(URL, {})
        async with s.post(  # signed over the URL alone: the body would not be covered
            relay.http_url("/twilio/taskrouter"),
            data=body,
            headers={"Content-Type": "application/json", "X-Twilio-Signature": unhashed},
        ) as r:
            assert r.status == 403
    await settled(relay)
    assert [call for call, _ in creates(fake_twilio)] == [CA]


async def test_unsigned_or_malformed_events_are_refused(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    relay = await start_relay()
    form = event(fake_twilio, "reservation.accepted", "WT" + "e" * 32)
    assert await send(relay, form, sign=False) == 403
    assert await send(relay, {**form, "TaskAttributes": "{broken"}) == 400
    assert creates(fake_twilio) == []


async def test_wrap_up_on_the_task_ends_the_live_call_and_writes_its_wrap_up(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, worker_ok: dict[str, Any]
) -> None:
    """The whole chain: TaskRouter starts assist, the call streams, the task goes to wrap-up,
    the relay stops the stream and, as Twilio's `stop` does not come (the simulator plays
    Twilio here), ends the call itself; the wrap-up lands on the task."""
    fake_twilio.state.calls[CA] = "in-progress"
    task = fake_twilio.add_task(flex_task())
    relay = await start_relay(taskrouter_stop_grace_s=0.2)
    await send(
        relay, event(fake_twilio, "reservation.accepted", task, worker="WK" + "9" * 32, worker_attributes=worker_ok)
    )
    await settled(relay)
    [(_, created)] = creates(fake_twilio)
    parameters = {created[f"Parameter{i}.Name"]: created[f"Parameter{i}.Value"] for i in range(1, 5)}
    spec = CallSpec(
        audio={"inbound": speech_like_ulaw(30.0)}, call_sid=CA, pace=1.0, custom_parameters=parameters, send_stop=False
    )
    call = asyncio.create_task(stream_call(relay.ws_url(f"/ws/{CA}"), spec, headers=relay.signed_headers(f"/ws/{CA}")))
    await wait_until(lambda: CA in relay.state.calls, timeout_s=10)
    await send(relay, event(fake_twilio, "task.wrapup", task))
    result = await asyncio.wait_for(call, timeout=15)
    assert result.close_code == 1000 and result.close_reason == "taskrouter_wrapup"
    await wait_until(lambda: relay.state.idle and not relay.state.background, timeout_s=15)
    assert stops(fake_twilio) == [CA]
    summary = relay.state.recent_summaries[-1]
    assert summary["reason"] == "taskrouter_wrapup" and summary["task_sid"] == task
    assert fake_twilio.task_attributes(task)["assist_wrapup"]["call_sid"] == CA
