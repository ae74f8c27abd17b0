"""The MessagePack hub protocol: hub messages <-> MessagePack arrays behind a VarInt length.

HubProtocol.md, "MessagePack (MsgPack) encoding": "each Message is represented as a
single MsgPack array containing items that correspond to properties of the given hub
protocol message ... The first item in the array is the message type." Items are
positional, so where the JSON codec omits an absent field this one writes nil (the id
of a non-blocking Invocation) or leaves a trailing item off (the result of a void
Completion):

    Invocation        [1, Headers, InvocationId|nil, Target, [Arguments], [StreamIds]]
    StreamItem        [2, Headers, InvocationId, Item]
    Completion        [3, Headers, InvocationId, ResultKind, Result?]  1 error, 2 void, 3 value
    StreamInvocation  [4, Headers, InvocationId, Target, [Arguments], [StreamIds]]
    CancelInvocation  [5, Headers, InvocationId]
    Ping              [6]
    Close             [7, Error|nil, AllowReconnect]
    Ack / Sequence    [8, SequenceId] / [9, SequenceId]

Writing follows ASP.NET Core's ``MessagePackHubProtocolWorker`` byte for byte, so the
official clients get exactly what an ASP.NET server sends them:

- Invocation and StreamInvocation always carry six items (``[]`` when there are no
  stream ids): signalrcore reads index 5 of an Invocation unconditionally.
- Close always carries three items, ``[7, nil, false]`` = ``93 07 c0 c2``. Every client
  reads two or three (the JS client: ``properties.length >= 3 ? properties[2] :
  undefined``; pysignalr: ``CloseMessage(*msg[1:])``); the JS client itself writes
  ``[7, nil]``. One difference: an empty error stays ``""`` (ASP.NET writes nil), as in
  voisnap's JSON codec; every client treats both as "no error".

Reading is as tolerant as ASP.NET's reader and the JS client's: items after the ones a
message type defines are ignored ("to allow protocol to add items to the end of objects
in future releases", MessagePackHubProtocol.ts), as the JSON codec ignores unknown
properties; too few items, or an item of the wrong type, is a ``RemoteProtocolError``.

Values are voisnap's plain data both ways: nil, booleans, integers, floats, strings,
arrays (lists), maps (dicts) and bin (bytes). voisnap shows a hub the same shape
whichever protocol its client speaks, so:

- map keys must be strings (a JSON object has no other kind);
- the timestamp extension (type -1), how .NET sends ``DateTime`` and the JS client
  sends ``Date``, becomes an ISO-8601 UTC string ending in ``Z``, the shape JSON
  clients send; any other extension type is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgpack

from .errors import ENCODER_FAILURES, EncodeError, LocalProtocolError, RemoteProtocolError
from .framing import BinaryFraming, encode_varint
from .limits import DEFAULT_LIMITS, DecodeLimits, exceeds_depth, too_deep
from .messages import (
    AckMessage,
    CancelInvocationMessage,
    CloseMessage,
    CompletionMessage,
    HubMessage,
    InvocationMessage,
    MessageType,
    PingMessage,
    SequenceMessage,
    StreamInvocationMessage,
    StreamItemMessage,
)
from .transfer_format import TransferFormat

# HubProtocol.md, "Completion Message Encoding": the ResultKind item.
ERROR_RESULT = 1
VOID_RESULT = 2
NON_VOID_RESULT = 3

# "The Ping message is **always exactly encoded** as 0x91 0x06" (here with its length).
PING_RECORD = b"\x02\x91\x06"

# Headers are a map even when there are none: "it is represented by the byte 0x80".
_NO_HEADERS: dict[str, str] = {}
_EPOCH = datetime(1970, 1, 1)

# -- reading values: hooks the unpacker calls for every array, map and extension ----------------


# The MessagePack family of each decoded type, for error texts.
_KINDS = {
    type(None): "Nil",
    bool: "Boolean",
    int: "Integer",
    float: "Float",
    str: "String",
    bytes: "Binary",
    list: "Array",
    dict: "Map",
}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _timestamp_text(stamp: msgpack.Timestamp) -> str:
    """The timestamp extension as ISO-8601 UTC, "2017-04-11T00:00:00Z", with as many
    fractional digits as it needs (.NET sends 100 ns ticks, JS milliseconds)."""
    try:
        moment = _EPOCH + timedelta(seconds=stamp.seconds)
    except OverflowError:
        raise RemoteProtocolError("A timestamp is outside the years 1 to 9999.") from None
    fraction = f".{stamp.nanoseconds:09d}".rstrip("0") if stamp.nanoseconds else ""
    return f"{moment.isoformat()}{fraction}Z"


def _array_hook(items: list[Any]) -> list[Any]:
    # The unpacker makes timestamps itself (ext_hook never sees type -1), so they are
    # replaced here, in the array or map that holds them.
    for index, value in enumerate(items):
        if type(value) is msgpack.Timestamp:
            items[index] = _timestamp_text(value)
    return items


def _map_hook(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    result = {}
    for key, value in pairs:
        if type(key) is not str:
            raise RemoteProtocolError(f"Expected map keys to be of type String, got {_kind(key)}.")
        result[key] = _timestamp_text(value) if type(value) is msgpack.Timestamp else value
    return result


def _ext_hook(code: int, data: bytes) -> Any:
    raise RemoteProtocolError(f"Unsupported MessagePack extension type {code}.")


def _unpack(record: bytes) -> Any:
    """One record to plain data; every way the bytes can be bad is a RemoteProtocolError."""
    try:
        return msgpack.unpackb(
            record,
            raw=False,  # str is UTF-8 text, bin is bytes
            use_list=True,
            strict_map_key=False,  # _map_hook checks keys, with a clearer text
            list_hook=_array_hook,
            object_pairs_hook=_map_hook,
            ext_hook=_ext_hook,
        )
    except msgpack.ExtraData:
        raise RemoteProtocolError(
            "Error reading MessagePack: unexpected bytes after the message array."
        ) from None
    except UnicodeDecodeError:
        raise RemoteProtocolError("Error reading MessagePack: a string is not UTF-8.") from None
    except msgpack.StackError:
        raise RemoteProtocolError("Error reading MessagePack: values nested too deeply.") from None
    except msgpack.FormatError:
        raise RemoteProtocolError("Error reading MessagePack: invalid type byte.") from None
    except (ValueError, msgpack.UnpackException) as error:
        raise RemoteProtocolError(
            f"Error reading MessagePack: truncated or malformed data ({error})."
        ) from None


# -- reading messages: one function per message type, reading items in order -------------------


def _wrong_type(name: str, expected: str, value: Any) -> RemoteProtocolError:
    return RemoteProtocolError(f"Expected '{name}' to be of type {expected}, got {_kind(value)}.")


def _need(items: list[Any], count: int, what: str) -> None:
    if len(items) < count:
        raise RemoteProtocolError(
            f"Expected at least {count} items in {what} message, got {len(items)}."
        )


def _string(value: Any, name: str) -> str:
    if type(value) is not str:
        raise _wrong_type(name, "String", value)
    return value


def _optional_string(value: Any, name: str) -> str | None:
    return None if value is None else _string(value, name)


def _integer(value: Any, name: str) -> int:
    if type(value) is not int:
        raise _wrong_type(name, "Integer", value)
    return value


def _array(value: Any, name: str) -> list[Any]:
    if type(value) is not list:
        raise _wrong_type(name, "Array", value)
    return value


def _headers(value: Any) -> dict[str, str] | None:
    # HubProtocol.md: "a Map ... with string keys and string values" (keys: _map_hook).
    if type(value) is not dict:
        raise _wrong_type("headers", "Map", value)
    for item in value.values():
        if type(item) is not str:
            raise RemoteProtocolError(
                f"Expected header values to be of type String, got {_kind(item)}."
            )
    return value or None


def _stream_ids(items: list[Any]) -> tuple[str, ...]:
    # Optional sixth item: the JS client leaves it off when there are no upload streams.
    if len(items) < 6 or items[5] is None:
        return ()
    stream_ids = _array(items[5], "streamIds")
    for stream_id in stream_ids:
        if type(stream_id) is not str:
            raise RemoteProtocolError(
                f"Expected stream ids to be of type String, got {_kind(stream_id)}."
            )
    return tuple(stream_ids)


def _parse_invocation(items: list[Any]) -> InvocationMessage:
    _need(items, 5, "an Invocation")
    return InvocationMessage(
        headers=_headers(items[1]),
        # nil means non-blocking, and so does "", as ASP.NET and the JSON codec read it.
        invocation_id=_optional_string(items[2], "invocationId") or None,
        target=_string(items[3], "target"),
        arguments=tuple(_array(items[4], "arguments")),
        stream_ids=_stream_ids(items),
    )


def _parse_stream_invocation(items: list[Any]) -> StreamInvocationMessage:
    _need(items, 5, "a StreamInvocation")
    return StreamInvocationMessage(
        headers=_headers(items[1]),
        invocation_id=_string(items[2], "invocationId"),
        target=_string(items[3], "target"),
        arguments=tuple(_array(items[4], "arguments")),
        stream_ids=_stream_ids(items),
    )


def _parse_stream_item(items: list[Any]) -> StreamItemMessage:
    _need(items, 4, "a StreamItem")
    return StreamItemMessage(
        headers=_headers(items[1]), invocation_id=_string(items[2], "invocationId"), item=items[3]
    )


def _parse_completion(items: list[Any]) -> CompletionMessage:
    _need(items, 4, "a Completion")
    headers = _headers(items[1])
    invocation_id = _string(items[2], "invocationId")
    kind = _integer(items[3], "resultKind")
    if kind == VOID_RESULT:  # "Result is absent"
        return CompletionMessage(headers=headers, invocation_id=invocation_id)
    if kind not in (ERROR_RESULT, NON_VOID_RESULT):
        raise RemoteProtocolError(f"Invalid invocation result kind '{kind}'.")
    _need(items, 5, "a non-void Completion")
    if kind == ERROR_RESULT:  # "Result contains a String with the error message"
        error = _string(items[4], "error")
        return CompletionMessage(headers=headers, invocation_id=invocation_id, error=error)
    # A non-void result may be nil: a value of None, not a void completion.
    return CompletionMessage(
        headers=headers, invocation_id=invocation_id, result=items[4], has_result=True
    )


def _parse_cancel_invocation(items: list[Any]) -> CancelInvocationMessage:
    _need(items, 3, "a CancelInvocation")
    return CancelInvocationMessage(
        headers=_headers(items[1]), invocation_id=_string(items[2], "invocationId")
    )


def _parse_ping(items: list[Any]) -> PingMessage:
    return PingMessage()


def _parse_close(items: list[Any]) -> CloseMessage:
    _need(items, 2, "a Close")
    error = _optional_string(items[1], "error")
    # "AllowReconnect - An optional Boolean": absent (the JS client) or nil means false.
    allow_reconnect = items[2] if len(items) > 2 else None
    if allow_reconnect is not None and type(allow_reconnect) is not bool:
        raise _wrong_type("allowReconnect", "Boolean", allow_reconnect)
    return CloseMessage(error=error, allow_reconnect=bool(allow_reconnect))


def _parse_ack(items: list[Any]) -> AckMessage:
    _need(items, 2, "an Ack")
    return AckMessage(sequence_id=_integer(items[1], "sequenceId"))


def _parse_sequence(items: list[Any]) -> SequenceMessage:
    _need(items, 2, "a Sequence")
    return SequenceMessage(sequence_id=_integer(items[1], "sequenceId"))


PARSERS: dict[int, Callable[[list[Any]], HubMessage]] = {
    MessageType.INVOCATION: _parse_invocation,
    MessageType.STREAM_ITEM: _parse_stream_item,
    MessageType.COMPLETION: _parse_completion,
    MessageType.STREAM_INVOCATION: _parse_stream_invocation,
    MessageType.CANCEL_INVOCATION: _parse_cancel_invocation,
    MessageType.PING: _parse_ping,
    MessageType.CLOSE: _parse_close,
    MessageType.ACK: _parse_ack,
    MessageType.SEQUENCE: _parse_sequence,
}


def _parse_items(items: Any) -> HubMessage:
    if type(items) is not list:
        raise RemoteProtocolError(f"Expected a MessagePack array, got {_kind(items)}.")
    if not items:
        raise RemoteProtocolError("Expected a MessagePack array with a message type, got [].")
    tag = _integer(items[0], "messageType")
    parser = PARSERS.get(tag)
    if parser is None:
        # ASP.NET and the JS client skip unknown types; voisnap, like its JSON codec, refuses.
        raise RemoteProtocolError(f"Unknown message type '{tag}'.")
    return parser(items)


# -- writing: one tuple of items per message, in ASP.NET's order --------------------------------

# Plain ints, not MessageType members, so the packer takes its exact-int path.
_INVOCATION = int(MessageType.INVOCATION)
_STREAM_ITEM = int(MessageType.STREAM_ITEM)
_COMPLETION = int(MessageType.COMPLETION)
_STREAM_INVOCATION = int(MessageType.STREAM_INVOCATION)
_CANCEL_INVOCATION = int(MessageType.CANCEL_INVOCATION)
_CLOSE = int(MessageType.CLOSE)
_ACK = int(MessageType.ACK)
_SEQUENCE = int(MessageType.SEQUENCE)


def _invocation_items(message: InvocationMessage) -> tuple[Any, ...]:
    return (
        _INVOCATION,
        message.headers or _NO_HEADERS,
        message.invocation_id or None,  # ASP.NET writes nil for an absent or empty id
        message.target,
        message.arguments,
        message.stream_ids,  # always present: signalrcore reads index 5
    )


def _stream_invocation_items(message: StreamInvocationMessage) -> tuple[Any, ...]:
    return (
        _STREAM_INVOCATION,
        message.headers or _NO_HEADERS,
        message.invocation_id,
        message.target,
        message.arguments,
        message.stream_ids,
    )


def _stream_item_items(message: StreamItemMessage) -> tuple[Any, ...]:
    return (_STREAM_ITEM, message.headers or _NO_HEADERS, message.invocation_id, message.item)


def _completion_items(message: CompletionMessage) -> tuple[Any, ...]:
    head = (_COMPLETION, message.headers or _NO_HEADERS, message.invocation_id)
    # As ASP.NET: an error wins over a result; has_result=True with result None is a
    # value (nil), not void: the JS client resolves invoke() with null, not undefined.
    if message.error is not None:
        return (*head, ERROR_RESULT, message.error)
    if message.has_result:
        return (*head, NON_VOID_RESULT, message.result)
    return (*head, VOID_RESULT)


def _cancel_invocation_items(message: CancelInvocationMessage) -> tuple[Any, ...]:
    return (_CANCEL_INVOCATION, message.headers or _NO_HEADERS, message.invocation_id)


def _close_items(message: CloseMessage) -> tuple[Any, ...]:
    return (_CLOSE, message.error, message.allow_reconnect)


def _ack_items(message: AckMessage) -> tuple[Any, ...]:
    return (_ACK, message.sequence_id)


def _sequence_items(message: SequenceMessage) -> tuple[Any, ...]:
    return (_SEQUENCE, message.sequence_id)


WRITERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    InvocationMessage: _invocation_items,
    StreamItemMessage: _stream_item_items,
    CompletionMessage: _completion_items,
    StreamInvocationMessage: _stream_invocation_items,
    CancelInvocationMessage: _cancel_invocation_items,
    CloseMessage: _close_items,
    AckMessage: _ack_items,
    SequenceMessage: _sequence_items,
}

# Most records are under 128 bytes: their one-byte VarInt prefix is looked up, not computed
# (write runs once per fan-out message).
_SHORT_PREFIXES = tuple(bytes((length,)) for length in range(0x80))


def _frame(body: bytes) -> bytes:
    length = len(body)
    prefix = _SHORT_PREFIXES[length] if length < 0x80 else encode_varint(length)
    return prefix + body


class MessagePackHubProtocol:
    """``name``/``version`` are what the handshake asks for; ``parse`` turns one
    record (without its length prefix) into a message; ``write`` turns a message
    into one record, length prefix included.

    One object serves every connection. Its packer is reused by every ``write``,
    which is safe because ``write`` never yields; a codec used from several OS
    threads at once needs one instance per thread.
    """

    name = "messagepack"
    version = 1
    transfer_format = TransferFormat.BINARY
    framing_class = BinaryFraming

    def __init__(self) -> None:
        # use_bin_type: bytes go out as bin (byte[] in .NET, Uint8Array in JS), str as str.
        # Floats stay float64 (use_single_float=False), ints take the smallest encoding.
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def parse(self, record: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> HubMessage:
        items = _unpack(record)
        if exceeds_depth(items, limits.max_depth):
            raise too_deep(limits)
        return _parse_items(items)

    def write(self, message: HubMessage) -> bytes:
        """Raises EncodeError if an argument, item or result is not plain data
        MessagePack can carry (such as an int beyond 64 bits)."""
        if type(message) is PingMessage:
            return PING_RECORD
        items = WRITERS.get(type(message))
        if items is None:
            raise LocalProtocolError(f"Can't write a {type(message).__name__} as a hub message.")
        try:
            return _frame(self._packer.pack(items(message)))
        except ENCODER_FAILURES as error:
            raise EncodeError(f"The value cannot be written as MessagePack: {error}") from None
