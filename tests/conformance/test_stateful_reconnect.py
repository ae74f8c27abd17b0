"""Stateful reconnect: a dropped WebSocket resumed without losing or repeating a message.

HubProtocol.md, "Stateful Reconnect" (ASP.NET Core 8); the wire reference,
section 9: negotiate with ``useStatefulReconnect=true`` gets
``"useStatefulReconnect": true`` (only if asked: the JS client refuses a server
that offers it unasked); a version 2 handshake on a WebSocket turns it on; both
sides number their Invocation/StreamItem/Completion messages, acknowledge with
Ack and, after a drop, the client opens a new WebSocket with the same ``id``
(no negotiate, no handshake) and both send a Sequence, then what the other has
not acknowledged. voisnap keeps the most recent ``stateful_reconnect_buffer_size``
bytes of unacknowledged messages (``hubs/replay.py``); a resume that would need
a dropped message ends with a Close (allowReconnect) instead of a gap.

The official client (``@microsoft/signalr`` 10.0.11, ``withStatefulReconnect()``,
``js/stateful.mjs``) connects through a TCP proxy (``HoldingProxy``, below) that
resets both sides of every connection at once (``drop_all``), and can hold the
client's new connections for a while, so that the test decides what is sent
while the client is away. The JS client tries its stateful reconnect once,
immediately, to the same URL; if that fails it closes (or, with automatic
reconnect, starts over as a new connection).

What the JS client does when a resume cannot be made whole (with a tiny
buffer): voisnap sends the Close on the new WebSocket, but the JS client drops
everything that comes before a Sequence message, so it never sees that Close;
it sees the socket close, tries once more, gets 404 and closes, without an
error (or, now and then, with the 1006 of that last try). Its numbers stop at
the drop: a gap-free prefix, never a silent gap.
That variant is tested without automatic reconnect: with it, 10.0.11 sometimes
throws an uncaught "HttpConnection.stopConnection(undefined) was called while
the connection is still in the connecting state." from its stateful-reconnect
close handler, a client bug.

The raw WebSocket tests at the end check the wire itself: Acks, no Acks for a
version 1 handshake, and a resume's Sequence and replay.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
import trio
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

from tests.conftest import FAST_SETTINGS
from tests.support.node import NodeScenario, run_scenario
from tests.support.server import ServerProcess
from tests.support.tcp_proxy import TcpProxy
from tests.support.ws_client import (
    HubClient,
    RawWebSocket,
    UpgradeRefused,
    open_hub_client,
    with_query,
)

pytestmark = pytest.mark.conformance

HUB_PATH = "/hubs/playground"
DISCONNECT_TIMEOUT = float(FAST_SETTINGS["disconnect_timeout"])
TINY_BUFFER = 300  # bytes: about six Receive messages
RESUME_GAP = "Server closed the connection: messages it sent while the client was away are lost."
SOCKET_LOST = "WebSocket closed with status code: 1006 (no reason given)."
LINGER_ABORT = struct.pack("ii", 1, 0)
TIMEOUT = 10


class HoldingProxy(TcpProxy):
    """A ``TcpProxy`` that can also hold new connections: while holding, a
    client's connection is accepted but not forwarded (its bytes wait in the
    kernel); ``release()`` connects the held ones to the server."""

    def __init__(self, target_port: int) -> None:
        self._holding = False
        self._held: list[socket.socket] = []
        super().__init__(target_port)

    def hold(self) -> None:
        with self._lock:
            self._holding = True

    def release(self) -> None:
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
        for client in held:
            self._pair(client)

    def _accept(self) -> None:
        with self._lock:
            holding = self._holding
        if not holding:
            return super()._accept()
        client, _ = self._listener.accept()
        with self._lock:
            self._held.append(client)

    def _pair(self, client: socket.socket) -> None:
        server = socket.create_connection(self._target)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._pairs.append((client, server))
            self.connections_made += 1
        self._selector.register(client, selectors.EVENT_READ, server)
        self._selector.register(server, selectors.EVENT_READ, client)
        self._waker_w.send(b"x")

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for client in held:
            client.close()
        super().close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("stateful") / "data", FAST_SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
def tiny_buffer_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "stateful_reconnect_buffer_size": str(TINY_BUFFER)}
    with ServerProcess(tmp_path_factory.mktemp("stateful-tiny") / "data", settings) as server:
        yield server


@pytest.fixture
def proxy(hub: ServerProcess) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(hub.port)
    yield proxy
    proxy.close()


def stats(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/stats", timeout=5).json()


def wait_stats(server: ServerProcess, condition: Callable[[dict[str, Any]], bool],
               timeout: float) -> dict[str, Any]:
    """Poll ``/stats`` until ``condition`` holds (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        current = stats(server)
        if condition(current):
            return current
        if time.monotonic() > deadline:
            pytest.fail(f"/stats never met the condition; last: {current}")
        time.sleep(0.02)


def scenario(server: ServerProcess, proxy: TcpProxy, group: str, **params: Any) -> NodeScenario:
    """The stateful client through ``proxy``, once the connections of earlier
    tests have ended (so that ``/stats`` describes this test alone)."""
    wait_stats(server, lambda s: s["connections"] == 0, timeout=TIMEOUT)
    return NodeScenario("stateful.mjs", {
        "url": f"http://127.0.0.1:{proxy.port}{HUB_PATH}",
        "directUrl": server.hub_url(),
        "token": server.token(),
        "group": group,
        "keepAliveMs": 1000,  # well under the server's 3 s client timeout
        **params,
    }, timeout=30)


def command(client: NodeScenario, line: str, reply: str) -> dict[str, Any]:
    client.send_line(line)
    return client.wait_for(reply)


def hub_stats(current: dict[str, Any]) -> dict[str, Any]:
    return current["hubs"][HUB_PATH]


# -- the JS client through a dropping proxy -----------------------------------------------------


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_stateful_reconnect_after_tcp_drop_delivers_every_number_once_in_order(
    hub: ServerProcess, proxy: HoldingProxy, protocol: str
) -> None:
    """Numbers 0-29 are sent before the drop (most still unacknowledged: the
    client acknowledges once a second), 30-59 while the client's new
    connection is held at the proxy (the server keeps them for it), 60-89 after
    it is back: the client gets 0-89, each once, in order, on the same
    connection (one negotiate; the server still counts it a group member)."""
    with scenario(hub, proxy, f"numbers-{protocol}", protocol=protocol) as client:
        ready = client.wait_for("ready")
        command(client, "send 0 30", "sent")
        proxy.hold()
        assert proxy.drop_all() >= 1
        command(client, "send 30 60", "sent")
        away = stats(hub)
        proxy.release()
        command(client, "send 60 90", "sent")
        command(client, "await 90", "received")
        echoed = command(client, "echo", "echoed")
        back = stats(hub)
        result = command(client, "end", "result")
    assert result["numbers"] == list(range(90))
    assert result["events"] == [], result["events"]  # no onreconnecting, no onclose
    assert result["firstId"] == result["lastId"] == ready["connectionId"]
    negotiates = [r for r in result["tap"]["requests"] if r["path"].endswith("/negotiate")]
    assert len(negotiates) == 1
    assert result["tap"]["webSockets"] == 2  # the first, and the one it resumed on
    assert echoed["value"] == "after the drop"
    # The server kept the connection while the client was away, and did not replace it.
    assert away["connections"] == back["connections"] == 2
    if protocol == "json":  # the tap reads JSON records only
        assert result["records"]["types"].get("9") == 1  # the server's Sequence


def test_stateful_reconnect_not_back_in_time_ends_connection_normally(
    hub: ServerProcess, proxy: HoldingProxy
) -> None:
    """The client's new connection is held past ``disconnect_timeout``: the
    server ends the connection as a normal disconnect (it leaves the hub and
    its group, and a group send no longer counts it); when the client's
    attempt finally arrives it is refused, and the client closes."""
    group = "not-back"
    with scenario(hub, proxy, group) as client:
        client.wait_for("ready")
        command(client, "send 0 10", "sent")
        command(client, "await 10", "received")
        before = stats(hub)
        proxy.hold()
        proxy.drop_all()
        dropped_at = time.monotonic()
        gone = wait_stats(hub, lambda s: s["connections"] == before["connections"] - 1,
                          timeout=DISCONNECT_TIMEOUT + 3)
        gone_after = time.monotonic() - dropped_at
        command(client, "send 10 11", "sent")
        after_send = stats(hub)
        proxy.release()
        closed = client.wait_for("closed")
        result = command(client, "end", "result")
    assert gone_after >= DISCONNECT_TIMEOUT - 0.3, f"ended after {gone_after:.1f} s"
    assert hub_stats(gone)["groups"] == hub_stats(before)["groups"] - 1
    assert hub_stats(after_send)["deliveries"] == hub_stats(gone)["deliveries"]
    assert result["numbers"] == list(range(10))
    assert result["events"] == ["closed"]
    assert closed["error"] is not None  # the lost socket, reported once the resume failed


def test_stateful_reconnect_with_dropped_messages_ends_without_a_gap(
    tiny_buffer_hub: ServerProcess,
) -> None:
    """Thirty numbers are sent while the client is away, far more than the
    300-byte buffer keeps: the resume cannot be made whole. The server closes
    the resumed connection with a Close (allowReconnect) that says so; the
    client ends (see the module docstring) with the numbers it had: 0-9."""
    server = tiny_buffer_hub
    proxy = HoldingProxy(server.port)
    try:
        with scenario(server, proxy, "tiny") as client:
            client.wait_for("ready")
            command(client, "send 0 10", "sent")
            command(client, "await 10", "received")
            proxy.hold()
            proxy.drop_all()
            command(client, "send 10 40", "sent")
            proxy.release()
            client.wait_for("closed")
            after = wait_stats(server, lambda s: s["connections"] == 1, timeout=TIMEOUT)
            result = command(client, "end", "result")
    finally:
        proxy.close()
    numbers = result["numbers"]
    assert numbers == list(range(len(numbers)))  # a gap-free prefix ...
    assert numbers == list(range(10))  # ... that ends at the drop
    assert result["events"] == ["closed"]
    # No error, or the 1006 of the failed last try: the JS client reports
    # whichever of its two close handlers runs first.
    assert result["closeError"] in (None, SOCKET_LOST), result["closeError"]
    # The first WebSocket and the resumed one the server closed (and, mostly,
    # one more try, refused).
    assert result["tap"]["webSockets"] >= 2
    assert result["records"]["closes"] == [
        {"type": 7, "error": RESUME_GAP, "allowReconnect": True}
    ]
    assert hub_stats(after)["groups"] == 0


def test_stateful_reconnect_not_negotiated_drop_closes_the_connection(
    hub: ServerProcess, proxy: HoldingProxy
) -> None:
    """The control: without withStatefulReconnect(), a drop ends the
    connection at once on both sides (no resume attempt, no waiting)."""
    with scenario(hub, proxy, "plain", statefulReconnect=False) as client:
        client.wait_for("ready")
        before = stats(hub)
        proxy.drop_all()
        closed = client.wait_for("closed")
        gone = wait_stats(hub, lambda s: s["connections"] == before["connections"] - 1,
                          timeout=DISCONNECT_TIMEOUT)
        result = command(client, "end", "result")
    assert "1006" in closed["error"], closed
    assert hub_stats(gone)["groups"] == hub_stats(before)["groups"] - 1
    assert result["tap"]["webSockets"] == 1


# -- negotiate ----------------------------------------------------------------------------------


async def test_stateful_negotiate_flag_only_when_asked(hub: ServerProcess) -> None:
    token = hub.token()
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            plain = await http.post(f"{hub.hub_url()}/negotiate",
                                    params={"negotiateVersion": "1"},
                                    headers={"Authorization": f"Bearer {token}"})
            asked = await http.post(f"{hub.hub_url()}/negotiate",
                                    params={"negotiateVersion": "1",
                                            "useStatefulReconnect": "true"},
                                    headers={"Authorization": f"Bearer {token}"})
    assert "useStatefulReconnect" not in plain.json()
    assert asked.json()["useStatefulReconnect"] is True


async def test_stateful_negotiate_flag_not_offered_when_setting_is_off(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(settings={"stateful_reconnect": "false"})
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            asked = await http.post(f"{server.hub_url()}/negotiate",
                                    params={"negotiateVersion": "1",
                                            "useStatefulReconnect": "true"},
                                    headers={"Authorization": f"Bearer {server.token()}"})
    assert asked.status_code == 200
    assert "useStatefulReconnect" not in asked.json()


def test_stateful_js_client_without_it_connects_to_the_server(hub: ServerProcess) -> None:
    """The JS client fails with "Client didn't negotiate Stateful Reconnect
    but the server did." if offered it unasked: it connects, so it was not."""
    result = run_scenario("connect.mjs", 20, url=hub.hub_url(), token=hub.token(),
                          transport="WebSockets", protocol="json")
    assert result["started"] is True, result
    assert result["echoed"] == "hello"


# -- the wire, by hand ----------------------------------------------------------------------------


async def negotiate_stateful(server: ServerProcess, token: str) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.hub_url()}/negotiate",
            params={"negotiateVersion": "1", "useStatefulReconnect": "true"},
            headers={"Authorization": f"Bearer {token}"},
        )
    document = response.json()
    assert document["useStatefulReconnect"] is True
    return document["connectionToken"]


async def receive_tracked(client: HubClient) -> dict[str, Any]:
    """The next message that is not a Ping or an Ack (the server acknowledges
    on its heartbeat, whenever that comes)."""
    while (message := await client.receive_message()).get("type") == 8:
        pass
    return message


class ResumingWebSocket(RawWebSocket):
    """``RawWebSocket``, except that frames read together with the 101 are kept:
    a resuming server sends its Sequence right behind the upgrade response, and
    the base class's ``upgrade`` drops whatever came in the same read."""

    async def upgrade(self, host: str, target: str,
                      headers: Iterable[tuple[str, str]] = ()) -> None:
        await self.stream.send_all(self.ws.send(Request(host=host, target=target)))
        status, body = 0, b""
        while True:
            events = await self._events()
            for index, event in enumerate(events):
                match event:
                    case AcceptConnection():
                        for later in events[index + 1:]:
                            self._handle(later)
                        return
                    case RejectConnection():
                        status = event.status_code
                        if not event.has_body:
                            raise UpgradeRefused(status, body)
                    case RejectData():
                        body += event.data
                        if event.body_finished:
                            raise UpgradeRefused(status, body)


async def open_raw(server: ServerProcess, token: str, connection_token: str) -> HubClient:
    target = with_query(HUB_PATH, id=connection_token, access_token=token)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    websocket = ResumingWebSocket(stream)
    try:
        await websocket.upgrade(f"127.0.0.1:{server.port}", target)
    except BaseException:
        await stream.aclose()
        raise
    return HubClient(websocket)


def reset(client: HubClient) -> None:
    """Drop the TCP connection without a WebSocket or hub Close (RST)."""
    sock = client.websocket.stream.socket  # type: ignore[attr-defined]
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
    sock.close()


async def test_stateful_version_2_handshake_gets_acks(hub: ServerProcess) -> None:
    token = hub.token()
    with trio.fail_after(TIMEOUT):
        client = await open_raw(hub, token, await negotiate_stateful(hub, token))
        await client.handshake(version=2)
        assert await client.call("Echo", "one") == "one"
        assert await client.call("Echo", "two") == "two"
        acks = []  # the server may acknowledge the first Invocation on its own
        while not acks or acks[-1] < 2:
            message = await client.receive_message()
            if message.get("type") == 8:
                assert set(message) == {"type", "sequenceId"}
                acks.append(message["sequenceId"])
        await client.aclose()
    assert acks in ([2], [1, 2])


async def test_stateful_version_1_handshake_gets_no_acks_and_cannot_resume(
    hub: ServerProcess,
) -> None:
    """Negotiated, but a version 1 handshake: no stateful reconnect. The next
    message after the Completion is the keep-alive Ping, a second later: the
    heartbeat ticks twice a second, so an Ack would have come first."""
    token = hub.token()
    with trio.fail_after(TIMEOUT):
        connection_token = await negotiate_stateful(hub, token)
        client = await open_raw(hub, token, connection_token)
        await client.handshake(version=1)
        assert await client.call("Echo", "one") == "one"
        seen = await client.receive_message(skip_pings=False)
        reset(client)
        while True:  # 409 until the server has noticed the reset, then 404
            with pytest.raises(UpgradeRefused) as refused:
                again = await open_raw(hub, token, connection_token)
                await again.aclose()
            if refused.value.status_code != 409:
                break
            await trio.sleep(0.01)
    assert seen == {"type": 6}
    assert refused.value.status_code == 404


async def test_stateful_resume_sends_sequence_then_replays_unacknowledged(
    hub: ServerProcess,
) -> None:
    """HubProtocol.md, "Stateful Reconnect": after the drop the server's first
    message on the new WebSocket is its Sequence (the first message the client
    has not acknowledged), then those messages again in order, then live
    traffic; the client's resent Invocation is recognised as a copy and not
    run twice."""
    token = hub.token()
    group = "raw-resume"
    with trio.fail_after(TIMEOUT):
        connection_token = await negotiate_stateful(hub, token)
        client = await open_raw(hub, token, connection_token)
        await client.handshake(version=2)
        join = {"type": 1, "invocationId": "1", "target": "JoinGroup", "arguments": [group]}
        await client.send_record(join)
        first = await receive_tracked(client)
        async with open_hub_client(f"{hub.ws_url}{HUB_PATH}", token=token) as sender:
            for number in range(3):
                await sender.call("SendToGroup", group, number)
            before = [await receive_tracked(client) for _ in range(3)]
            reset(client)  # nothing acknowledged
            resumed = await open_raw(hub, token, connection_token)  # no handshake
            await resumed.send_raw(json.dumps({"type": 9, "sequenceId": 1}) + "\x1e"
                                   + json.dumps(join) + "\x1e")
            replayed = [await receive_tracked(resumed) for _ in range(5)]
            await sender.call("SendToGroup", group, 3)
            live = await receive_tracked(resumed)
            # The copy of JoinGroup was dropped: the next Completion is for "2".
            await resumed.send_record({"type": 1, "invocationId": "2", "target": "Echo",
                                       "arguments": ["after"]})
            echo = await receive_tracked(resumed)
        await resumed.aclose()
    receive = [{"type": 1, "target": "Receive", "arguments": [n]} for n in range(4)]
    assert first == {"type": 3, "invocationId": "1", "result": None}
    assert before == receive[:3]
    assert replayed == [{"type": 9, "sequenceId": 1}, first, *receive[:3]]
    assert live == receive[3]
    assert echo == {"type": 3, "invocationId": "2", "result": "after"}
