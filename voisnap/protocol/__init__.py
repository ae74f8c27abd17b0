"""The SignalR hub protocol, sans-IO: bytes in, message objects out, and back.

Nothing in this package awaits or imports trio, hypercorn, ASGI or pyjwt (a test
enforces it), so every transport and both codecs share it.
"""

from .connection import CONNECTION_CLOSED, NEED_DATA, ConnectionState, HubProtocolConnection
from .errors import EncodeError, LocalProtocolError, ProtocolError, RemoteProtocolError
from .handshake import HandshakeRequest, HandshakeResponse
from .hub_protocol import HubProtocol
from .json_codec import JsonHubProtocol
from .messages import (
    PING,
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

__all__ = [
    "CONNECTION_CLOSED",
    "NEED_DATA",
    "PING",
    "AckMessage",
    "CancelInvocationMessage",
    "CloseMessage",
    "CompletionMessage",
    "ConnectionState",
    "EncodeError",
    "HandshakeRequest",
    "HandshakeResponse",
    "HubMessage",
    "HubProtocol",
    "HubProtocolConnection",
    "InvocationMessage",
    "JsonHubProtocol",
    "LocalProtocolError",
    "MessageType",
    "PingMessage",
    "ProtocolError",
    "RemoteProtocolError",
    "SequenceMessage",
    "StreamInvocationMessage",
    "StreamItemMessage",
    "TransferFormat",
]
