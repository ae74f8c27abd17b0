"""The client side of a SignalR JSON connection, sans-IO: text in, messages out.

HubProtocol.md, "Overview": the client first sends a HandshakeRequest
(``{"protocol":"json","version":1}``) and the server answers with a
HandshakeResponse: ``{}`` for success, ``{"error": "..."}`` for a refusal.
Both are JSON records ended by the Record Separator 0x1E, like every JSON hub
message after them (HubProtocol.md, "JSON Encoding"). One WebSocket message
may carry several records, and the handshake response may share its message
with the first hub messages, so all text goes through one ``TextFraming``.

The messages themselves are voisnap's own (``voisnap.protocol``): the server
and this client share one codec.

Theory of operation: ``HubClientProtocol`` starts ``AWAITING_HANDSHAKE``;
``receive_text`` reads the first record as the HandshakeResponse (``OPEN`` on
``{}``, ``HandshakeRefused`` on an error) and every later record as a hub
message. ``write`` turns a message into the text to send.
"""

from __future__ import annotations

import enum
import json

from ..protocol import HubMessage, JsonHubProtocol, RemoteProtocolError
from ..protocol.framing import TextFraming

HANDSHAKE_REQUEST = '{"protocol":"json","version":1}\x1e'
MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class ClientState(enum.Enum):
    AWAITING_HANDSHAKE = "awaiting handshake"
    OPEN = "open"


class HandshakeRefused(Exception):
    """The server answered the handshake with ``{"error": ...}``."""


class HubClientProtocol:
    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.state = ClientState.AWAITING_HANDSHAKE
        self._framing = TextFraming(max_message_size)
        self._codec = JsonHubProtocol()

    def handshake_request(self) -> str:
        return HANDSHAKE_REQUEST

    def receive_text(self, text: str) -> list[HubMessage]:
        """The hub messages completed by ``text`` (there may be none, or several)."""
        self._framing.feed(text.encode("utf-8"))
        messages = []
        while (record := self._framing.next_record()) is not None:
            if self.state is ClientState.AWAITING_HANDSHAKE:
                self._receive_handshake_response(record)
            else:
                messages.append(self._codec.parse(record))
        return messages

    def write(self, message: HubMessage) -> str:
        if self.state is not ClientState.OPEN:
            raise RuntimeError(f"Cannot send a hub message in state {self.state.name}.")
        return self._codec.write(message).decode("utf-8")

    def _receive_handshake_response(self, record: bytes) -> None:
        try:
            document = json.loads(record)
        except ValueError:
            raise RemoteProtocolError("The handshake response is not valid JSON.") from None
        if not isinstance(document, dict):
            raise RemoteProtocolError("The handshake response must be a JSON object.")
        if document.get("error") is not None:
            raise HandshakeRefused(str(document["error"]))
        self.state = ClientState.OPEN
