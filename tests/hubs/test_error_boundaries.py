"""Error boundaries: an unexpected exception ends one connection, never the server.

Issue 8: a bug that one client's message reaches (a transport that raises, a
heartbeat tick that raises, a recipient that raises during a fan-out) must close
that one connection with an error Close, be logged once, and leave every other
connection and the process running. Cancellation still propagates.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

import pytest
import trio
import trio.testing

from tests.support.fakes import TestClient, connect, make_endpoint
from voisnap.config import Settings
from voisnap.failures import RateLimit, error_boundary
from voisnap.hubs.heartbeat import run_heartbeat
from voisnap.hubs.hub import Hub
from voisnap.protocol import CloseMessage, CompletionMessage, InvocationMessage, JsonHubProtocol
from voisnap.protocol.msgpack_codec import MessagePackHubProtocol
from voisnap.routing.router import LocalRouter, group_key
from voisnap.routing.serialized import SerializedMessage
from voisnap.transports.frames import wire_for
from voisnap.transports.ws_frames import BINARY_FRAMER, TEXT_FRAMER

CEILING = 10


class EchoHub(Hub):
    async def echo(self, value: Any) -> Any:
        return value

    async def not_a_number(self) -> float:
        return math.nan

    async def a_set(self) -> Any:
        return {1, 2}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


# -- the boundary itself ---------------------------------------------------------------------------


def test_error_boundary_contains_an_exception_and_reports_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[Exception] = []
    with error_boundary(logging.getLogger("test"), "a thing", handled.append):
        raise RuntimeError("boom")
    assert [str(error) for error in handled] == ["boom"]
    assert len(tracebacks(caplog)) == 1


async def test_error_boundary_lets_cancellation_through() -> None:
    with trio.CancelScope() as scope, error_boundary(logging.getLogger("test"), "a thing"):
        scope.cancel()
        await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_error_boundary_reports_errors_and_keeps_cancellation_in_a_group() -> None:
    handled: list[Exception] = []

    async def fail() -> None:
        raise RuntimeError("boom")

    with (
        trio.CancelScope() as outer,
        error_boundary(logging.getLogger("test"), "a group", handled.append),
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
            outer.cancel()
            await trio.sleep_forever()
    assert outer.cancelled_caught
    assert [str(error) for group in handled for error in group.exceptions] == ["boom"]


def test_error_boundary_lets_keyboard_interrupt_through() -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        error_boundary(logging.getLogger("test"), "a thing"),
    ):
        raise KeyboardInterrupt


def test_rate_limit_counts_what_it_suppresses() -> None:
    limit = RateLimit(burst=3, period=3600)
    assert [limit.allow() for _ in range(5)] == [True, True, True, False, False]
    assert limit.take_suppressed() == 2
    assert limit.take_suppressed() == 0


# -- a connection that crashes ---------------------------------------------------------------------


class BrokenAfterHandshake(Exception):
    pass


async def test_connection_crash_closes_only_that_connection(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = make_endpoint(EchoHub)
    async with connect(endpoint) as neighbour, connect(endpoint) as victim:
        receive = victim.transport.receive_some

        async def broken_receive() -> bytes:
            await receive()
            raise BrokenAfterHandshake("a bug in the transport")

        victim.transport.receive_some = broken_receive  # type: ignore[method-assign]
        # The reader is already waiting in the old receive_some: this Echo
        # goes through it, and the next read is the broken one.
        assert (await victim.invoke("Echo", 1)).result == 1
        await victim.send_invocation("Echo", 2, invocation_id="1")
        messages = await victim.receive_until_closed()
        assert messages[-1] == CloseMessage(error="Connection closed with an error.")
        with trio.fail_after(CEILING):
            await victim.finished.wait()
        assert victim.connection.connection_id not in {
            c.connection_id for c in endpoint.router.all_connections()
        }
        assert (await neighbour.invoke("Echo", "still here")).result == "still here"
    assert len(tracebacks(caplog)) == 1


async def test_result_that_cannot_be_encoded_is_an_error_completion_without_traceback(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with connect(EchoHub) as client:
        nan = await client.invoke("NotANumber")
        assert nan.error is not None
        assert nan.error.startswith("An unexpected error occurred invoking 'NotANumber'")
        assert "JSON" in nan.error
        a_set = await client.invoke("ASet")
        assert a_set.error is not None and "set" in a_set.error
        assert await client.invoke("Echo", 5) == CompletionMessage.with_result("2", 5)
    assert tracebacks(caplog) == []


# -- the heartbeat ---------------------------------------------------------------------------------


class Ticker:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.ticks = 0
        self.crashes: list[Exception] = []

    def tick(self, now: float) -> None:
        self.ticks += 1
        if self.fails:
            raise RuntimeError("tick failed")

    def crashed(self, error: Exception) -> None:
        self.crashes.append(error)


async def test_heartbeat_survives_a_connection_whose_tick_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broken, healthy = Ticker(fails=True), Ticker(fails=False)
    purged: list[float] = []
    with trio.move_on_after(10):
        await run_heartbeat(lambda: [broken, healthy], Settings(), purged.append)
    assert healthy.ticks >= 9
    assert broken.ticks == healthy.ticks
    assert len(broken.crashes) == broken.ticks
    assert len(purged) == healthy.ticks  # the server-wide chores run every tick too


# -- the fan-out -----------------------------------------------------------------------------------


class Recipient:
    def __init__(self, connection_id: str, wire: Any, *, broken: bool = False) -> None:
        self.connection_id = connection_id
        self.user_id = "user"
        self.tenant_id = "acme"
        self.wire = wire
        self.broken = broken
        self.frames: list[bytes] = []
        self.crashes: list[Exception] = []

    def send_nowait(self, message: SerializedMessage) -> None:
        if self.broken:
            raise RuntimeError("a bug in one recipient")
        self.frames.append(message.frame_for(self.wire).data)

    def crashed(self, error: Exception) -> None:
        self.crashes.append(error)


JSON_WIRE = wire_for(JsonHubProtocol(), TEXT_FRAMER)
MSGPACK_WIRE = wire_for(MessagePackHubProtocol(), BINARY_FRAMER)


async def test_fan_out_goes_on_past_a_recipient_that_raises() -> None:
    router = LocalRouter()
    first, broken, last = (
        Recipient("a", JSON_WIRE),
        Recipient("b", JSON_WIRE, broken=True),
        Recipient("c", JSON_WIRE),
    )
    for recipient in (first, broken, last):
        router.register(recipient)  # type: ignore[arg-type]
        await router.add_to_group("acme", recipient.connection_id, group_key("acme", "g"))
    await router.send_group(group_key("acme", "g"), InvocationMessage(target="T", arguments=(1,)))
    assert len(first.frames) == len(last.frames) == 1
    assert [str(error) for error in broken.crashes] == ["a bug in one recipient"]
    assert "b" not in {c.connection_id for c in router.all_connections()}


async def test_fan_out_skips_only_the_protocol_that_cannot_carry_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    router = LocalRouter()
    json_member, msgpack_member = Recipient("j", JSON_WIRE), Recipient("m", MSGPACK_WIRE)
    for recipient in (json_member, msgpack_member):
        router.register(recipient)  # type: ignore[arg-type]
        await router.add_to_group("acme", recipient.connection_id, group_key("acme", "g"))
    await router.send_group(
        group_key("acme", "g"), InvocationMessage(target="T", arguments=(math.nan,))
    )
    assert json_member.frames == [] and json_member.crashes == []
    assert len(msgpack_member.frames) == 1
    assert {c.connection_id for c in router.all_connections()} == {"j", "m"}
    assert tracebacks(caplog) == []


# -- the front door --------------------------------------------------------------------------------


class ExplodingHubs:
    """Just enough of a HubServer for the front door, with a bug in ``admit``."""

    settings = Settings(request_head_timeout=5)

    def endpoint_for(self, path: str) -> object:
        return object()

    def admit(self, *args: object) -> object:
        raise RuntimeError("a bug in admission")


class NoBridge:
    def ssl_context(self) -> None:
        return None


async def test_front_door_contains_a_failing_connection(caplog: pytest.LogCaptureFixture) -> None:
    from voisnap.server.front_door import FrontDoor

    door = FrontDoor(ExplodingHubs(), NoBridge())  # type: ignore[arg-type]
    server_side, client_side = socket.socketpair()
    server_side.setblocking(False)
    client_side.sendall(
        b"GET /hubs/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with trio.fail_after(CEILING):
        await door._handle(server_side)  # returns: the error stayed inside
    assert server_side.fileno() == -1  # and that connection was closed
    assert client_side.recv(100) == b""
    client_side.close()
    assert len(tracebacks(caplog)) == 1


async def test_client_helper_is_not_a_test() -> None:
    assert TestClient.__test__ is False
