"""The server side of one hub connection, as a sans-IO state machine.

Theory of operation
-------------------
Bytes go in with ``receive_data``; events come out of ``next_event``; messages
to send go in with ``send`` and come out as bytes. Nothing here does I/O or
awaits, so every transport (WebSockets, Server-Sent Events, long polling) and
every hub protocol (JSON, MessagePack) drive the same object, as h11 and wsproto
are driven.

A connection moves through three states (HubProtocol.md, "Overview"):

    AWAITING_HANDSHAKE --accept()--> OPEN --close()/peer gone--> CLOSED
            |                                     ^
            +---------------reject()--------------+

In AWAITING_HANDSHAKE the only event is a ``HandshakeRequest``; the server then
calls ``accept`` (which picks the hub protocol and returns ``{}\\x1e``) or
``reject`` (which returns ``{"error": ...}\\x1e``). In OPEN, events are hub
messages. ``receive_data(None)`` means the transport is gone: once the buffered
records are used up, ``next_event`` returns ``CONNECTION_CLOSED``.

A peer that breaks the protocol gets ``RemoteProtocolError`` from
``next_event``; its text names the problem and is safe to send back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from .errors import LocalProtocolError, RemoteProtocolError
from .framing import TextFraming
from .handshake import (
    HandshakeRequest,
    HandshakeResponse,
    parse_handshake_request,
    write_handshake_response,
)
from .hub_protocol import HubProtocol
from .limits import DEFAULT_LIMITS, DecodeLimits
from .messages import HubMessage
from .transfer_format import TransferFormat

# The newest handshake version we speak: version 2 adds stateful reconnect.
MAX_PROTOCOL_VERSION = 2


class ConnectionState(enum.Enum):
    AWAITING_HANDSHAKE = "awaiting handshake"
    OPEN = "open"
    CLOSED = "closed"


class Sentinel(enum.Enum):
    NEED_DATA = "need data"
    CONNECTION_CLOSED = "connection closed"


NEED_DATA = Sentinel.NEED_DATA
CONNECTION_CLOSED = Sentinel.CONNECTION_CLOSED

Event = HandshakeRequest | HubMessage | Sentinel


class HubProtocolConnection:
    """One server-side hub connection, from the first handshake byte on.

    ``protocols`` maps lower-case protocol names to codecs; ``transfer_format``
    is what the transport carries (a text-only transport refuses binary codecs).
    """

    # one per connection: slots keep idle connections small
    __slots__ = (
        "_framing",
        "_limits",
        "_max_message_size",
        "_peer_gone",
        "_protocols",
        "_transfer_format",
        "protocol",
        "state",
        "version",
    )

    def __init__(
        self,
        protocols: Mapping[str, HubProtocol],
        *,
        transfer_format: TransferFormat,
        max_message_size: int,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        self._protocols = protocols
        self._limits = limits
        self._transfer_format = transfer_format
        self._max_message_size = max_message_size
        self._framing = TextFraming(max_message_size)  # the handshake is always text
        self._peer_gone = False
        self.state = ConnectionState.AWAITING_HANDSHAKE
        self.protocol: HubProtocol | None = None
        self.version = 0

    def receive_data(self, data: bytes | None) -> None:
        """Feed bytes from the transport; None means the transport ended."""
        if data is None:
            self._peer_gone = True
        elif self.state is not ConnectionState.CLOSED:
            self._framing.feed(data)

    def next_event(self) -> Event:
        if self.state is ConnectionState.CLOSED:
            return CONNECTION_CLOSED
        record = self._framing.next_record()
        if record is None:
            return CONNECTION_CLOSED if self._peer_gone else NEED_DATA
        if self.state is ConnectionState.AWAITING_HANDSHAKE:
            return parse_handshake_request(record, self._limits)
        assert self.protocol is not None
        return self.protocol.parse(record, self._limits)

    def accept(self, request: HandshakeRequest) -> bytes:
        """Choose the requested hub protocol; return the handshake response bytes.

        Raises RemoteProtocolError, with the text ASP.NET Core sends, when the
        request cannot be honoured; answer it with ``reject``.
        """
        self._expect(ConnectionState.AWAITING_HANDSHAKE, "accept a handshake")
        protocol = self.select_protocol(request)
        self.protocol = protocol
        self.version = request.version
        rest = self._framing.take_buffered()
        self._framing = protocol.framing_class(self._max_message_size)
        self._framing.feed(rest)
        self.state = ConnectionState.OPEN
        return write_handshake_response(HandshakeResponse())

    def select_protocol(self, request: HandshakeRequest) -> HubProtocol:
        protocol = self._protocols.get(request.protocol.lower())
        if protocol is None:
            raise RemoteProtocolError(f"The protocol '{request.protocol}' is not supported.")
        if request.version > MAX_PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"The server does not support version {request.version} "
                f"of the '{request.protocol}' protocol."
            )
        if protocol.transfer_format is TransferFormat.BINARY and (
            self._transfer_format is TransferFormat.TEXT
        ):
            raise RemoteProtocolError(
                f"Cannot use the '{protocol.name}' protocol on the current transport. "
                "The transport does not support 'Binary' transfer format."
            )
        return protocol

    def reject(self, error: str) -> bytes:
        """Refuse the handshake; the transport closes after sending these bytes."""
        self._expect(ConnectionState.AWAITING_HANDSHAKE, "reject a handshake")
        self.state = ConnectionState.CLOSED
        return write_handshake_response(HandshakeResponse(error=error))

    def send(self, message: HubMessage) -> bytes:
        self._expect(ConnectionState.OPEN, "send a hub message")
        assert self.protocol is not None
        return self.protocol.write(message)

    def discard_partial(self) -> None:
        """Drop received bytes that do not form a whole record: the transport
        under them is gone, and a resuming client sends them again."""
        self._framing.take_buffered()

    def close(self) -> None:
        self.state = ConnectionState.CLOSED

    def _expect(self, state: ConnectionState, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"Can't {action} in state {self.state.name}")
