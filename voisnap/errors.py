"""Errors that cross module boundaries. Protocol errors live in ``protocol.errors``."""

from __future__ import annotations


class HubError(Exception):
    """Raised by a hub method to send its message to the caller.

    Like ASP.NET Core's ``HubException``: its text always reaches the client
    (``An unexpected error occurred invoking 'X' on the server. HubException: <text>``),
    whereas other exceptions are only described when detailed errors are on.
    """


class ServiceUnavailable(HubError):
    """Something the server depends on (its database) cannot be reached now.
    The text is safe to show; REST answers it with 503."""


class ConnectionClosed(Exception):
    """The transport under a connection is gone. ``reason`` says why, for logs."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class AuthenticationError(Exception):
    """A request carried no valid access token; answered with HTTP 401."""
