"""Whose fault is it: every error the relay raises sits under one hierarchy."""

from __future__ import annotations

import pytest

from relay.audio.callfile import CallFileError
from relay.errors import ConfigurationError, RelayError, RemoteProtocolError, UpstreamError
from relay.knowledge.base import KnowledgeError
from relay.knowledge.prompts import PromptError
from relay.model.session import RealtimeConnectError, SessionClosedError
from relay.settings import SettingsError
from relay.twilio.flex_auth import FlexAuthError
from relay.twilio.media import ProtocolViolation


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ProtocolViolation, RemoteProtocolError),
        (RealtimeConnectError, UpstreamError),
        (SessionClosedError, UpstreamError),
        (SettingsError, ConfigurationError),
        (PromptError, ConfigurationError),
        (KnowledgeError, ConfigurationError),
        (FlexAuthError, RelayError),
        (CallFileError, RelayError),
    ],
)
def test_error_belongs_to_its_kind(error: type[Exception], kind: type[Exception]) -> None:
    assert issubclass(error, kind) and issubclass(error, RelayError)
