"""Pure: when a call's model link connects, backs off, gives up, and rolls sessions over.

The rules that used to live in `ModelLink` beside its sockets, as two small state machines
in the style of h11's `_state.py`: events and the current time in, decisions out. No
asyncio, no clock of their own: `ModelLink` performs the decisions and feeds back what
happened. Every transition is table-tested in tests/test_link_policy.py.

- `ConnectPolicy`: the session lifecycle. A decision is some `Effect`s to perform at once
  (tell the agent assist is degraded or back, re-queue the replay window, give up) and the
  one `Step` to take next (connect, wait, stop).
- `RolloverPolicy`: a session nearing OpenAI's 60-minute limit is replaced, at a turn
  boundary when one comes within the grace period, by a spare opened in the background.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sync_publisher.backoff import backoff_delay

# A session that dies younger than this counts as a failed attempt, so a server that
# accepts and drops at once is not hammered.
YOUNG_SESSION_S: Final = 5.0
# After a spare session failed to open, the current one still works: try again later.
SPARE_RETRY_S: Final = 5.0

# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell the call (the agent's status) the link's state: `degraded` or `recovered`."""

    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReplayRecent:
    """Queue the audio sent just before the loss ahead of new audio (it may be unheard)."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Assist is unavailable for the rest of the call."""

    reason: str


Effect = Notify | ReplayRecent | GiveUp


@dataclass(frozen=True, slots=True)
class Connect:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Step = Connect | Wait | Stop


@dataclass(frozen=True, slots=True)
class Decision:
    effects: tuple[Effect, ...]
    step: Step


# ---------------------------------------------------------------------------- connecting


@dataclass(frozen=True, slots=True)
class ConnectRules:
    max_attempts: int = 8
    initial_delay_s: float = 0.25
    max_delay_s: float = 8.0


class ConnectPolicy:
    """Session lifecycle: connect → serve → (lost → back off →) connect … until the call
    ends or the attempts run out. Every path that does not give up goes through a `Wait`
    (0 s after a session that lived long enough) and then `wait_over()`, which decides,
    with the effects already performed, whether there is anything left to connect for.
    `backoff(attempt)` draws the delay (jittered)."""

    def __init__(self, rules: ConnectRules, backoff: Callable[[int], float]) -> None:
        self._rules = rules
        self._backoff = backoff
        self._attempt = 0
        self._degraded = False
        self._failed: str | None = None
        self._closing = False

    @property
    def failed(self) -> str | None:
        return self._failed

    @property
    def degraded(self) -> bool:
        return self._degraded

    @property
    def attempt(self) -> int:
        """Failed attempts in a row (reset by a session that lived long enough)."""
        return self._attempt

    def call_ending(self) -> None:
        """No new audio will come; go on only while buffered audio waits."""
        self._closing = True

    def begin(self) -> Step:
        return self._next(has_audio=True)

    def connected(self) -> tuple[Effect, ...]:
        """A session is configured and about to be served."""
        if self._degraded:
            self._degraded = False
            return (Notify("recovered", "model session restored"),)
        return ()

    def connect_failed(self, reason: str, *, fatal: bool) -> Decision:
        if self._failed is not None:
            return Decision((), Stop())
        if fatal:
            return self._give_up(f"model rejected the session: {reason}")
        self._attempt += 1
        if self._attempt > self._rules.max_attempts:
            return self._give_up("model unreachable after retries")
        return Decision(self._degrade(f"model_unavailable: {reason}"[:200]), Wait(self._backoff(self._attempt)))

    def session_lost(self, *, lived_s: float) -> Decision:
        """The current session closed while the call still needed it."""
        if self._failed is not None:
            return Decision((), Stop())
        effects = (*self._degrade("model_connection_lost"), ReplayRecent())
        if lived_s >= YOUNG_SESSION_S:
            self._attempt = 0
            return Decision(effects, Wait(0.0))
        self._attempt += 1
        if self._attempt > self._rules.max_attempts:
            return self._give_up("model sessions keep failing", effects)
        return Decision(effects, Wait(self._backoff(self._attempt)))

    def wait_over(self, *, has_audio: bool) -> Step:
        return self._next(has_audio)

    def model_error(self, reason: str) -> Decision:
        """The model said the session cannot go on (an error classified fatal)."""
        return self._give_up(reason)

    # ------------------------------------------------------------------ helpers

    def _next(self, has_audio: bool) -> Step:
        # After the call ends, go on only to deliver what is buffered (the customer's last
        # question deserves an answer); the flush deadline bounds this.
        if self._failed is not None or (self._closing and not has_audio):
            return Stop()
        return Connect()

    def _degrade(self, reason: str) -> tuple[Effect, ...]:
        if self._degraded or self._failed is not None:
            return ()
        self._degraded = True
        return (Notify("degraded", reason),)

    def _give_up(self, reason: str, effects: tuple[Effect, ...] = ()) -> Decision:
        if self._failed is not None:
            return Decision((), Stop())
        self._failed = reason
        return Decision((*effects, GiveUp(reason)), Stop())


# ---------------------------------------------------------------------------- rollover


class Spare(enum.Enum):
    NONE = "none"
    OPENING = "opening"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class OpenSpare:
    """Open the next session in the background."""


@dataclass(frozen=True, slots=True)
class SwapSessions:
    """Make the spare current; the old session answers its last turn, then closes."""

    at_turn_boundary: bool


@dataclass(frozen=True, slots=True)
class KeepGoing:
    pass


RolloverStep = OpenSpare | SwapSessions | KeepGoing


@dataclass(frozen=True, slots=True)
class RolloverRules:
    session_max_age_s: float = 55 * 60
    # After the age limit, wait this long at most for a turn boundary before switching.
    grace_s: float = 120.0


class RolloverPolicy:
    def __init__(self, rules: RolloverRules) -> None:
        self._rules = rules
        # None until a session starts: "never" is not a time (a fresh machine's clock is near 0).
        self._opened_at: float | None = None
        self._spare = Spare.NONE
        self._boundary = False
        self._retry_at: float | None = None  # no spare has failed yet

    @property
    def spare(self) -> Spare:
        return self._spare

    def session_started(self, now: float) -> None:
        """A session became current (first, after a reconnect, or by a swap)."""
        self._opened_at = now
        self._spare = Spare.NONE
        self._boundary = False

    def turn_ended(self) -> None:
        """The current session saw the end of a customer turn (`speech_stopped`)."""
        if self._spare is not Spare.NONE:  # only a boundary after the spare was asked for counts
            self._boundary = True

    def spare_opened(self) -> None:
        self._spare = Spare.READY

    def spare_failed(self, now: float) -> None:
        self._spare = Spare.NONE
        self._retry_at = now + SPARE_RETRY_S

    def next(self, now: float, *, closing: bool) -> RolloverStep:
        if self._opened_at is None:
            return KeepGoing()
        age = now - self._opened_at
        if closing or age < self._rules.session_max_age_s:
            return KeepGoing()
        if self._spare is Spare.NONE:
            if self._retry_at is not None and now < self._retry_at:
                return KeepGoing()
            self._spare = Spare.OPENING
            self._boundary = False
            return OpenSpare()
        if self._spare is Spare.OPENING:
            return KeepGoing()
        overdue = age >= self._rules.session_max_age_s + self._rules.grace_s
        if self._boundary or overdue:
            return SwapSessions(at_turn_boundary=self._boundary)
        return KeepGoing()


def default_backoff(rules: ConnectRules, rng: random.Random) -> Callable[[int], float]:
    """The jittered exponential backoff every retry loop uses, drawn from `rng`."""
    return lambda attempt: backoff_delay(attempt, initial_s=rules.initial_delay_s, max_s=rules.max_delay_s, rng=rng)
