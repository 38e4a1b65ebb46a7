"""Errors a Sync transport raises, translated at the boundary from the SDK's own.

The publisher decides retry policy from these classes alone, never from SDK types.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class. `status` and `code` are Twilio's HTTP status and error code, when known."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SyncRetryableError(SyncError):
    """429 (54009), 5xx, timeouts and connection errors: worth another try."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class SyncNotFoundError(SyncError):
    """The stream (or service) does not exist: 404 / 20404."""


class SyncAlreadyExistsError(SyncError):
    """Creating a stream whose unique name is taken: 409 / 54301."""


class SyncRejectedError(SyncError):
    """Any other 4xx: the request itself is wrong, so retrying cannot help."""
