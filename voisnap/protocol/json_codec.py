"""The JSON hub protocol: hub messages <-> UTF-8 JSON records ended by 0x1E.

HubProtocol.md, "JSON Encoding": each message is a JSON object whose ``type``
property is the integer message type; the other properties are the message's
fields in camelCase. Fields that are absent are omitted, never sent as null
(``invocationId`` of a non-blocking invocation, ``error``/``result`` of a void
Completion). Unknown properties are ignored on read, as ASP.NET Core does,
because the Python clients put transport headers in ``headers``.

The wire rules live here, in one table (``FIELDS``) read in both directions,
and nowhere else: the message classes in ``messages.py`` know nothing of
camelCase or type tags.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

from .errors import ENCODER_FAILURES, EncodeError, RemoteProtocolError
from .framing import RECORD_SEPARATOR_BYTES, TextFraming
from .limits import DEFAULT_LIMITS, DecodeLimits, InvalidJson, load_json
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

# -- the schema: which properties each message type has, in the order ASP.NET writes them --


@attrs.frozen
class Field:
    """How one JSON property maps onto one message field."""

    wire_name: str
    name: str
    kind: type | tuple[type, ...]
    required: bool = False
    kind_name: str = "String"
    keep_empty: bool = False
    """Write "" rather than omit it (Close's error: an empty error is still one)."""


_OPTIONAL_ID = Field("invocationId", "invocation_id", str)
_REQUIRED_ID = Field("invocationId", "invocation_id", str, required=True)
_TARGET = Field("target", "target", str, required=True)
_ARGUMENTS = Field("arguments", "arguments", list, required=True, kind_name="Array")
_STREAM_IDS = Field("streamIds", "stream_ids", list, kind_name="Array")
_SEQUENCE_ID = Field("sequenceId", "sequence_id", int, required=True, kind_name="Integer")

# HubProtocol.md, "JSON Encoding": the properties each message type reads.
FIELDS: dict[MessageType, tuple[type, tuple[Field, ...]]] = {
    MessageType.INVOCATION: (InvocationMessage, (_OPTIONAL_ID, _TARGET, _ARGUMENTS, _STREAM_IDS)),
    MessageType.STREAM_INVOCATION: (
        StreamInvocationMessage,
        (_REQUIRED_ID, _TARGET, _ARGUMENTS, _STREAM_IDS),
    ),
    MessageType.STREAM_ITEM: (StreamItemMessage, (_REQUIRED_ID,)),
    MessageType.COMPLETION: (CompletionMessage, (_REQUIRED_ID,)),
    MessageType.CANCEL_INVOCATION: (CancelInvocationMessage, (_REQUIRED_ID,)),
    MessageType.PING: (PingMessage, ()),
    MessageType.CLOSE: (
        CloseMessage,
        (
            Field("error", "error", str, keep_empty=True),
            Field("allowReconnect", "allow_reconnect", bool, kind_name="Boolean"),
        ),
    ),
    MessageType.ACK: (AckMessage, (_SEQUENCE_ID,)),
    MessageType.SEQUENCE: (SequenceMessage, (_SEQUENCE_ID,)),
}


def _read_field(document: dict[str, Any], field: Field) -> Any:
    value = document.get(field.wire_name)
    if value is None:
        if field.required:
            raise RemoteProtocolError(f"Missing required property '{field.wire_name}'.")
        return None
    is_bool = isinstance(value, bool)
    if not isinstance(value, field.kind) or (is_bool and field.kind is not bool):
        raise RemoteProtocolError(f"Expected '{field.wire_name}' to be of type {field.kind_name}.")
    return value


def _message_type(document: dict[str, Any]) -> MessageType:
    tag = document.get("type")
    if tag is None:
        raise RemoteProtocolError("Missing required property 'type'.")
    if not isinstance(tag, int) or isinstance(tag, bool):
        raise RemoteProtocolError("Expected 'type' to be of type Integer.")
    try:
        return MessageType(tag)
    except ValueError:
        raise RemoteProtocolError(f"Unknown message type '{tag}'.") from None


def _build(message_type: MessageType, document: dict[str, Any]) -> HubMessage:
    cls, fields = FIELDS[message_type]
    values = {field.name: _read_field(document, field) for field in fields}
    if "headers" in attrs.fields_dict(cls):
        values["headers"] = _headers(document.get("headers"))
    match message_type:
        case MessageType.INVOCATION | MessageType.STREAM_INVOCATION:
            values["arguments"] = tuple(values["arguments"])
            values["stream_ids"] = _stream_ids(values["stream_ids"])
        case MessageType.STREAM_ITEM:
            if "item" not in document:
                raise RemoteProtocolError("Missing required property 'item'.")
            values["item"] = document["item"]
        case MessageType.COMPLETION:
            return attrs.evolve(
                _completion(values["invocation_id"], document), headers=values["headers"]
            )
        case MessageType.CLOSE:
            values["allow_reconnect"] = bool(values["allow_reconnect"])
    if message_type is MessageType.INVOCATION:
        # An empty id means "non-blocking" too (pysignalr sends one for uploads).
        values["invocation_id"] = values["invocation_id"] or None
    return cls(**values)


def _headers(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise RemoteProtocolError("Expected 'headers' to be an object of strings.")
    return raw or None


def _stream_ids(raw: list | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not all(isinstance(stream_id, str) for stream_id in raw):
        raise RemoteProtocolError("Expected 'streamIds' to be an array of strings.")
    return tuple(raw)


def _completion(invocation_id: str, document: dict[str, Any]) -> CompletionMessage:
    error = document.get("error")
    if "result" in document and error is not None:
        raise RemoteProtocolError("The 'error' and 'result' properties are mutually exclusive.")
    if error is not None:
        if not isinstance(error, str):
            raise RemoteProtocolError("Expected 'error' to be of type String.")
        return CompletionMessage.with_error(invocation_id, error)
    if "result" in document:
        return CompletionMessage.with_result(invocation_id, document["result"])
    return CompletionMessage.empty(invocation_id)


def _json_default(value: Any) -> Any:
    # ASP.NET Core's System.Text.Json writes byte[] as a base64 string.
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# allow_nan=False: NaN and Infinity are not JSON, and JSON.parse rejects them.
_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)
MESSAGE_TYPES: dict[type, MessageType] = {cls: tag for tag, (cls, _) in FIELDS.items()}


def _document(message: HubMessage) -> dict[str, Any]:
    """The JSON object for one message: ``type`` first, absent fields omitted."""
    message_type = MESSAGE_TYPES[type(message)]
    document: dict[str, Any] = {"type": int(message_type)}
    headers = getattr(message, "headers", None)
    if headers:
        document["headers"] = headers
    for field in FIELDS[message_type][1]:
        value = getattr(message, field.name)
        if field.required or value or (field.keep_empty and value == ""):
            document[field.wire_name] = list(value) if isinstance(value, tuple) else value
    match message:
        case StreamItemMessage():
            document["item"] = message.item
        case CompletionMessage(has_result=True):
            document["result"] = message.result
        case CompletionMessage(error=str() as error):
            document["error"] = error
    return document


class JsonHubProtocol:
    """``name``/``version`` are what the handshake asks for; ``parse`` turns one
    record (without its separator) into a message; ``write`` turns a message
    into one record, separator included."""

    name = "json"
    version = 1
    transfer_format = TransferFormat.TEXT
    framing_class = TextFraming

    def parse(self, record: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> HubMessage:
        try:
            document = load_json(record, limits)
        except InvalidJson as error:
            raise RemoteProtocolError(f"Error reading JSON: {error}.") from None
        if not isinstance(document, dict):
            raise RemoteProtocolError("Expected a JSON object.")
        return _build(_message_type(document), document)

    def write(self, message: HubMessage) -> bytes:
        """Raises EncodeError if the message holds a value JSON cannot carry."""
        try:
            text = _encoder.encode(_document(message))
        except ENCODER_FAILURES as error:
            raise EncodeError(f"The value cannot be written as JSON: {error}") from None
        return text.encode() + RECORD_SEPARATOR_BYTES
