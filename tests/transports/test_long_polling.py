"""Long polling against a real ``voisnap serve``, with raw HTTP requests.

TransportProtocols.md, "Long Polling (Server-to-Client only)" and "Transport
Requests"; the statuses the official clients expect are in the wire reference,
section 2 (2.3 for long polling): the first poll starts the connection and
answers 200 empty at once; later polls hold until there are records (200, whole
records, raw bytes even for MessagePack) or until the poll timeout (200,
empty); 204 ends a poll for good (a newer poll replaced it, a DELETE ended the
connection); DELETE answers 202; POST sends records (200, empty). The polls are
the keep-alive: a connection with no poll in flight for ``disconnect_timeout``
is cleaned up, and leaves its groups. A client that stops polling while a group
floods it is evicted by the same rule as a slow WebSocket (seed 000,
"Backpressure": its outbox is full).

Two tests fail on purpose: they show voisnap bugs (see their docstrings).

One server per module (the shrunk timeouts of ``tests/conftest.py``, a poll
timeout of 1 s, an outbox of 10 messages); the vanishing client gets a server of
its own with a long poll timeout, so that only noticing the vanished client can
clean it up in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import msgpack
import pytest
import trio

from tests.conftest import FAST_SETTINGS
from tests.support.http_transports import (
    HANDSHAKE_JSON,
    EventStream,
    LongPollingClient,
    RawPoll,
    bearer,
    negotiate_connection,
    post_records,
)
from tests.support.server import ServerProcess
from tests.support.ws_client import (
    UpgradeRefused,
    get_stats,
    open_hub_client,
    open_raw_websocket,
    wait_for_stats,
    with_query,
)

HUB_PATH = "/hubs/playground"
TIMEOUT = 10
POLL_TIMEOUT = 1.0
DISCONNECT_TIMEOUT = float(FAST_SETTINGS["disconnect_timeout"])
OUTBOX_CAPACITY = 10
# The heartbeat checks about once a second; give the cleanup that much and a margin.
CLEANUP_WITHIN = DISCONNECT_TIMEOUT + 2.5
NO_CONNECTION = "No Connection with that ID"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "long_polling_timeout": str(POLL_TIMEOUT),
                "outbox_capacity": str(OUTBOX_CAPACITY)}
    with ServerProcess(tmp_path_factory.mktemp("long-polling") / "data", settings) as server:
        yield server


@pytest.fixture(scope="module")
def alice(hub: ServerProcess) -> str:
    return hub.token("alice", "acme")


def hub_stats(stats: dict) -> dict:
    return stats["hubs"][HUB_PATH]


# -- the first poll, later polls, sends ---------------------------------------------------------


async def test_long_polling_first_poll_returns_200_empty_with_no_cache_headers(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            document = await negotiate_connection(http, hub.hub_url(), alice)
            client = LongPollingClient(http, hub.hub_url(), alice, document["connectionToken"])
            first = await client.poll()
            await client.delete()
    assert first.status_code == 200
    assert first.content == b""
    assert first.headers["content-length"] == "0"
    assert first.headers["content-type"] == "application/octet-stream"
    assert first.headers["cache-control"] == "no-cache, no-store"
    assert first.headers["pragma"] == "no-cache"
    assert first.headers["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"


async def test_long_polling_post_returns_200_empty_and_poll_returns_the_completion(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            sent = await client.post(
                '{"type":1,"invocationId":"7","target":"Echo","arguments":["héllo"]}\x1e'
            )
            polled = await client.poll()
            await client.delete()
    assert sent.status_code == 200
    assert sent.content == b""
    assert polled.status_code == 200
    assert polled.headers["content-type"] == "application/octet-stream"
    assert polled.content == '{"type":3,"invocationId":"7","result":"héllo"}\x1e'.encode()


async def test_long_polling_poll_body_holds_only_whole_records(hub, alice):
    """Wire reference 2, "Framing alignment": every poll body the server sends
    holds one or more whole records (the JS client throws "Message is
    incomplete." otherwise). A stream's items queue up between polls."""
    bodies: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            await client.send_record({"type": 4, "invocationId": "s", "target": "Counter",
                                      "arguments": [40, 0]})
            while not bodies or b'"type":3' not in bodies[-1]:
                response = await client.poll()
                assert response.status_code == 200
                bodies.append(response.content)
            await client.delete()
    records = [record for body in bodies for record in body.split(b"\x1e")[:-1]]
    assert all(body.endswith(b"\x1e") for body in bodies if body), bodies
    items = [record for record in records if b'"type":2' in record]
    assert items == [b'{"type":2,"invocationId":"s","item":%d}' % n for n in range(40)]


async def test_long_polling_poll_returns_200_empty_after_poll_timeout(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            began = trio.current_time()
            polled = await client.poll()
            took = trio.current_time() - began
            await client.delete()
    assert (polled.status_code, polled.content) == (200, b"")
    assert POLL_TIMEOUT - 0.2 <= took <= POLL_TIMEOUT + 2, took


async def test_long_polling_messagepack_poll_body_is_raw_binary(hub, alice):
    """Wire reference 2.3: binary protocols travel as raw bytes in poll bodies
    (no base64): VarInt length prefix, then the MessagePack array (HubProtocol.md,
    "MessagePack (MsgPack) encoding")."""
    invocation = msgpack.packb([1, {}, "1", "Echo", [b"\x00\xff"]])
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice, handshake=False)
            await client.post('{"protocol":"messagepack","version":1}\x1e')
            handshake = await client.poll()
            await client.post(bytes([len(invocation)]) + invocation)
            polled = await client.poll()
            await client.delete()
    assert handshake.content == b"{}\x1e"
    completion = msgpack.packb([3, {}, "1", 3, b"\x00\xff"])
    assert polled.content == bytes([len(completion)]) + completion


async def test_long_polling_post_before_first_poll_is_accepted(hub, alice):
    """BUG. ASP.NET Core creates the connection at negotiate, so a POST that
    comes before the first poll is taken (200) and waits for the hub
    (HttpConnectionDispatcher.ProcessSend looks the token up among all
    negotiated connections). signalrcore's long polling sends its handshake
    POST before its first poll. voisnap answers 404 "No Connection with that
    ID" (``ConnectionRegistry.find`` only knows connections a transport
    request has started), so signalrcore cannot connect over long polling."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            document = await negotiate_connection(http, hub.hub_url(), alice)
            client = LongPollingClient(http, hub.hub_url(), alice, document["connectionToken"])
            sent = await client.post(HANDSHAKE_JSON)
            first = await client.poll()
            handshake = await client.poll() if first.content == b"" else first
            await client.delete()
    assert sent.status_code == 200, (sent.status_code, sent.text)
    assert handshake.content == b"{}\x1e"


# -- errors -------------------------------------------------------------------------------------


async def test_long_polling_unknown_id_returns_404_for_every_method(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = LongPollingClient(http, hub.hub_url(), alice, "no-such-token")
            responses = [await client.poll(), await client.post(HANDSHAKE_JSON),
                         await client.delete()]
    for response in responses:
        assert response.status_code == 404, response
        assert response.text == NO_CONNECTION
        assert response.headers["content-type"].startswith("text/plain")


async def test_long_polling_missing_id_returns_400(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            responses = [
                await http.get(hub.hub_url(), headers=bearer(alice)),
                await http.post(hub.hub_url(), content=HANDSHAKE_JSON, headers=bearer(alice)),
                await http.delete(hub.hub_url(), headers=bearer(alice)),
            ]
    assert [(r.status_code, r.text) for r in responses] == [(400, "Connection ID required")] * 3


async def test_long_polling_newer_poll_ends_older_poll_with_204(hub, alice):
    """Wire reference 2.3: 204 = a newer poll replaced this one; the newer poll
    then gets the data."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            older_stream = await RawPoll.send(hub.hub_url(), client.connection_token, alice)
            async with trio.open_nursery() as nursery:
                newer: list[httpx.Response] = []
                nursery.start_soon(lambda: poll_into(client, newer))
                older = await older_stream.read_response()
                await client.send_record({"type": 1, "invocationId": "1", "target": "Echo",
                                          "arguments": ["for the newer poll"]})
            await client.delete()
            await older_stream.aclose()
    assert (older.status, older.body) == (204, b"")
    assert newer[0].status_code == 200
    assert b"for the newer poll" in newer[0].content


async def test_long_polling_delete_returns_202_and_ends_held_poll_with_204(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            held_stream = await RawPoll.send(hub.hub_url(), client.connection_token, alice)
            deleted = await client.delete()
            held = await held_stream.read_response()
            await held_stream.aclose()
    assert deleted.status_code == 202
    assert held.status == 204


async def test_long_polling_requests_after_delete_return_404(hub, alice):
    """TransportProtocols.md allows 204 or 404 for a poll after the connection
    ended; voisnap forgets the token once the connection is over: 404, for
    polls, sends and a second DELETE alike (the JS client ignores a 404 DELETE)."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            await settle(hub)
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            assert (await client.delete()).status_code == 202
            await settle(hub)  # the connection is over
            poll, post, delete = (await client.poll(), await client.post(HANDSHAKE_JSON),
                                  await client.delete())
    assert poll.status_code in (204, 404)
    assert poll.status_code == 404
    assert (post.status_code, post.text) == (404, NO_CONNECTION)
    assert (delete.status_code, delete.text) == (404, NO_CONNECTION)


async def test_long_polling_token_of_another_user_returns_403(hub, alice):
    """A connection token is bound to the user who negotiated it."""
    bob = hub.token("bob", "acme")
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            responses = [await client.poll(token=bob), await client.post(HANDSHAKE_JSON, bob),
                         await client.delete(token=bob)]
            still_works = await client.call("Echo", "still mine")
            await client.delete()
    assert [r.status_code for r in responses] == [403, 403, 403], responses
    assert still_works == "still mine"


async def test_long_polling_first_poll_with_token_of_another_user_returns_403(hub, alice):
    bob = hub.token("bob", "acme")
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            document = await negotiate_connection(http, hub.hub_url(), alice)
            client = LongPollingClient(http, hub.hub_url(), alice, document["connectionToken"])
            stolen = await client.poll(token=bob)
            own = await client.poll()
            await client.delete()
    assert stolen.status_code == 403
    assert (own.status_code, own.content) == (200, b"")  # the 403 did not start it


async def test_long_polling_event_stream_on_long_polling_connection_returns_400(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            events = await EventStream.open(hub.hub_url(), client.connection_token, alice)
            body = await events.read_bytes(1)
            await events.aclose()
            await client.delete()
    assert events.status == 400
    assert body == b"Cannot change transports mid-connection"


async def test_long_polling_websocket_on_long_polling_connection_returns_400(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            target = with_query(HUB_PATH, id=client.connection_token, access_token=alice)
            with pytest.raises(UpgradeRefused) as refused:
                await open_raw_websocket("127.0.0.1", hub.port, target)
            await client.delete()
    assert refused.value.status_code == 400
    assert refused.value.body == b"Cannot change transports mid-connection"


async def test_long_polling_post_to_websocket_connection_returns_405(hub, alice):
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            document = await negotiate_connection(http, hub.hub_url(), alice)
            token = document["connectionToken"]
            async with open_hub_client(f"{hub.ws_url}{HUB_PATH}", token=alice,
                                       connection_token=token) as websocket:
                posted = await post_records(http, hub.hub_url(), token, alice,
                                            {"type": 6})
                assert await websocket.call("Echo", "ws") == "ws"
    assert posted.status_code == 405
    assert posted.text == "POST requests are not allowed for WebSocket connections."


# -- liveness and cleanup -----------------------------------------------------------------------


async def test_long_polling_client_that_keeps_polling_outlives_disconnect_timeout(hub, alice):
    """The polls are the keep-alive: no Pings, no client timeout. Each poll is
    held for the poll timeout (1 s); polling for longer than the disconnect
    timeout keeps the connection."""
    with trio.fail_after(TIMEOUT + DISCONNECT_TIMEOUT):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            began = trio.current_time()
            polls = []
            while trio.current_time() - began < DISCONNECT_TIMEOUT + 0.5:
                polls.append(await client.poll())
            echoed = await client.call("Echo", "alive")
            await client.delete()
    assert {(p.status_code, p.content) for p in polls} == {(200, b"")}  # no Pings
    assert echoed == "alive"


async def test_long_polling_client_that_stops_polling_is_cleaned_up_and_leaves_groups(
    hub, alice
):
    group = "stops-polling"
    with trio.fail_after(TIMEOUT + CLEANUP_WITHIN):
        async with httpx.AsyncClient() as http:
            await settle(hub)
            before = await get_stats(hub.url)
            client = await LongPollingClient.open(http, hub.hub_url(), alice)
            await client.call("JoinGroup", group)
            joined = await get_stats(hub.url)
            stopped_at = trio.current_time()  # no poll in flight from here on
            with trio.fail_after(CLEANUP_WITHIN):
                await wait_for_stats(
                    hub.url, lambda s: connection_count(s) == connection_count(before)
                )
            gone_after = trio.current_time() - stopped_at
            after_cleanup = await get_stats(hub.url)
            async with open_hub_client(f"{hub.ws_url}{HUB_PATH}", token=alice) as sender:
                await sender.call("SendToGroup", group, "anyone?")
            after_send = await get_stats(hub.url)
            late_poll = await client.poll()
    assert connection_count(joined) == connection_count(before) + 1
    assert hub_stats(joined)["groups"] == hub_stats(before)["groups"] + 1
    assert gone_after >= DISCONNECT_TIMEOUT - 0.2, gone_after
    assert hub_stats(after_cleanup)["groups"] == hub_stats(before)["groups"]
    # The group send reached nobody: the cleaned-up client is no longer a member.
    assert hub_stats(after_send)["deliveries"] == hub_stats(after_cleanup)["deliveries"]
    assert late_poll.status_code == 404


async def test_long_polling_client_that_vanishes_mid_poll_is_cleaned_up(
    start_server: Callable[..., ServerProcess],
):
    """BUG. A client that disappears while its poll is held (the TCP connection
    reset, as when a browser tab is killed) should be cleaned up like one that
    stopped polling: ASP.NET Core's LongPollingServerTransport ends the poll on
    ``RequestAborted`` and then reaps the connection after DisconnectTimeout.
    voisnap's held poll never notices the disconnect (``LongPolling.poll``
    waits for records or the poll timeout only), so the connection lives, and
    group sends count it, until ``long_polling_timeout`` (90 s by default) plus
    ``disconnect_timeout``. The poll timeout here is 20 s."""
    server = start_server(settings={"long_polling_timeout": "20"})
    token = server.token()
    group = "vanishes"
    with trio.fail_after(TIMEOUT + CLEANUP_WITHIN):
        async with httpx.AsyncClient() as http:
            client = await LongPollingClient.open(http, server.hub_url(), token)
            await client.call("JoinGroup", group)
            held = await RawPoll.send(server.hub_url(), client.connection_token, token)
            held.reset()
            with trio.move_on_after(CLEANUP_WITHIN):
                await wait_for_stats(server.url, lambda s: connection_count(s) == 0)
            after = await get_stats(server.url)
    assert connection_count(after) == 0, "the vanished client is still connected"
    assert hub_stats(after)["groups"] == 0


# -- a slow consumer ----------------------------------------------------------------------------


async def test_long_polling_client_that_stops_polling_under_a_flood_is_evicted(hub, alice):
    """Seed 000, "Backpressure", as for WebSockets: a client whose outbox (here
    10 messages) is full when a fan-out reaches it is evicted at once, well
    before the disconnect timeout would have cleaned it up."""
    group = "flooded"
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            await settle(hub)
            async with open_hub_client(f"{hub.ws_url}{HUB_PATH}", token=alice) as sender:
                client = await LongPollingClient.open(http, hub.hub_url(), alice)
                await client.call("JoinGroup", group)
                before = await get_stats(hub.url)
                stopped_at = trio.current_time()  # it never polls again
                for number in range(OUTBOX_CAPACITY + 5):
                    await sender.call("SendToGroup", group, number)
                evicted = await wait_for_stats(
                    hub.url, lambda s: hub_stats(s)["evictions"] > hub_stats(before)["evictions"]
                )
                took = trio.current_time() - stopped_at
                assert await sender.call("Echo", "still here") == "still here"
                gone = await wait_for_stats(
                    hub.url, lambda s: connection_count(s) == connection_count(before) - 1
                )
            late_poll = await client.poll()
    assert hub_stats(evicted)["evictions"] == hub_stats(before)["evictions"] + 1
    assert took < DISCONNECT_TIMEOUT, f"evicted only after {took:.1f} s: by the cleanup?"
    assert hub_stats(gone)["groups"] == hub_stats(before)["groups"] - 1
    # The outbox took its 10 messages before the eviction. (The router also
    # counts the few sends that reach the evicted connection before it has
    # left the router; its closed transport drops them.)
    delivered = hub_stats(evicted)["deliveries"] - hub_stats(before)["deliveries"]
    assert delivered >= OUTBOX_CAPACITY, delivered
    assert late_poll.status_code in (204, 404)


# -- helpers ------------------------------------------------------------------------------------


def connection_count(stats: dict) -> int:
    return stats["connections"]


async def settle(server: ServerProcess) -> None:
    """Wait until the connections of earlier tests have ended (each test ends
    its own; the server ends them a moment later), so that the counters in
    ``/stats`` describe this test alone."""
    await wait_for_stats(server.url, lambda stats: connection_count(stats) == 0)


async def poll_into(client: LongPollingClient, into: list[httpx.Response]) -> None:
    into.append(await client.poll())
