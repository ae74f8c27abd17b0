"""A connection's life as one state machine, and the close reasons a client sees (issue 9).

``HubConnection`` moves between HANDSHAKING, OPEN, SUSPENDED, CLOSING and
CLOSED along the arrows of ``TRANSITIONS`` only; every way a connection ends
goes through ``close(disconnect)`` once, with a typed ``CloseReason``, and the
first reason wins. Each test records the states a real connection passes
through (driven in-process by the fake client) and what the client received.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.support.fakes import MemoryTransport, TestClient, connect, make_endpoint
from voisnap.config import Settings
from voisnap.hubs.closing import (
    CLIENT_LEFT,
    SHUTTING_DOWN,
    SLOW_CONSUMER,
    TOKEN_EXPIRED,
    CloseReason,
    shutting_down,
    token_expired,
)
from voisnap.hubs.connection import (
    CLOSED,
    CLOSING,
    HANDSHAKING,
    OPEN,
    SUSPENDED,
    TRANSITIONS,
    HubConnection,
    HubConnectionState,
)
from voisnap.hubs.hub import Hub
from voisnap.principal import Principal
from voisnap.protocol import CloseMessage, LocalProtocolError

CEILING = 30


class StateHub(Hub):
    async def echo(self, value: Any) -> Any:
        return value

    async def leave(self) -> None:
        self.context.abort()

    async def on_connected(self) -> None:
        if self.context.user_id == "unwelcome":
            raise RuntimeError("not today")


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[HubConnectionState]]]:
    """Every state each connection moved to, by connection id."""
    seen: dict[str, list[HubConnectionState]] = {}
    original = HubConnection._move_to

    def recording(self: HubConnection, state: HubConnectionState) -> None:
        original(self, state)
        seen.setdefault(self.connection_id, [HANDSHAKING]).append(state)

    monkeypatch.setattr(HubConnection, "_move_to", recording)
    yield seen


def path_of(moves: dict[str, list[HubConnectionState]], client: TestClient) -> list[str]:
    return [state.name for state in moves[client.connection.connection_id]]


# -- the table ------------------------------------------------------------------------------------


def bare_connection() -> HubConnection:
    return HubConnection(
        endpoint=make_endpoint(StateHub),
        transport=MemoryTransport(),
        principal=Principal(user_id="u", tenant_id="t"),
    )


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(HubConnectionState, HubConnectionState))
)
async def test_connection_state_moves_only_along_the_table(
    source: HubConnectionState, target: HubConnectionState
) -> None:
    connection = bare_connection()
    connection.state = source
    if target in TRANSITIONS[source]:
        connection._move_to(target)
        assert connection.state is target
    else:
        with pytest.raises(LocalProtocolError, match=f"from {source.name} to {target.name}"):
            connection._move_to(target)
        assert connection.state is source


def test_connection_state_table_has_the_documented_arrows() -> None:
    assert {s: {t.name for t in ts} for s, ts in TRANSITIONS.items()} == {
        HANDSHAKING: {"OPEN", "CLOSING", "CLOSED"},
        OPEN: {"SUSPENDED", "CLOSING", "CLOSED"},
        SUSPENDED: {"OPEN", "CLOSING", "CLOSED"},
        CLOSING: {"CLOSED"},
        CLOSED: set(),
    }


async def test_connection_close_is_one_path_and_the_first_reason_wins() -> None:
    connection = bare_connection()
    connection.close(shutting_down())
    connection.close(token_expired())
    connection.evict_slow_consumer()
    assert connection.state is CLOSING
    assert connection.disconnect is not None
    assert connection.disconnect.reason is CloseReason.SHUTDOWN
    assert not connection.transport.closed  # eviction after a close does not re-enter it


# -- what a client observes -----------------------------------------------------------------------


async def ended(client: TestClient) -> None:
    with trio.fail_after(CEILING):
        await client.finished.wait()


async def test_client_that_leaves_goes_straight_to_closed(autojump_clock, moves) -> None:
    async with connect(StateHub) as client:
        assert (await client.invoke("Echo", 1)).result == 1
        await client.send_close()
        assert await client.receive_until_closed() == []
        await ended(client)
    assert path_of(moves, client) == ["HANDSHAKING", "OPEN", "CLOSED"]
    assert client.connection.disconnect is CLIENT_LEFT


async def test_token_expiry_passes_through_closing(autojump_clock, moves) -> None:
    principal = Principal(user_id="u", tenant_id="t", expires_at=time.time() + 5)
    async with connect(StateHub, principal=principal) as client:
        assert await client.receive_until_closed() == [
            CloseMessage(error=TOKEN_EXPIRED, allow_reconnect=True)
        ]
        await ended(client)
    assert path_of(moves, client) == ["HANDSHAKING", "OPEN", "CLOSING", "CLOSED"]
    assert client.connection.disconnect.reason is CloseReason.TOKEN_EXPIRED


async def test_handshake_timeout_is_a_timeout(autojump_clock, moves) -> None:
    async with connect(StateHub, Settings(handshake_timeout=2), handshake=False) as client:
        assert (await client.receive_handshake())["error"] == "Handshake was canceled."
        await ended(client)
    assert path_of(moves, client) == ["HANDSHAKING", "CLOSING", "CLOSED"]
    assert client.connection.disconnect.reason is CloseReason.TIMEOUT


async def test_bad_handshake_is_a_failed_handshake(autojump_clock, moves) -> None:
    async with connect(StateHub, handshake=False) as client:
        await client.handshake(b'{"protocol":"xml","version":1}\x1e')
        await ended(client)
    assert path_of(moves, client) == ["HANDSHAKING", "CLOSING", "CLOSED"]
    assert client.connection.disconnect.reason is CloseReason.HANDSHAKE_FAILED


async def test_protocol_error_is_reported_with_its_reason(autojump_clock, moves) -> None:
    async with connect(StateHub) as client:
        await client.send_raw(b"not json\x1e")
        [close] = await client.receive_until_closed()
        assert close.error.startswith("Connection closed with an error. InvalidDataException:")
        assert close.allow_reconnect
        await ended(client)
    assert client.connection.disconnect.reason is CloseReason.PROTOCOL_ERROR
    assert path_of(moves, client)[-2:] == ["CLOSING", "CLOSED"]


async def test_hub_abort_is_closed_by_the_server(autojump_clock, moves) -> None:
    async with connect(StateHub) as client:
        await client.send_invocation("Leave", invocation_id="1")
        messages = await client.receive_until_closed()
        assert messages[-1] == CloseMessage()
        await ended(client)
    assert client.connection.disconnect.reason is CloseReason.SERVER_CLOSED


async def test_failed_on_connected_is_an_error_without_reconnect(autojump_clock, moves) -> None:
    principal = Principal(user_id="unwelcome", tenant_id="t")
    async with connect(StateHub, principal=principal) as client:
        [close] = await client.receive_until_closed()
        assert close == CloseMessage(error="Connection closed with an error.")
        await ended(client)
    assert client.connection.disconnect.reason is CloseReason.ERROR
    assert path_of(moves, client) == ["HANDSHAKING", "OPEN", "CLOSING", "CLOSED"]


async def test_shutdown_says_so_and_invites_a_reconnect(autojump_clock, moves) -> None:
    async with connect(StateHub) as client:
        client.connection.close(shutting_down())
        assert await client.receive_until_closed() == [
            CloseMessage(error=SHUTTING_DOWN, allow_reconnect=True)
        ]
        await ended(client)
    assert client.connection.disconnect.reason is CloseReason.SHUTDOWN


async def test_eviction_closes_at_once_and_only_once(autojump_clock, moves) -> None:
    async with connect(StateHub) as client:
        connection = client.connection
        connection.evict_slow_consumer()
        assert connection.state is CLOSING and connection.transport.closed
        connection.evict_slow_consumer()  # a second fan-out finds it full again: nothing
        assert await client.receive_until_closed() == [
            CloseMessage(error=SLOW_CONSUMER, allow_reconnect=True)
        ]
        await ended(client)
    assert path_of(moves, client) == ["HANDSHAKING", "OPEN", "CLOSING", "CLOSED"]
    assert connection.disconnect.reason is CloseReason.SLOW_CONSUMER


# -- stateful reconnect: SUSPENDED ----------------------------------------------------------------


STATEFUL_HANDSHAKE = b'{"protocol":"json","version":2}\x1e'


async def stateful_client(nursery: trio.Nursery, settings: Settings) -> TestClient:
    client = TestClient(make_endpoint(StateHub, settings))
    client.connection = HubConnection(
        endpoint=client.endpoint,
        transport=client.transport,
        principal=Principal(user_id="u", tenant_id="t"),
        stateful=True,
    )
    nursery.start_soon(client.run_server_side)
    assert await client.handshake(STATEFUL_HANDSHAKE) == {}
    return client


async def test_stateful_connection_is_suspended_and_resumes(autojump_clock, moves) -> None:
    async with trio.open_nursery() as nursery:
        client = await stateful_client(nursery, Settings())
        connection = client.connection
        client.transport.abort()  # the WebSocket drops
        comeback = MemoryTransport()
        nursery.start_soon(connection.adopt, comeback)
        await comeback.to_server.send(b'{"type":9,"sequenceId":1}\x1e')
        await comeback.to_server.send(
            b'{"type":1,"invocationId":"1","target":"Echo","arguments":["back"]}\x1e'
        )
        received = b""
        while b'"result":"back"' not in received:
            received += await comeback.from_server.receive()
        assert connection.state is OPEN
        connection.close(shutting_down())
    assert path_of(moves, client) == [
        "HANDSHAKING", "OPEN", "SUSPENDED", "OPEN", "CLOSING", "CLOSED",
    ]


async def test_stateful_client_that_does_not_come_back_times_out(autojump_clock, moves) -> None:
    async with trio.open_nursery() as nursery:
        client = await stateful_client(nursery, Settings(disconnect_timeout=5))
        client.transport.abort()
        await ended(client)
    assert path_of(moves, client) == ["HANDSHAKING", "OPEN", "SUSPENDED", "CLOSING", "CLOSED"]
    assert client.connection.disconnect.reason is CloseReason.TIMEOUT
    assert client.connection.state is SUSPENDED or client.connection.state is CLOSED
