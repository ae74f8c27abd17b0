"""A hub connection's life: handshake, keep-alive, timeouts, closing.

HubProtocol.md, "Overview" (the handshake), "Ping (aka Keep Alive)" and
"Close"; ASP.NET Core's ``HubConnectionHandler`` / ``HubConnectionContext`` for
the order of events and the texts (wire reference, sections 3, 8 and 11).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.support.fakes import JSON_HANDSHAKE, RS, TestClient, connect, make_endpoint
from voisnap.config import Settings
from voisnap.errors import HubError
from voisnap.hubs.heartbeat import heartbeat_period
from voisnap.hubs.hub import Hub
from voisnap.principal import Principal
from voisnap.protocol import CloseMessage, CompletionMessage, PingMessage, RemoteProtocolError

CLOSED_WITH_ERROR = "Connection closed with an error."
TOKEN_EXPIRED = "Server closed the connection: the access token expired."


class Probe:
    def __init__(self) -> None:
        self.router: Any = None
        self.connected: list[str] = []
        self.disconnected: list[tuple[str, Exception | None, list[str]]] = []
        self.fail_on_connected: Exception | None = None
        self.started: dict[str, trio.Event] = {}
        self.cleaned_up: dict[str, trio.Event] = {}

    def started_event(self, name: str) -> trio.Event:
        return self.started.setdefault(name, trio.Event())

    def cleaned_up_event(self, name: str) -> trio.Event:
        return self.cleaned_up.setdefault(name, trio.Event())


class LifecycleHub(Hub):
    async def on_connected(self) -> None:
        probe: Probe = self.services
        probe.connected.append(self.context.connection_id)
        if probe.fail_on_connected is not None:
            raise probe.fail_on_connected

    async def on_disconnected(self, error: Exception | None) -> None:
        probe: Probe = self.services
        still_routed = [c.connection_id for c in probe.router.all_connections()]
        probe.disconnected.append((self.context.connection_id, error, still_routed))

    async def echo(self, value: Any) -> Any:
        return value

    async def block(self) -> None:
        probe: Probe = self.services
        try:
            probe.started_event("block").set()
            await trio.sleep_forever()
        finally:
            probe.cleaned_up_event("block").set()

    async def endless(self) -> AsyncIterator[int]:
        probe: Probe = self.services
        try:
            number = 0
            while True:
                yield number
                number += 1
                probe.started_event("endless").set()
                await trio.sleep(1)
        finally:
            probe.cleaned_up_event("endless").set()

    async def hoard(self, numbers: AsyncIterator[int]) -> None:
        probe: Probe = self.services
        try:
            probe.started_event("hoard").set()
            await trio.sleep_forever()
        finally:
            probe.cleaned_up_event("hoard").set()

    async def leave(self) -> str:
        self.context.abort()
        return "bye"


def endpoint(**settings: Any):
    hub = make_endpoint(LifecycleHub, Settings(**settings), services=Probe())
    hub.services.router = hub.router
    return hub


async def assert_ended(client: TestClient) -> None:
    with trio.fail_after(30):
        await client.finished.wait()
    assert client.transport.closed


# -- handshake ------------------------------------------------------------------------------------


async def test_handshake_success_is_empty_object(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        await client.send_raw(JSON_HANDSHAKE)
        assert await client.receive_record() == b"{}"
        assert (await client.invoke("Echo", 1)).result == 1


async def test_handshake_protocol_name_is_case_insensitive(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        assert await client.handshake(b'{"protocol":"JSON","version":1}' + RS) == {}
        assert (await client.invoke("Echo", 1)).result == 1


async def test_handshake_version_2_is_accepted(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        assert await client.handshake(b'{"protocol":"json","version":2}' + RS) == {}


async def test_handshake_unsupported_protocol_is_refused_and_closed(autojump_clock):
    hub = endpoint()
    async with connect(hub, handshake=False) as client:
        response = await client.handshake(b'{"protocol":"xml","version":1}' + RS)
        assert response == {"error": "The protocol 'xml' is not supported."}
        assert await client.receive_until_closed() == []
        await assert_ended(client)
        assert hub.services.connected == []  # the hub never saw it


async def test_handshake_unsupported_version_is_refused(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        response = await client.handshake(b'{"protocol":"json","version":3}' + RS)
        assert response == {
            "error": "The server does not support version 3 of the 'json' protocol."
        }
        await assert_ended(client)


async def test_handshake_bad_json_names_problem(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        response = await client.handshake(b'{"protocol":"json",' + RS)
        error = response["error"]
        assert error.startswith("An unexpected error occurred during connection handshake.")
        assert "JSON" in error
        await assert_ended(client)


async def test_handshake_missing_protocol_names_problem(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        response = await client.handshake(b'{"version":1}' + RS)
        error = response["error"]
        assert error.startswith("An unexpected error occurred during connection handshake.")
        assert "Missing required property 'protocol'." in error
        await assert_ended(client)


async def test_handshake_timeout_is_canceled(autojump_clock):
    hub = endpoint(handshake_timeout=3)
    async with connect(hub, handshake=False) as client:
        start = trio.current_time()
        assert await client.receive_handshake() == {"error": "Handshake was canceled."}
        assert trio.current_time() - start >= 3
        await assert_ended(client)
        assert hub.services.connected == []


async def test_handshake_partial_request_times_out(autojump_clock):
    async with connect(endpoint(handshake_timeout=3), handshake=False) as client:
        await client.send_raw(b'{"protocol":"json",')
        assert await client.receive_handshake() == {"error": "Handshake was canceled."}
        await assert_ended(client)


async def test_handshake_client_leaving_early_gets_nothing(autojump_clock):
    hub = endpoint()
    async with connect(hub, handshake=False) as client:
        await client.send_raw(b'{"protocol":"js')
        await client.stop()
        assert await client.receive_until_closed() == []
        assert hub.services.connected == []


async def test_handshake_messages_in_same_bytes_are_processed(autojump_clock):
    async with connect(endpoint(), handshake=False) as client:
        await client.send_raw(
            JSON_HANDSHAKE
            + b'{"type":1,"invocationId":"0","target":"Echo","arguments":["first"]}' + RS
            + b'{"type":1,"invocationId":"1","target":"Echo","arguments":["second"]}' + RS
        )
        assert await client.receive_handshake() == {}
        assert await client.receive() == CompletionMessage.with_result("0", "first")
        assert await client.receive() == CompletionMessage.with_result("1", "second")


# -- keep-alive and client timeout ----------------------------------------------------------------


async def test_keep_alive_pings_a_silent_connection(autojump_clock):
    async with connect(endpoint(keep_alive_interval=1)) as client:
        last = trio.current_time()
        gaps = []
        for _ in range(10):
            assert await client.receive(pings=True) == PingMessage()
            now = trio.current_time()
            gaps.append(now - last)
            last = now
        # A Ping once nothing was sent for the interval, seen on a heartbeat tick.
        assert max(gaps) <= 1.0 + heartbeat_period(client.endpoint.settings), gaps
        assert min(gaps) >= 1.0, gaps


async def test_keep_alive_ping_record_is_exact(autojump_clock):
    async with connect(endpoint(keep_alive_interval=1)) as client:
        assert await client.receive_record() == b'{"type":6}'


async def test_keep_alive_no_pings_while_messages_flow(autojump_clock):
    async with connect(endpoint(keep_alive_interval=1)) as client:
        for number in range(40):  # ten seconds of traffic, every quarter second
            await client.send_invocation("Echo", number, invocation_id=str(number))
            assert await client.receive(pings=True) == CompletionMessage.with_result(
                str(number), number
            )
            await trio.sleep(0.25)


async def test_client_timeout_not_armed_before_first_ping(autojump_clock):
    async with connect(endpoint(client_timeout=2)) as client:
        await trio.sleep(60)  # silent for thirty timeouts
        assert (await client.invoke("Echo", "still here")).result == "still here"


async def test_client_timeout_after_ping_closes_with_reconnect(autojump_clock):
    hub = endpoint(client_timeout=2)
    async with connect(hub) as client:
        await client.ping()
        start = trio.current_time()
        messages = await client.receive_until_closed()
        assert len(messages) == 1, messages
        close = messages[0]
        assert isinstance(close, CloseMessage)
        assert close.error is not None
        assert close.error.startswith(CLOSED_WITH_ERROR)
        assert close.allow_reconnect is True
        assert 2 <= trio.current_time() - start <= 2 + heartbeat_period(hub.settings)
        await assert_ended(client)
        assert len(hub.services.disconnected) == 1


async def test_client_timeout_reaches_on_disconnected_as_error(autojump_clock):
    """Hub.on_disconnected: "error is why, if it failed"; ASP.NET passes the
    timeout's exception to OnDisconnectedAsync."""
    hub = endpoint(client_timeout=2)
    async with connect(hub) as client:
        await client.ping()
        await client.receive_until_closed()
        await assert_ended(client)
    [(_, error, _)] = hub.services.disconnected
    assert error is not None


async def test_client_timeout_reset_by_each_message(autojump_clock):
    async with connect(endpoint(client_timeout=2)) as client:
        await client.ping()
        for _ in range(10):  # fifteen seconds of messages 1.5 s apart
            await trio.sleep(1.5)
            await client.ping()
        assert (await client.invoke("Echo", "alive")).result == "alive"


async def test_ack_and_sequence_are_ignored_without_stateful_reconnect(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_json({"type": 8, "sequenceId": 1})
        await client.send_json({"type": 9, "sequenceId": 1})
        assert (await client.invoke("Echo", "alive")).result == "alive"


# -- closing --------------------------------------------------------------------------------------


async def test_token_expiry_closes_with_reconnect(autojump_clock):
    principal = Principal(user_id="u", tenant_id="t", expires_at=time.time() + 30)
    async with connect(endpoint(), principal=principal) as client:
        start = trio.current_time()
        assert (await client.invoke("Echo", "before")).result == "before"
        messages = await client.receive_until_closed()
        assert messages == [CloseMessage(error=TOKEN_EXPIRED, allow_reconnect=True)]
        assert trio.current_time() - start >= 29
        await assert_ended(client)


async def test_token_already_expired_closes_at_once(autojump_clock):
    principal = Principal(user_id="u", tenant_id="t", expires_at=time.time() - 1)
    async with connect(endpoint(), principal=principal) as client:
        messages = await client.receive_until_closed()
        assert messages[-1] == CloseMessage(error=TOKEN_EXPIRED, allow_reconnect=True)


async def test_protocol_error_closes_with_reconnect(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_raw(
            b'{"type":1,' + RS
            + b'{"type":1,"invocationId":"0","target":"Echo","arguments":[1]}' + RS
        )
        messages = await client.receive_until_closed()
        assert len(messages) == 1, messages  # the Echo behind the bad record is not run
        close = messages[0]
        assert isinstance(close, CloseMessage)
        assert close.error is not None
        assert close.error.startswith(f"{CLOSED_WITH_ERROR} InvalidDataException: ")
        assert "JSON" in close.error
        assert close.allow_reconnect is True
        await assert_ended(client)
        [(_, error, _)] = hub.services.disconnected
        assert isinstance(error, RemoteProtocolError)


async def test_protocol_error_missing_type(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_json({"invocationId": "0", "target": "Echo", "arguments": []})
        assert await client.receive_until_closed() == [
            CloseMessage(
                error=f"{CLOSED_WITH_ERROR} InvalidDataException: "
                "Missing required property 'type'.",
                allow_reconnect=True,
            )
        ]


async def test_protocol_error_message_too_large(autojump_clock):
    async with connect(endpoint(max_message_size=64)) as client:
        await client.send_invocation("Echo", "x" * 100, invocation_id="0")
        assert await client.receive_until_closed() == [
            CloseMessage(
                error=f"{CLOSED_WITH_ERROR} InvalidDataException: "
                "The maximum message size of 64B was exceeded.",
                allow_reconnect=True,
            )
        ]


async def test_client_close_message_ends_connection(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client:
        await client.send_close()
        messages = await client.receive_until_closed()
        assert all(isinstance(m, CloseMessage) for m in messages), messages
        await assert_ended(client)
        [(_, error, _)] = hub.services.disconnected
        assert error is None


async def test_hub_abort_sends_close_without_error(autojump_clock):
    async with connect(endpoint()) as client:
        await client.send_invocation("Leave", invocation_id="0")
        messages = await client.receive_until_closed()
        assert messages[-1] == CloseMessage()
        await assert_ended(client)


async def test_on_connected_error_closes_without_reconnect(autojump_clock):
    hub = endpoint()
    hub.services.fail_on_connected = ValueError("database down")
    async with connect(hub) as client:
        await client.send_invocation("Echo", 1, invocation_id="0")
        assert await client.receive_record() == (
            b'{"type":7,"error":"Connection closed with an error."}'
        )
        assert await client.receive_until_closed() == []
        await assert_ended(client)


async def test_on_connected_hub_error_detail_shown(autojump_clock):
    hub = endpoint()
    hub.services.fail_on_connected = HubError("not welcome")
    async with connect(hub) as client:
        assert await client.receive_until_closed() == [
            CloseMessage(error=f"{CLOSED_WITH_ERROR} HubException: not welcome")
        ]


async def test_on_disconnected_called_once_after_leaving_router(autojump_clock):
    hub = endpoint()
    async with connect(hub) as client, connect(hub) as other:
        connection_id = client.connection.connection_id
        assert {c.connection_id for c in hub.router.all_connections()} == {
            connection_id, other.connection.connection_id
        }
        await client.stop()
        [(disconnected_id, error, still_routed)] = hub.services.disconnected
        assert disconnected_id == connection_id
        assert error is None
        assert still_routed == [other.connection.connection_id]
        assert (await other.invoke("Echo", "alive")).result == "alive"
    assert len(hub.services.disconnected) == 2


async def test_disconnect_cancels_invocations_and_streams(autojump_clock):
    hub = endpoint()
    probe: Probe = hub.services
    with trio.fail_after(30):
        async with connect(hub) as client:
            await client.send_invocation("Block", invocation_id="b")
            await client.send_stream_invocation("Endless", invocation_id="e")
            await probe.started_event("block").wait()
            await probe.started_event("endless").wait()
            await client.stop()
            assert probe.cleaned_up_event("block").is_set()
            assert probe.cleaned_up_event("endless").is_set()
        # Leaving ``connect`` means the connection's nursery (and every task in it) finished.


async def test_disconnect_while_upload_waits_for_room(autojump_clock):
    """The reader is parked handing an upload item to a method that does not read;
    the client then leaves. The connection must still end."""
    hub = endpoint(stream_buffer_capacity=1)
    probe: Probe = hub.services
    async with connect(hub) as client:
        await client.send_invocation("Hoard", invocation_id="h", stream_ids=("u",))
        for number in range(3):
            await client.send_item("u", number)
        with trio.fail_after(5):
            await probe.started_event("hoard").wait()
        await trio.testing.wait_all_tasks_blocked()
        client.timeout = 30
        try:
            await client.stop()
        except trio.TooSlowError:
            pytest.fail("the connection did not end after the client left while its reader "
                        "waited to hand an upload item to the hub method")
        assert probe.cleaned_up_event("hoard").is_set()
        assert len(probe.disconnected) == 1
