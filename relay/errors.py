"""One exception hierarchy, so every handler can tell whose fault a failure is.

In the spirit of h11's local vs remote errors:

- `RemoteProtocolError`: a peer (Twilio, a Media Streams client, a browser) broke the protocol
  or sent input we refuse. Answer it precisely (close code, HTTP status) and carry on.
- `UpstreamError`: a system we depend on (OpenAI, Twilio) failed or refused. Retry,
  degrade, or tell the caller 502/503 — never blame the peer.
- `ConfigurationError`: the operator's configuration cannot work. Fail at startup, naming it.

The Sync publisher keeps its own hierarchy (`sync_publisher.errors`): it is usable alone.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""


class RemoteProtocolError(RelayError):
    """A peer broke the protocol or sent input the relay refuses."""


class UpstreamError(RelayError):
    """A system the relay depends on failed or refused."""


class ConfigurationError(RelayError):
    """The configuration cannot work; startup fails with this message."""
