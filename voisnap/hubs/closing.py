"""Why a hub connection ended: a typed reason, and what the client is told.

Every connection ends exactly once, for one reason, and the first reason wins
(a slow client evicted during shutdown was evicted, not shut down). As
centrifuge's ``Disconnect`` does, the reason travels as a value: a
``CloseReason`` for logs, statistics and tests, the ``CloseMessage`` the client
receives (if it can still receive anything), and the exception
``on_disconnected`` is given (``None`` when nothing went wrong).

What a client observes for each reason (docs/errors.md, "Close reasons"):

====================  =====================================================  ==============
reason                Close message error                                    allowReconnect
====================  =====================================================  ==============
CLIENT_CLOSED         none: the client left (EOF, WebSocket Close, Close)    -
HANDSHAKE_FAILED      none: a handshake error response instead               -
PROTOCOL_ERROR        "Connection closed with an error. InvalidDataException: ..."  true
TIMEOUT               "Connection closed with an error. The client sent ..." true
TOKEN_EXPIRED         "Server closed the connection: the access token ..."  true
SLOW_CONSUMER         "Server closed the connection: the client was too ..." true
RESUME_FAILED         "Server closed the connection: messages it sent ..."  true
SHUTDOWN              "Server is shutting down."                             true
SERVER_CLOSED         none, or the hub's own (``Context.Abort()``, a revoked token)
ERROR                 "Connection closed with an error." (+ detail)          false
====================  =====================================================  ==============
"""

from __future__ import annotations

import enum

import attrs

from ..errors import ConnectionClosed
from ..protocol import CloseMessage

SLOW_CONSUMER = "Server closed the connection: the client was too slow to read its messages."
TOKEN_EXPIRED = "Server closed the connection: the access token expired."
SHUTTING_DOWN = "Server is shutting down."
HANDSHAKE_CANCELED = "Handshake was canceled."
CLOSED_WITH_ERROR = "Connection closed with an error."
RESUME_GAP = "Server closed the connection: messages it sent while the client was away are lost."


class CloseReason(enum.Enum):
    CLIENT_CLOSED = "client closed"
    HANDSHAKE_FAILED = "handshake failed"
    PROTOCOL_ERROR = "protocol error"
    TIMEOUT = "timeout"
    TOKEN_EXPIRED = "token expired"
    SLOW_CONSUMER = "evicted as slow"
    RESUME_FAILED = "stateful reconnect failed"
    SHUTDOWN = "server shutdown"
    SERVER_CLOSED = "closed by the server"
    ERROR = "error"


@attrs.frozen
class Disconnect:
    """One connection's end: why, what the client is told, what the hub hears."""

    reason: CloseReason
    message: CloseMessage | None = None
    """Sent to the client before the transport closes, if it can take it."""
    cause: Exception | None = None
    """Given to ``on_disconnected``: None when nothing went wrong."""


CLIENT_LEFT = Disconnect(CloseReason.CLIENT_CLOSED)


def protocol_error(error: Exception) -> Disconnect:
    # The text names the peer's mistake, never our internals, so it is always
    # shown. ASP.NET allows a reconnect after a protocol error.
    text = f"{CLOSED_WITH_ERROR} InvalidDataException: {error}"
    message = CloseMessage(error=text, allow_reconnect=True)
    return Disconnect(CloseReason.PROTOCOL_ERROR, message, error)


def handshake_failed(error: Exception | None = None, *, timed_out: bool = False) -> Disconnect:
    reason = CloseReason.TIMEOUT if timed_out else CloseReason.HANDSHAKE_FAILED
    return Disconnect(reason, None, error)


def client_timed_out(seconds: float) -> Disconnect:
    text = f"{CLOSED_WITH_ERROR} The client sent nothing for {seconds:g} seconds."
    cause = ConnectionClosed(f"the client sent nothing for {seconds:g} seconds")
    return Disconnect(CloseReason.TIMEOUT, CloseMessage(error=text, allow_reconnect=True), cause)


def stopped_polling() -> Disconnect:
    return Disconnect(CloseReason.TIMEOUT, None, ConnectionClosed("the client stopped polling"))


def did_not_come_back() -> Disconnect:
    return Disconnect(CloseReason.TIMEOUT, None, ConnectionClosed("the client did not come back"))


def token_expired() -> Disconnect:
    return Disconnect(
        CloseReason.TOKEN_EXPIRED,
        CloseMessage(error=TOKEN_EXPIRED, allow_reconnect=True),
        ConnectionClosed("the access token expired"),
    )


def slow_consumer() -> Disconnect:
    return Disconnect(
        CloseReason.SLOW_CONSUMER,
        CloseMessage(error=SLOW_CONSUMER, allow_reconnect=True),
        ConnectionClosed(SLOW_CONSUMER),
    )


def resume_gap() -> Disconnect:
    return Disconnect(
        CloseReason.RESUME_FAILED,
        CloseMessage(error=RESUME_GAP, allow_reconnect=True),
        ConnectionClosed(RESUME_GAP),
    )


def shutting_down() -> Disconnect:
    return Disconnect(CloseReason.SHUTDOWN, CloseMessage(error=SHUTTING_DOWN, allow_reconnect=True))


def closed_by_server(message: CloseMessage | None = None) -> Disconnect:
    """The hub (``Context.Abort()``) or the server (revoking a user) closes it."""
    return Disconnect(CloseReason.SERVER_CLOSED, message)


def failed(error: Exception, text: str) -> Disconnect:
    """Something went wrong on the server (``text`` is ``error_text``'s, so
    details show only with detailed errors); no reconnect, as in ASP.NET."""
    return Disconnect(CloseReason.ERROR, CloseMessage(error=text), error)
