"""What travels on a backplane channel: the envelope around a caller's payload. Sans-IO.

The caller's payload is opaque bytes (the router decides what it means). The
backplane wraps it in one of four envelopes, each a MessagePack array whose first
item is its type, like the MessagePack hub protocol's messages:

    Message     [1, Origin, Payload]                       a publish to every subscriber
    Request     [2, Origin, RequestId, Timeout, Payload]   a request to the channel's subscriber
    Reply       [3, RequestId, Payload]                    the subscriber's answer
    ErrorReply  [4, RequestId, Text]                       the subscriber refused, or failed

``Origin`` is the publishing node's id (a string): a node drops a ``Message`` it
published itself, since its router has already delivered that one locally (python-
socketio's ``pubsub_manager`` compares ``host_id`` the same way), and it sends a
``Reply`` to the origin's reply channel. ``RequestId`` is an integer unique among
the origin's pending requests; ``Timeout`` is how many seconds the requester will
wait, so the responder stops working on a request nobody waits for any more.

``decode`` is total: any bytes give an envelope or raise ``EnvelopeError``, never
anything else, because the bytes come from whoever can publish on the Redis server.
Items after the ones a type defines are ignored (a later version may add some).
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

MESSAGE = 1
REQUEST = 2
REPLY = 3
ERROR_REPLY = 4


class EnvelopeError(ValueError):
    """Bytes that are not an envelope. The text says what is wrong, for a log line."""


@attrs.frozen
class Message:
    origin: str
    payload: bytes


@attrs.frozen
class Request:
    origin: str
    request_id: int
    timeout: float
    payload: bytes


@attrs.frozen
class Reply:
    request_id: int
    payload: bytes


@attrs.frozen
class ErrorReply:
    request_id: int
    text: str


Envelope = Message | Request | Reply | ErrorReply


def encode(envelope: Envelope) -> bytes:
    match envelope:
        case Message(origin, payload):
            items: list[Any] = [MESSAGE, origin, payload]
        case Request(origin, request_id, timeout, payload):
            items = [REQUEST, origin, request_id, float(timeout), payload]
        case Reply(request_id, payload):
            items = [REPLY, request_id, payload]
        case ErrorReply(request_id, text):
            items = [ERROR_REPLY, request_id, text]
    return msgpack.packb(items, use_bin_type=True)


def decode(data: bytes) -> Envelope:
    """The envelope in ``data``; ``EnvelopeError`` for anything else."""
    items = _unpack(data)
    if not isinstance(items, list) or not items:
        raise EnvelopeError("an envelope is a non-empty array")
    match items[0]:
        case 1:
            origin, payload = _fields(items, str, bytes)
            return Message(origin, payload)
        case 2:
            origin, request_id, timeout, payload = _fields(items, str, int, float, bytes)
            if not timeout >= 0:  # also false for NaN
                raise EnvelopeError(f"a request's timeout cannot be {timeout}")
            return Request(origin, request_id, timeout, payload)
        case 3:
            request_id, payload = _fields(items, int, bytes)
            return Reply(request_id, payload)
        case 4:
            request_id, text = _fields(items, int, str)
            return ErrorReply(request_id, text)
    raise EnvelopeError(f"unknown envelope type {items[0]!r}")


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as error:
        # msgpack raises several types (ExtraData, FormatError, StackError,
        # UnicodeDecodeError, ValueError, ...); to the caller they are one thing.
        raise EnvelopeError(f"not MessagePack: {error}") from error


def _fields(items: list[Any], *types: type) -> list[Any]:
    """Items 1..n of an envelope, checked against ``types`` (a float may be sent as an int)."""
    values = items[1 : len(types) + 1]
    if len(values) < len(types):
        raise EnvelopeError(f"envelope type {items[0]} has {len(types)} items, got {len(values)}")
    for index, (value, expected) in enumerate(zip(values, types, strict=True), start=1):
        if not _is(value, expected):
            raise EnvelopeError(
                f"item {index} of envelope type {items[0]} is a {type(value).__name__}, "
                f"not a {expected.__name__}"
            )
    return [
        float(value) if expected is float else value
        for value, expected in zip(values, types, strict=True)
    ]


def _is(value: Any, expected: type) -> bool:
    if isinstance(value, bool):  # bool is an int to Python, not to MessagePack
        return False
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)
