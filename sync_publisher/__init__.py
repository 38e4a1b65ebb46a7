"""Publish agent-assist messages to Twilio Sync streams within Twilio's limits."""

from .errors import (
    SyncAlreadyExistsError,
    SyncError,
    SyncNotFoundError,
    SyncRejectedError,
    SyncRetryableError,
)
from .messages import MAX_MESSAGE_BYTES, Kind, Outgoing, split, status, suggestion, transcript
from .publisher import (
    Channel,
    PublisherConfig,
    PublisherStats,
    StreamPublisher,
    StreamReport,
    SyncPublisher,
    SyncTransport,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Channel",
    "Kind",
    "Outgoing",
    "PublisherConfig",
    "PublisherStats",
    "StreamPublisher",
    "StreamReport",
    "SyncAlreadyExistsError",
    "SyncError",
    "SyncNotFoundError",
    "SyncPublisher",
    "SyncRejectedError",
    "SyncRetryableError",
    "SyncTransport",
    "split",
    "status",
    "suggestion",
    "transcript",
]
