"""The Voisnap error codes (seed 002, "Error codes"; docs/hubs/voisnap.md, "Errors").

Each is sent as the ``Error`` event, ``{code, message, recoverable}``. After a
code that is not recoverable the server closes the connection (its Close says
the same message); after a recoverable one the session goes on.
"""

from __future__ import annotations

from .events import Error

AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
AGENT_INACTIVE = "AGENT_INACTIVE"
AUTH_FAILED = "AUTH_FAILED"
STT_PROVIDER_TIMEOUT = "STT_PROVIDER_TIMEOUT"
LLM_PROVIDER_ERROR = "LLM_PROVIDER_ERROR"
SESSION_LIMIT_REACHED = "SESSION_LIMIT_REACHED"
RECONNECT_FAILED = "RECONNECT_FAILED"
INVALID_REQUEST = "INVALID_REQUEST"
"""An extension: a connect query or a method call the server cannot take."""
SESSION_ENDED = "SESSION_ENDED"
"""An extension: a call on a conversation that another connection ended."""

RECOVERABLE = frozenset({STT_PROVIDER_TIMEOUT, LLM_PROVIDER_ERROR})


class VoisnapFault(Exception):
    """A Voisnap error, raised where it happens and sent as ``Error``."""

    def __init__(self, code: str, message: str, *, recoverable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.recoverable = code in RECOVERABLE if recoverable is None else recoverable

    def event(self) -> Error:
        return Error(self.code, str(self), self.recoverable)
