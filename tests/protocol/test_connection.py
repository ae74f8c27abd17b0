"""HubProtocolConnection, the server side of one hub connection as a state machine.

HubProtocol.md, "Overview" (handshake, then hub messages) and the wire reference,
section 3 (ASP.NET's handshake error texts). Covered: AWAITING_HANDSHAKE -> OPEN via
``accept`` and -> CLOSED via ``reject``; a handshake and hub messages in the same
bytes (also in binary framing); errors for unsupported protocols, versions and
transfer formats; ``LocalProtocolError`` naming the state; ``receive_data(None)``;
and a paired client (h11's ``ConnectionPair``) that writes its bytes with the codec.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from voisnap.protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PING,
    CloseMessage,
    CompletionMessage,
    ConnectionState,
    HandshakeRequest,
    HubMessage,
    HubProtocolConnection,
    InvocationMessage,
    JsonHubProtocol,
    LocalProtocolError,
    RemoteProtocolError,
    StreamInvocationMessage,
    StreamItemMessage,
    TransferFormat,
)
from voisnap.protocol.framing import BinaryFraming, TextFraming

JSON = JsonHubProtocol()


class FakeBinaryProtocol:
    """A binary hub protocol for the state machine: JSON bodies in VarInt framing,
    named like MessagePack (the transfer format and framing are what matter here)."""

    name = "messagepack"
    version = 1
    transfer_format = TransferFormat.BINARY
    framing_class = BinaryFraming

    def parse(self, record: bytes, limits: object = None) -> HubMessage:
        return JSON.parse(record)

    def write(self, message: HubMessage) -> bytes:
        return BinaryFraming.frame(JSON.write(message)[:-1])


BINARY = FakeBinaryProtocol()
PROTOCOLS = {"json": JSON, "messagepack": BINARY}


def handshake(protocol: str = "json", version: int = 1) -> bytes:
    return json.dumps({"protocol": protocol, "version": version}).encode() + b"\x1e"


def server(
    transfer_format: TransferFormat = TransferFormat.BINARY, max_message_size: int = 32 * 1024
) -> HubProtocolConnection:
    return HubProtocolConnection(
        PROTOCOLS, transfer_format=transfer_format, max_message_size=max_message_size
    )


def events(connection: HubProtocolConnection) -> list[Any]:
    """Every event up to and including NEED_DATA or CONNECTION_CLOSED."""
    out = []
    while True:
        event = connection.next_event()
        out.append(event)
        if event is NEED_DATA or event is CONNECTION_CLOSED:
            return out


def open_server(protocol: str = "json", **kwargs: Any) -> HubProtocolConnection:
    connection = server(**kwargs)
    connection.receive_data(handshake(protocol))
    request = connection.next_event()
    assert isinstance(request, HandshakeRequest)
    assert connection.accept(request) == b"{}\x1e"
    return connection


class ClientPeer:
    """The client half of a pair: writes with the codec, reads the server's bytes."""

    def __init__(self) -> None:
        self.framing = TextFraming(max_message_size=2**20)
        self.handshake_response: dict[str, Any] | None = None

    def receive(self, data: bytes) -> list[HubMessage]:
        self.framing.feed(data)
        messages = []
        while (record := self.framing.next_record()) is not None:
            if self.handshake_response is None:
                self.handshake_response = json.loads(record)
            else:
                messages.append(JSON.parse(record))
        return messages


class ConnectionPair:
    def __init__(self) -> None:
        self.client = ClientPeer()
        self.server = server()

    def client_sends(self, *messages: HubMessage) -> list[Any]:
        self.server.receive_data(b"".join(JSON.write(message) for message in messages))
        received = events(self.server)
        assert received[-1] is NEED_DATA
        return received[:-1]

    def server_sends(self, *messages: HubMessage) -> list[HubMessage]:
        return self.client.receive(b"".join(self.server.send(m) for m in messages))


# -- handshake -----------------------------------------------------------------------------------


def test_connection_starts_awaiting_handshake() -> None:
    connection = server()
    assert connection.state is ConnectionState.AWAITING_HANDSHAKE
    assert connection.protocol is None
    assert connection.next_event() is NEED_DATA


def test_connection_handshake_then_messages_in_the_same_bytes() -> None:
    connection = server()
    invocation = InvocationMessage(invocation_id="1", target="Echo", arguments=(42,))
    connection.receive_data(handshake() + JSON.write(invocation) + JSON.write(PING))
    assert connection.next_event() == HandshakeRequest("json", 1)
    assert connection.accept(HandshakeRequest("json", 1)) == b"{}\x1e"
    assert connection.state is ConnectionState.OPEN
    assert connection.protocol is JSON
    assert events(connection) == [invocation, PING, NEED_DATA]


def test_connection_handshake_and_messages_split_at_every_byte_boundary() -> None:
    invocation = InvocationMessage(target="Send", arguments=("hello",))
    data = handshake() + JSON.write(invocation) + JSON.write(PING)
    for split in range(len(data) + 1):
        connection = server()
        received = []
        for piece in (data[:split], data[split:]):
            connection.receive_data(piece)
            # The server answers the HandshakeRequest before asking for the next event.
            while (event := connection.next_event()) is not NEED_DATA:
                if isinstance(event, HandshakeRequest):
                    connection.accept(event)
                else:
                    received.append(event)
        assert received == [invocation, PING], f"split at {split}"


def test_connection_binary_protocol_reframes_bytes_after_the_handshake() -> None:
    connection = server(TransferFormat.BINARY)
    invocation = InvocationMessage(target="Send", arguments=(1,))
    connection.receive_data(handshake("messagepack") + BINARY.write(invocation) + b"\x05")
    request = connection.next_event()
    connection.accept(request)
    assert connection.protocol is BINARY
    assert connection.next_event() == invocation
    assert connection.next_event() is NEED_DATA  # a VarInt prefix waiting for its payload


def test_connection_protocol_name_is_case_insensitive() -> None:
    connection = server()
    assert connection.accept(HandshakeRequest("JSON", 1)) == b"{}\x1e"
    assert connection.protocol is JSON


@pytest.mark.parametrize("version", [0, 1, 2])
def test_connection_accepts_versions_up_to_two(version: int) -> None:
    connection = server()
    connection.accept(HandshakeRequest("json", version))
    assert connection.version == version
    assert connection.state is ConnectionState.OPEN


@pytest.mark.parametrize(
    ("request_", "transfer_format", "expected"),
    [
        (HandshakeRequest("foo", 1), TransferFormat.BINARY, "The protocol 'foo' is not supported."),
        (
            HandshakeRequest("json", 3),
            TransferFormat.BINARY,
            "The server does not support version 3 of the 'json' protocol.",
        ),
        (
            HandshakeRequest("JSON", 3),
            TransferFormat.BINARY,
            # ASP.NET names the protocol as the client spelled it here.
            "The server does not support version 3 of the 'JSON' protocol.",
        ),
        (
            HandshakeRequest("messagepack", 1),
            TransferFormat.TEXT,
            "Cannot use the 'messagepack' protocol on the current transport. "
            "The transport does not support 'Binary' transfer format.",
        ),
        (
            HandshakeRequest("MessagePack", 1),
            TransferFormat.TEXT,
            # ...but here by the resolved protocol's own name (Protocol.Name).
            "Cannot use the 'messagepack' protocol on the current transport. "
            "The transport does not support 'Binary' transfer format.",
        ),
    ],
    ids=[
        "unsupported_protocol", "version_above_two", "version_above_two_keeps_client_case",
        "binary_protocol_on_text_transport", "binary_protocol_on_text_transport_canonical_name",
    ],
)
def test_connection_refuses_handshake_with_aspnet_text(
    request_: HandshakeRequest, transfer_format: TransferFormat, expected: str
) -> None:
    connection = server(transfer_format)
    with pytest.raises(RemoteProtocolError) as caught:
        connection.accept(request_)
    assert str(caught.value) == expected
    assert connection.state is ConnectionState.AWAITING_HANDSHAKE
    assert connection.protocol is None


def test_connection_text_protocol_on_text_transport_is_accepted() -> None:
    connection = server(TransferFormat.TEXT)
    assert connection.accept(HandshakeRequest("json", 1)) == b"{}\x1e"


def test_connection_reject_sends_error_and_closes() -> None:
    connection = server()
    connection.receive_data(handshake("foo"))
    request = connection.next_event()
    with pytest.raises(RemoteProtocolError) as caught:
        connection.accept(request)
    assert connection.reject(str(caught.value)) == (
        b'{"error":"The protocol \'foo\' is not supported."}\x1e'
    )
    assert connection.state is ConnectionState.CLOSED
    connection.receive_data(JSON.write(PING))
    assert connection.next_event() is CONNECTION_CLOSED


def test_connection_malformed_handshake_raises_remote_error() -> None:
    connection = server()
    connection.receive_data(b'{"type":6}\x1e')
    with pytest.raises(RemoteProtocolError, match="'protocol'"):
        connection.next_event()


def test_connection_oversize_handshake_raises_remote_error() -> None:
    connection = server(max_message_size=16)
    connection.receive_data(handshake())
    with pytest.raises(RemoteProtocolError) as caught:
        connection.next_event()
    assert str(caught.value) == "The maximum message size of 16B was exceeded."


# -- misuse by the server (LocalProtocolError names the state) ----------------------------------


def test_connection_send_before_accept_names_the_state() -> None:
    connection = server()
    with pytest.raises(LocalProtocolError) as caught:
        connection.send(PING)
    assert str(caught.value) == "Can't send a hub message in state AWAITING_HANDSHAKE"


def test_connection_accept_twice_names_the_state() -> None:
    connection = open_server()
    with pytest.raises(LocalProtocolError, match="Can't accept a handshake in state OPEN"):
        connection.accept(HandshakeRequest("json", 1))
    with pytest.raises(LocalProtocolError, match="Can't reject a handshake in state OPEN"):
        connection.reject("no")


def test_connection_send_after_close_names_the_state() -> None:
    connection = open_server()
    connection.close()
    assert connection.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError, match="Can't send a hub message in state CLOSED"):
        connection.send(PING)


def test_connection_send_after_reject_names_the_state() -> None:
    connection = server()
    connection.reject("nope")
    with pytest.raises(LocalProtocolError, match="in state CLOSED"):
        connection.send(PING)


# -- messages and the end of the transport ------------------------------------------------------


def test_connection_send_writes_with_the_chosen_protocol() -> None:
    assert open_server().send(CompletionMessage.with_result("1", 2)) == (
        b'{"type":3,"invocationId":"1","result":2}\x1e'
    )
    binary = open_server("messagepack")
    assert binary.send(PING) == b'\x0a{"type":6}'


def test_connection_malformed_message_raises_and_later_records_still_parse() -> None:
    connection = open_server()
    connection.receive_data(b'{"type":42}\x1e' + JSON.write(PING))
    with pytest.raises(RemoteProtocolError, match=r"^Unknown message type '42'\.$"):
        connection.next_event()
    assert connection.next_event() == PING


def test_connection_oversize_message_raises() -> None:
    connection = open_server(max_message_size=64)
    connection.receive_data(JSON.write(InvocationMessage(target="x" * 100)))
    with pytest.raises(RemoteProtocolError, match=r"^The maximum message size of 64B"):
        connection.next_event()


def test_connection_peer_gone_after_buffered_records() -> None:
    connection = open_server()
    connection.receive_data(JSON.write(PING) + JSON.write(PING) + b'{"type":')
    connection.receive_data(None)
    assert connection.next_event() == PING
    assert connection.next_event() == PING
    assert connection.next_event() is CONNECTION_CLOSED
    assert connection.next_event() is CONNECTION_CLOSED


def test_connection_peer_gone_before_handshake() -> None:
    connection = server()
    connection.receive_data(b'{"protocol":')
    connection.receive_data(None)
    assert connection.next_event() is CONNECTION_CLOSED


def test_connection_peer_gone_with_a_whole_handshake_still_yields_it() -> None:
    connection = server()
    connection.receive_data(handshake())
    connection.receive_data(None)
    assert connection.next_event() == HandshakeRequest("json", 1)
    assert connection.next_event() is CONNECTION_CLOSED


def test_connection_close_ends_events_and_ignores_later_data() -> None:
    connection = open_server()
    connection.receive_data(JSON.write(PING))
    connection.close()
    connection.receive_data(JSON.write(PING))
    assert connection.next_event() is CONNECTION_CLOSED


# -- a paired client ---------------------------------------------------------------------------


def test_connection_pair_full_conversation() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(handshake())
    request = pair.server.next_event()
    assert pair.client.receive(pair.server.accept(request)) == []
    assert pair.client.handshake_response == {}

    # A blocking invocation, answered by one Completion.
    invoke = InvocationMessage(invocation_id="0", target="Add", arguments=(1, 2))
    assert pair.client_sends(PING, invoke) == [PING, invoke]
    assert pair.server_sends(CompletionMessage.with_result("0", 3)) == [
        CompletionMessage.with_result("0", 3)
    ]

    # A server stream: items then a void Completion.
    stream = StreamInvocationMessage(invocation_id="1", target="Count", arguments=(2,))
    assert pair.client_sends(stream) == [stream]
    sent = [StreamItemMessage(invocation_id="1", item=n) for n in range(2)]
    sent.append(CompletionMessage.empty("1"))
    assert pair.server_sends(*sent) == sent

    # A client result: the server invokes with an "s" id, the client completes it.
    ask = InvocationMessage(invocation_id="s1", target="GetName", arguments=())
    assert pair.server_sends(ask) == [ask]
    assert pair.client_sends(CompletionMessage.with_result("s1", "ada")) == [
        CompletionMessage.with_result("s1", "ada")
    ]

    close = CloseMessage(error="bye", allow_reconnect=True)
    assert pair.server_sends(close) == [close]
    pair.server.close()
    pair.server.receive_data(None)
    assert pair.server.next_event() is CONNECTION_CLOSED


def test_connection_pair_handshake_error_reaches_the_client() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(handshake("json", 3))
    request = pair.server.next_event()
    with pytest.raises(RemoteProtocolError) as caught:
        pair.server.accept(request)
    pair.client.receive(pair.server.reject(str(caught.value)))
    assert pair.client.handshake_response == {
        "error": "The server does not support version 3 of the 'json' protocol."
    }
