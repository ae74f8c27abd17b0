"""The hub messages of the SignalR Hub Protocol, as plain frozen values.

HubProtocol.md, "Overview": "The SignalR Protocol is a protocol for two-way RPC
over any Message-based transport." These classes are that protocol's nouns. They
know nothing about JSON or MessagePack: renames (``invocation_id`` is
``invocationId`` on the JSON wire), omitted fields and the integer ``type`` tag
live in the codec modules, never here.

Arguments, items and results hold *plain data* (dict, list, str, int, float,
bool, None, bytes). Turning application objects into plain data is the hub
layer's job (``voisnap.hubs.binder``), so a codec never sees an attrs payload.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class MessageType(enum.IntEnum):
    """HubProtocol.md, "Message Types": the integer ``type`` tag of each message."""

    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7
    ACK = 8
    SEQUENCE = 9


@attrs.frozen(kw_only=True)
class InvocationMessage:
    """Caller asks Callee to run ``target``. No ``invocation_id`` means
    "non-blocking": the Callee must not answer (HubProtocol.md, "Invocation")."""

    headers: dict[str, str] | None = None
    invocation_id: str | None = None
    target: str
    arguments: tuple[Any, ...] = ()
    stream_ids: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class StreamInvocationMessage:
    """Caller asks Callee to run a method that streams its results back."""

    headers: dict[str, str] | None = None
    invocation_id: str
    target: str
    arguments: tuple[Any, ...] = ()
    stream_ids: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class StreamItemMessage:
    """One item of a stream, server-to-client or (upload) client-to-server."""

    headers: dict[str, str] | None = None
    invocation_id: str
    item: Any = None


@attrs.frozen(kw_only=True)
class CompletionMessage:
    """The end of an invocation: a result, an error, or neither (void).

    ``result=None`` is a legitimate result, so ``has_result`` tells a void
    completion from one whose result is null. Use the constructors below.
    """

    headers: dict[str, str] | None = None
    invocation_id: str
    error: str | None = None
    result: Any = None
    has_result: bool = False

    @classmethod
    def with_result(cls, invocation_id: str, result: Any) -> CompletionMessage:
        return cls(invocation_id=invocation_id, result=result, has_result=True)

    @classmethod
    def with_error(cls, invocation_id: str, error: str) -> CompletionMessage:
        return cls(invocation_id=invocation_id, error=error)

    @classmethod
    def empty(cls, invocation_id: str) -> CompletionMessage:
        return cls(invocation_id=invocation_id)


@attrs.frozen(kw_only=True)
class CancelInvocationMessage:
    """The Caller no longer wants the stream it started."""

    headers: dict[str, str] | None = None
    invocation_id: str


@attrs.frozen(kw_only=True)
class PingMessage:
    """Keep-alive; carries nothing (HubProtocol.md, "Ping (aka Keep Alive)")."""


@attrs.frozen(kw_only=True)
class CloseMessage:
    """Sent before the sender closes the connection. ``error`` tells the peer
    why; ``allow_reconnect`` tells a client whether reconnecting makes sense."""

    error: str | None = None
    allow_reconnect: bool = False


@attrs.frozen(kw_only=True)
class AckMessage:
    """Stateful reconnect: "I have processed every message up to sequence_id"."""

    sequence_id: int


@attrs.frozen(kw_only=True)
class SequenceMessage:
    """Stateful reconnect: "the next message I send is number sequence_id"."""

    sequence_id: int


HubMessage = (
    InvocationMessage
    | StreamInvocationMessage
    | StreamItemMessage
    | CompletionMessage
    | CancelInvocationMessage
    | PingMessage
    | CloseMessage
    | AckMessage
    | SequenceMessage
)

PING = PingMessage()
