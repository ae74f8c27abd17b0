"""The client side of the handshake and of JSON records (HubProtocol.md, "Overview",
"JSON Encoding"): several records may share one WebSocket message."""

from __future__ import annotations

import pytest

from voisnap.node_client.signalr import ClientState, HandshakeRefused, HubClientProtocol
from voisnap.protocol import (
    CompletionMessage,
    InvocationMessage,
    PingMessage,
    RemoteProtocolError,
)


def open_protocol() -> HubClientProtocol:
    protocol = HubClientProtocol()
    assert protocol.receive_text("{}\x1e") == []
    return protocol


def test_signalr_handshake_request_is_json_version_1() -> None:
    assert HubClientProtocol().handshake_request() == '{"protocol":"json","version":1}\x1e'


def test_signalr_empty_handshake_response_opens() -> None:
    assert open_protocol().state is ClientState.OPEN


def test_signalr_handshake_error_is_refused() -> None:
    with pytest.raises(HandshakeRefused, match="not supported"):
        HubClientProtocol().receive_text('{"error":"Protocol not supported"}\x1e')


def test_signalr_handshake_response_sharing_a_message_with_hub_messages() -> None:
    messages = HubClientProtocol().receive_text('{}\x1e{"type":6}\x1e')
    assert messages == [PingMessage()]


def test_signalr_several_records_in_one_message() -> None:
    text = (
        '{"type":1,"invocationId":"s1","target":"ExecuteCommand",'
        '"arguments":[{"commandId":"c1","command":"echo","params":{}}]}\x1e'
        '{"type":6}\x1e'
        '{"type":3,"invocationId":"1","result":null}\x1e'
    )
    invocation, ping, completion = open_protocol().receive_text(text)
    assert invocation == InvocationMessage(
        invocation_id="s1",
        target="ExecuteCommand",
        arguments=({"commandId": "c1", "command": "echo", "params": {}},),
    )
    assert ping == PingMessage()
    assert completion == CompletionMessage.with_result("1", None)


def test_signalr_a_record_without_its_separator_waits_for_more() -> None:
    protocol = open_protocol()
    assert protocol.receive_text('{"type":') == []
    assert protocol.receive_text("6}\x1e") == [PingMessage()]


def test_signalr_invalid_record_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        open_protocol().receive_text("[1]\x1e")


def test_signalr_write_completion_with_an_outcome() -> None:
    message = CompletionMessage.with_result("s1", {"ok": True, "result": {"text": "hi"}})
    assert (
        open_protocol().write(message)
        == '{"type":3,"invocationId":"s1","result":{"ok":true,"result":{"text":"hi"}}}\x1e'
    )


def test_signalr_write_before_the_handshake_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="AWAITING_HANDSHAKE"):
        HubClientProtocol().write(PingMessage())
