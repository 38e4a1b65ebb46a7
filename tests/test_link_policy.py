"""The model link's rules as tables: events and the time in, decisions out. No sockets, no
sleeps: the backoff is a fixed function and the clock is the numbers in the rows."""

from __future__ import annotations

import pytest

from relay.model.link_policy import (
    SPARE_RETRY_S,
    YOUNG_SESSION_S,
    Connect,
    ConnectPolicy,
    ConnectRules,
    Decision,
    GiveUp,
    KeepGoing,
    Notify,
    OpenSpare,
    ReplayRecent,
    RolloverPolicy,
    RolloverRules,
    Spare,
    Stop,
    SwapSessions,
    Wait,
)


def policy(max_attempts: int = 3) -> ConnectPolicy:
    # The backoff is the attempt number in seconds: each row shows which attempt it is.
    return ConnectPolicy(ConnectRules(max_attempts=max_attempts), backoff=float)


DEGRADED = Notify("degraded", "model_unavailable: api.example: connection refused")


# ---------------------------------------------------------------------------- connecting


def test_a_call_starts_by_connecting_and_a_first_session_notifies_nothing() -> None:
    p = policy()
    assert p.begin() == Connect()
    assert p.connected() == ()


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        # First failure: tell the agent once, back off 1 s.
        (1, Decision((DEGRADED,), Wait(1.0))),
        # Later failures: no second notice, longer backoff.
        (2, Decision((), Wait(2.0))),
        (3, Decision((), Wait(3.0))),
        # Past max_attempts: give up.
        (4, Decision((GiveUp("model unreachable after retries"),), Stop())),
        # After giving up, nothing more happens.
        (5, Decision((), Stop())),
    ],
)
def test_refused_connects_back_off_then_give_up(failures: int, expected: Decision) -> None:
    p = policy(max_attempts=3)
    decision = None
    for _ in range(failures):
        decision = p.connect_failed("api.example: connection refused", fatal=False)
    assert decision == expected


def test_a_fatal_refusal_gives_up_at_once() -> None:
    p = policy()
    assert p.connect_failed("HTTP 401", fatal=True) == Decision(
        (GiveUp("model rejected the session: HTTP 401"),), Stop()
    )
    assert p.failed == "model rejected the session: HTTP 401"
    assert p.wait_over(has_audio=True) == Stop()


def test_recovery_is_announced_once_after_a_degraded_spell() -> None:
    p = policy()
    p.connect_failed("x", fatal=False)
    assert p.degraded
    assert p.connected() == (Notify("recovered", "model session restored"),)
    assert p.connected() == ()


@pytest.mark.parametrize(
    ("lived_s", "expected"),
    [
        # A session that served a while: replay, reconnect at once (the attempt count resets).
        (YOUNG_SESSION_S, Decision((Notify("degraded", "model_connection_lost"), ReplayRecent()), Wait(0.0))),
        (600.0, Decision((Notify("degraded", "model_connection_lost"), ReplayRecent()), Wait(0.0))),
        # One that died young counts as a failed attempt and backs off.
        (0.5, Decision((Notify("degraded", "model_connection_lost"), ReplayRecent()), Wait(1.0))),
    ],
)
def test_a_lost_session_replays_and_reconnects(lived_s: float, expected: Decision) -> None:
    p = policy()
    assert p.session_lost(lived_s=lived_s) == expected
    assert p.wait_over(has_audio=False) == Connect()  # the call goes on: connect anyway


def test_sessions_that_keep_dying_young_give_up() -> None:
    p = policy(max_attempts=2)
    p.session_lost(lived_s=0.1)
    assert p.session_lost(lived_s=0.1).step == Wait(2.0)
    decision = p.session_lost(lived_s=0.1)
    assert decision.step == Stop() and GiveUp("model sessions keep failing") in decision.effects
    assert ReplayRecent() in decision.effects  # the effects of the loss still happen


def test_a_long_lived_session_resets_the_attempts() -> None:
    p = policy(max_attempts=2)
    p.session_lost(lived_s=0.1)
    p.session_lost(lived_s=0.1)
    assert p.session_lost(lived_s=60.0).step == Wait(0.0)
    assert p.attempt == 0
    assert p.session_lost(lived_s=0.1).step == Wait(1.0)


@pytest.mark.parametrize(
    ("closing", "has_audio", "expected"),
    [
        (False, False, Connect()),
        (False, True, Connect()),
        # The call ended: connect only to deliver buffered audio (the last question).
        (True, True, Connect()),
        (True, False, Stop()),
    ],
)
def test_after_a_wait_connect_only_if_there_is_something_to_deliver(
    closing: bool, has_audio: bool, expected: object
) -> None:
    p = policy()
    p.connect_failed("x", fatal=False)
    if closing:
        p.call_ending()
    assert p.wait_over(has_audio=has_audio) == expected


def test_a_fatal_model_error_gives_up_once() -> None:
    p = policy()
    assert p.model_error("model error: insufficient_quota") == Decision(
        (GiveUp("model error: insufficient_quota"),), Stop()
    )
    assert p.model_error("model error: again") == Decision((), Stop())
    assert p.connect_failed("x", fatal=False) == Decision((), Stop())


def test_nothing_more_happens_after_giving_up() -> None:
    p = policy()
    p.model_error("model error: invalid_api_key")
    assert p.session_lost(lived_s=60.0) == Decision((), Stop())
    assert p.connected() == ()


# ---------------------------------------------------------------------------- rollover

RULES = RolloverRules(session_max_age_s=100.0, grace_s=20.0)


def rollover(opened_at: float = 0.0) -> RolloverPolicy:
    r = RolloverPolicy(RULES)
    r.session_started(opened_at)
    return r


@pytest.mark.parametrize(
    ("now", "closing", "expected"),
    [
        (50.0, False, KeepGoing()),  # young
        (99.9, False, KeepGoing()),
        (100.0, False, OpenSpare()),  # at the age limit: open a spare in the background
        (100.0, True, KeepGoing()),  # the call is ending: never roll over
    ],
)
def test_a_spare_is_opened_at_the_age_limit(now: float, closing: bool, expected: object) -> None:
    assert rollover().next(now, closing=closing) == expected


def test_while_the_spare_opens_the_current_session_keeps_serving() -> None:
    r = rollover()
    assert r.next(100.0, closing=False) == OpenSpare()
    assert r.spare is Spare.OPENING
    assert r.next(101.0, closing=False) == KeepGoing()
    r.turn_ended()  # a boundary while still opening counts once the spare is ready
    r.spare_opened()
    assert r.next(102.0, closing=False) == SwapSessions(at_turn_boundary=True)


@pytest.mark.parametrize(
    ("boundary", "now", "expected"),
    [
        # Ready, no boundary yet, within the grace period: wait for the customer's turn to end.
        (False, 110.0, KeepGoing()),
        # A turn ended: switch there.
        (True, 110.0, SwapSessions(at_turn_boundary=True)),
        # Past the grace period: switch anyway.
        (False, 120.0, SwapSessions(at_turn_boundary=False)),
    ],
)
def test_the_swap_waits_for_a_turn_boundary_within_the_grace(boundary: bool, now: float, expected: object) -> None:
    r = rollover()
    r.next(100.0, closing=False)
    r.spare_opened()
    if boundary:
        r.turn_ended()
    assert r.next(now, closing=False) == expected


def test_a_boundary_before_the_spare_was_asked_for_does_not_count() -> None:
    r = rollover()
    r.turn_ended()  # at age 50: no rollover pending
    r.next(100.0, closing=False)
    r.spare_opened()
    assert r.next(101.0, closing=False) == KeepGoing()


def test_a_failed_spare_is_retried_after_a_pause_not_on_every_append() -> None:
    r = rollover()
    assert r.next(100.0, closing=False) == OpenSpare()
    r.spare_failed(now=100.5)
    assert r.next(101.0, closing=False) == KeepGoing()
    assert r.next(105.4, closing=False) == KeepGoing()
    assert r.next(105.5, closing=False) == OpenSpare()


def test_after_a_swap_the_new_session_ages_from_its_own_start() -> None:
    r = rollover()
    r.next(100.0, closing=False)
    r.spare_opened()
    r.turn_ended()
    assert isinstance(r.next(101.0, closing=False), SwapSessions)
    r.session_started(100.5)  # the spare's opening time
    assert r.spare is Spare.NONE
    assert r.next(150.0, closing=False) == KeepGoing()
    assert r.next(200.5, closing=False) == OpenSpare()


def test_no_rollover_before_a_session_starts_even_on_a_clock_far_from_zero() -> None:
    # "Not started" is None, not 0.0: with a clock already past the age limit, a 0.0 would
    # read as a session 100+ s old and open a spare for a session that never started.
    assert RolloverPolicy(RULES).next(1_000.0, closing=False) == KeepGoing()


def test_a_failed_spare_on_a_fresh_clock_is_retried_only_after_its_delay() -> None:
    r = rollover(opened_at=0.0)
    assert r.next(100.0, closing=False) == OpenSpare()
    r.spare_failed(100.0)
    assert r.next(100.0 + SPARE_RETRY_S / 2, closing=False) == KeepGoing()
    assert r.next(100.0 + SPARE_RETRY_S, closing=False) == OpenSpare()
