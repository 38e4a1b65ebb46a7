"""The model-session seam: what a call's `ModelLink` needs from a model, whichever it is.

`RealtimeConnector.open(config)` gives a configured `RealtimeSession`; its `events()` yield
the pure `ModelEvent`s of `model_events`. Adapters: `openai_realtime` (the official SDK) and
`local_engine` (offline). Both raise only the two errors below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from relay.errors import UpstreamError
from relay.model.events import SESSION_UPDATE_EVENT_ID, ModelEvent
from relay.usage import Truncation


@dataclass(frozen=True, slots=True)
class SessionConfig:
    instructions: str
    audio_format: str  # "pcm24k" | "pcmu"
    transcription_model: str
    transcription_language: str | None = None
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_ms: int = 500
    # A transcription-only session (the agent's track): no responses, no instructions.
    transcription_only: bool = False
    # Function tools the model may call (the `session.update` shape), e.g. knowledge search.
    tools: tuple[dict[str, Any], ...] = ()
    # How much of the conversation each response re-reads (and is billed for): past
    # `post_instructions` tokens the oldest items go, down to `retention_ratio` of it. None:
    # the API's default (`auto`, up to the model's whole context).
    truncation: Truncation | None = None

    def session_update(self) -> dict[str, Any]:
        """The GA `session.update` event (reference D3)."""
        audio_format: dict[str, Any] = (
            {"type": "audio/pcmu"} if self.audio_format == "pcmu" else {"type": "audio/pcm", "rate": 24000}
        )
        transcription: dict[str, Any] = {"model": self.transcription_model}
        if self.transcription_language:
            transcription["language"] = self.transcription_language
        vad: dict[str, Any] = {
            "type": "server_vad",
            "threshold": self.vad_threshold,
            "prefix_padding_ms": self.vad_prefix_padding_ms,
            "silence_duration_ms": self.vad_silence_ms,
        }
        if self.transcription_only:
            return {
                "type": "session.update",
                "event_id": SESSION_UPDATE_EVENT_ID,
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": audio_format, "transcription": transcription, "turn_detection": vad}},
                },
            }
        return {
            "type": "session.update",
            "event_id": SESSION_UPDATE_EVENT_ID,
            "session": {
                "type": "realtime",
                "instructions": self.instructions,
                "output_modalities": ["text"],
                "audio": {
                    "input": {
                        "format": audio_format,
                        "transcription": transcription,
                        # A new customer turn must not cancel the suggestion for the last one.
                        "turn_detection": {**vad, "create_response": True, "interrupt_response": False},
                    }
                },
                **({"tools": [dict(t) for t in self.tools], "tool_choice": "auto"} if self.tools else {}),
                **({"truncation": self.truncation.session_field()} if self.truncation is not None else {}),
            },
        }


class RealtimeConnectError(UpstreamError):
    """Could not open a session. `fatal` means retrying cannot help (auth, model)."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class SessionClosedError(UpstreamError):
    """Sending on a session that is gone."""


class RealtimeSession(Protocol):
    """One model session. `events()` ends after yielding a `SessionClosed`."""

    async def send_audio(self, audio: bytes) -> None: ...

    async def add_context(self, text: str) -> None: ...

    async def send_tool_result(self, call_id: str, output: str, *, more_tools: bool) -> None:
        """Answer a `ToolCall` and ask the model to go on (with or without further tools)."""
        ...

    async def end_turn(self, *, respond: bool) -> None:
        """The call is ending while the customer is still speaking: take the audio sent so far
        as the turn (transcribe it) and, with `respond`, answer it."""
        ...

    def events(self) -> AsyncIterator[ModelEvent]: ...

    async def close(self) -> None: ...


class RealtimeConnector(Protocol):
    """Opens sessions: the OpenAI adapter in production, the local engine offline."""

    async def open(self, config: SessionConfig) -> RealtimeSession: ...
