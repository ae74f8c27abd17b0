"""voisnap's own WebSocket transport, end to end over real sockets.

TransportProtocols.md, "WebSockets (Full Duplex)", and HubProtocol.md: the
handshake ("Overview"), records split on 0x1E ("JSON Encoding"; one WebSocket
message may carry several records, and a record may span messages), Ping
("Ping"), Close ("Close"), the size limit per hub message.

A client that breaks the protocol gets a Close naming its mistake, and only it
is closed: each test keeps a bystander connection open and checks that it is
still served afterwards. Timings come from the fast settings of
``tests/conftest.py`` (keep-alive 1 s, handshake timeout 1 s, client timeout
3 s); the tests wait for what the server sends, never for the clock.
"""

from __future__ import annotations

import json
import signal
from contextlib import asynccontextmanager

import pytest
import trio

from tests.support.ws_client import (
    CLOSE,
    COMPLETION,
    HANDSHAKE,
    INVOCATION,
    PING,
    RECORD_SEPARATOR,
    HubClient,
    encode_record,
    get_stats,
    open_hub_client,
    open_raw_websocket,
    open_websocket_after_request,
    wait_for_stats,
    with_query,
)

TIMEOUT = 10
HUB_PATH = "/hubs/playground"
CLOSED_WITH_ERROR = "Connection closed with an error."


def ws_hub_url(server) -> str:
    return f"{server.ws_url}{HUB_PATH}"


def invocation(invocation_id: str, target: str, *arguments: object) -> dict:
    return {"type": INVOCATION, "invocationId": invocation_id, "target": target,
            "arguments": list(arguments)}


@asynccontextmanager
async def bystander(server, token: str):
    """A well-behaved client, connected before the misbehaving one; on exit it
    checks that it is still served."""
    async with open_hub_client(ws_hub_url(server), token=token) as client:
        assert await client.call("Echo", "before") == "before"
        yield client
        assert await client.call("Echo", "after") == "after"


async def assert_fresh_client_is_served(server, token: str) -> None:
    async with open_hub_client(ws_hub_url(server), token=token) as client:
        assert await client.call("Echo", "fresh") == "fresh"


# -- a working connection -----------------------------------------------------------------------


async def test_websocket_handshake_and_echo(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            await client.send_raw(HANDSHAKE)
            assert await client.receive_record() == "{}"
            completion = await client.invoke("Echo", {"nested": ["value", 1, None]})
    assert completion == {"type": COMPLETION, "invocationId": "1",
                          "result": {"nested": ["value", 1, None]}}


async def test_websocket_handshake_in_a_binary_message_is_accepted(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            await client.send_raw(HANDSHAKE.encode())
            assert await client.receive_record() == "{}"
            assert await client.call("Echo", "binary") == "binary"


async def test_websocket_records_are_sent_in_text_messages(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_record(invocation("1", "Echo", "text"))
            message = await client.websocket.get_message()
    assert isinstance(message, str)
    assert message.endswith(RECORD_SEPARATOR)


async def test_websocket_handshake_and_invocation_in_one_message(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            await client.send_raw(HANDSHAKE + encode_record(invocation("1", "Echo", "same")))
            assert await client.receive_record() == "{}"
            completion = await client.receive_completion("1")
    assert completion["result"] == "same"


async def test_websocket_several_records_in_one_message_are_all_answered(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_raw(
                "".join(encode_record(invocation(str(n), "Echo", n)) for n in range(1, 6))
            )
            results = [(await client.receive_completion(str(n)))["result"] for n in range(1, 6)]
    assert results == [1, 2, 3, 4, 5]


async def test_websocket_record_split_across_messages_is_reassembled(server):
    token = server.token()
    record = encode_record(invocation("7", "Echo", "split"))
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            for start in range(0, len(record), 9):
                await client.send_raw(record[start : start + 9])
            completion = await client.receive_completion("7")
    assert completion["result"] == "split"


async def test_websocket_client_close_message_ends_the_connection(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_record({"type": CLOSE})
            await client.wait_closed()
        stats = await wait_for_stats(server.url, lambda stats: stats["connections"] == 0)
    assert stats["hubs"][HUB_PATH]["connections"] == 0


async def test_websocket_non_ascii_text_round_trips(server):
    token = server.token()
    text = "héllo wörld ✓ 🚀 日本語"
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            assert await client.call("Echo", text) == text


async def test_websocket_message_over_64_kib_uses_the_long_frame_header(start_server):
    """RFC 6455 5.2: payloads of 65536 bytes or more carry a 64-bit length."""
    server = start_server(settings={"max_message_size": str(256 * 1024)})
    token = server.token()
    text = "0123456789" * 10_000
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            assert await client.call("Echo", text) == text
            assert await client.call("Echo", "small") == "small"


async def test_websocket_ping_frame_gets_pong(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.websocket.ping(b"are you there")
            assert await client.call("Echo", "yes") == "yes"


async def test_websocket_client_close_frame_ends_the_connection(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            assert await client.call("Echo", "bye") == "bye"
            before = await get_stats(server.url)
        after = await wait_for_stats(server.url, lambda stats: stats["connections"] == 0)
    assert before["connections"] == 1
    assert after["hubs"][HUB_PATH]["connections"] == 0


async def test_websocket_dropped_tcp_connection_ends_the_connection(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        websocket = await open_raw_websocket(
            "127.0.0.1", server.port, with_query(HUB_PATH, access_token=token)
        )
        client = HubClient(websocket)
        await client.handshake()
        await client.join_group("room")
        await websocket.aclose()  # no WebSocket Close, no hub Close
        after = await wait_for_stats(server.url, lambda stats: stats["connections"] == 0)
        await assert_fresh_client_is_served(server, token)
    assert after["hubs"][HUB_PATH]["groups"] == 0


# -- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "fragments"),
    [
        pytest.param('{"type":1,"target":"Echo",' + RECORD_SEPARATOR, ["JSON"], id="invalid-json"),
        pytest.param('[1,2,3]' + RECORD_SEPARATOR, ["JSON object"], id="not-an-object"),
        pytest.param(encode_record({"type": 1, "invocationId": "1", "target": 42,
                                    "arguments": []}), ["'target'"], id="target-not-a-string"),
        pytest.param(encode_record({"type": 1, "invocationId": "1", "target": "Echo",
                                    "arguments": "nope"}), ["'arguments'"],
                     id="arguments-not-an-array"),
        pytest.param(encode_record({"type": 99}), ["99"], id="unknown-type"),
        pytest.param(encode_record({"type": "1"}), ["'type'"], id="type-not-an-integer"),
        pytest.param(encode_record({"target": "Echo"}), ["'type'"], id="missing-type"),
    ],
)
async def test_websocket_malformed_message_gets_close_naming_the_problem(
    server, record, fragments
):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with bystander(server, token):
            async with open_hub_client(ws_hub_url(server), token=token) as client:
                await client.send_raw(record)
                close = await client.receive_close()
                await client.wait_closed()
            await assert_fresh_client_is_served(server, token)
    assert close["type"] == CLOSE
    assert close["error"].startswith(CLOSED_WITH_ERROR)
    assert "InvalidDataException" in close["error"]
    for fragment in fragments:
        assert fragment in close["error"], close


async def test_websocket_oversize_message_gets_close(start_server):
    server = start_server(settings={"max_message_size": "1024"})
    token = server.token()
    big = encode_record(invocation("1", "Echo", "x" * 2000))
    with trio.fail_after(TIMEOUT):
        async with bystander(server, token), \
                open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_raw(big)
            close = await client.receive_close()
            await client.wait_closed()
    assert "maximum message size" in close["error"]
    assert "1024" in close["error"]


async def test_websocket_oversize_message_in_pieces_gets_close(start_server):
    """The limit is per hub message, whatever the WebSocket framing: a record
    that never ends is cut off once it passes the limit."""
    server = start_server(settings={"max_message_size": "1024"})
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_raw('{"type":1,"target":"Echo","arguments":["')
            for _ in range(4):
                await client.send_raw("x" * 400)
            close = await client.receive_close()
    assert "maximum message size" in close["error"]


async def test_websocket_small_records_over_the_limit_together_are_accepted(start_server):
    server = start_server(settings={"max_message_size": "1024"})
    token = server.token()
    records = [encode_record(invocation(str(n), "Echo", f"{n}" * 500)) for n in range(1, 6)]
    message = "".join(records)
    assert len(message) > 2 * 1024 and all(len(record) < 1024 for record in records)
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_raw(message)
            results = [(await client.receive_completion(str(n)))["result"] for n in range(1, 6)]
            assert await client.call("Echo", "still open") == "still open"
    assert results == [f"{n}" * 500 for n in range(1, 6)]


async def test_websocket_garbage_handshake_gets_handshake_error(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with bystander(server, token), \
                open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            await client.send_raw("hello there" + RECORD_SEPARATOR)
            response = json.loads(await client.receive_record())
            await client.wait_closed()
    assert set(response) == {"error"}
    assert response["error"].startswith("An unexpected error occurred during connection handshake.")
    assert "InvalidDataException" in response["error"]


@pytest.mark.parametrize(
    ("request_record", "fragment"),
    [
        ('{"protocol":"smoke-signals","version":1}',
         "The protocol 'smoke-signals' is not supported."),
        ('{"protocol":"json","version":3}',
         "The server does not support version 3 of the 'json' protocol."),
        ('{"version":1}', "'protocol'"),
    ],
    ids=["unknown-protocol", "version-3", "missing-protocol"],
)
async def test_websocket_unacceptable_handshake_gets_handshake_error(
    server, request_record, fragment
):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            await client.send_raw(request_record + RECORD_SEPARATOR)
            response = json.loads(await client.receive_record())
            await client.wait_closed()
    assert fragment in response["error"]


async def test_websocket_handshake_without_separator_is_canceled_after_timeout(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with bystander(server, token), \
                open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            started = trio.current_time()
            await client.send_raw('{"protocol":"json","version":1}')
            response = json.loads(await client.receive_record())
            waited = trio.current_time() - started
            await client.wait_closed()
    assert response == {"error": "Handshake was canceled."}
    # handshake_timeout is 1 s in the fast settings.
    assert 0.8 <= waited < 5, waited


async def test_websocket_silent_client_handshake_is_canceled_after_timeout(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token, handshake=False) as client:
            response = json.loads(await client.receive_record())
            await client.wait_closed()
    assert response == {"error": "Handshake was canceled."}


@pytest.mark.parametrize(
    ("target", "arguments"),
    [
        pytest.param("JoinGroup", [42], id="wrong-type"),
        pytest.param("JoinGroup", ["a", "b"], id="too-many"),
        pytest.param("Counter", [], id="streaming-method-invoked"),
    ],
)
async def test_websocket_bad_arguments_get_error_completion_and_connection_survives(
    server, target, arguments
):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            completion = await client.invoke(target, *arguments)
            assert await client.call("Echo", "survived") == "survived"
    assert completion["type"] == COMPLETION
    assert f"'{target}'" in completion["error"]
    assert "result" not in completion


async def test_websocket_unknown_method_gets_error_completion(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            completion = await client.invoke("NoSuchMethod", 1)
            assert await client.call("Echo", "survived") == "survived"
    assert completion["error"] == (
        "Failed to invoke 'NoSuchMethod' due to an error on the server. "
        "HubException: Method does not exist."
    )


# -- the server closes ---------------------------------------------------------------------------


async def test_websocket_clients_get_close_on_sigterm(server):
    """Both kinds of hub WebSocket (the fast path, and the ASGI path of an
    upgrade on a keep-alive connection) are told to come back later."""
    token = server.token()
    closes = []
    with trio.fail_after(TIMEOUT):
        slow_socket, _ = await open_websocket_after_request(
            "127.0.0.1", server.port, with_query(HUB_PATH, access_token=token)
        )
        slow = HubClient(slow_socket)
        await slow.handshake()
        async with open_hub_client(ws_hub_url(server), token=token) as first, \
                open_hub_client(ws_hub_url(server), token=token) as second:
            await first.join_group("room")
            assert await second.call("Echo", "ready") == "ready"
            assert await slow.call("Echo", "ready") == "ready"
            server.process.send_signal(signal.SIGTERM)
            for client in (first, second, slow):
                closes.append(await client.receive_close())
                await client.wait_closed()
        await slow.aclose()
        returncode = await trio.to_thread.run_sync(server.process.wait, 5)
    expected = {"type": CLOSE, "error": "Server is shutting down.", "allowReconnect": True}
    assert closes == [expected, expected, expected]
    assert returncode == 0


async def test_websocket_token_expiry_closes_with_allow_reconnect(server):
    # ``exp`` is a whole second: ttl 3 leaves 2 to 3 s, time enough to connect on a busy machine.
    token = server.token(ttl=3)
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            assert await client.call("Echo", "valid") == "valid"
            close = await client.receive_close()
            await client.wait_closed()
    assert close == {
        "type": CLOSE,
        "error": "Server closed the connection: the access token expired.",
        "allowReconnect": True,
    }


async def test_websocket_idle_client_receives_pings(server):
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            first = await client.receive_message(skip_pings=False)
            started = trio.current_time()
            second = await client.receive_message(skip_pings=False)
            gap = trio.current_time() - started
    assert first == {"type": PING}
    assert second == {"type": PING}
    # keep_alive_interval is 1 s: a Ping after at most one interval of silence.
    assert gap < 1.5, gap


async def test_websocket_pinging_client_that_goes_silent_is_closed(server):
    """The client timeout (3 s in the fast settings) is armed by the client's
    first Ping (HubConnectionContext in ASP.NET Core)."""
    token = server.token()
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(ws_hub_url(server), token=token) as client:
            await client.send_record({"type": PING})
            started = trio.current_time()
            close = await client.receive_close()
            waited = trio.current_time() - started
            await client.wait_closed()
        stats = await get_stats(server.url)
    assert close["allowReconnect"] is True
    assert "3 seconds" in close["error"]
    assert 2.5 <= waited < 6, waited
    assert stats["connections"] == 0
