"""The usual suspects of the hub protocol (issue 8, case 7), over WebSockets.

Bad JSON, unknown protocols, no handshake, oversize records, floods of records
and of WebSocket Pings, messages about invocations that do not exist, and
method names that are not hub methods. Each closes (at most) its own
connection, with the text ASP.NET Core SignalR sends, and never the server.
"""

from __future__ import annotations

import json

import pytest
import trio
import trio_websocket

from tests.hostile.helpers import (
    PING_FRAME,
    PONG_FRAME,
    TEXT,
    TIMEOUT,
    assert_invalid_data_close,
    assert_quiet_log,
    invocation_text,
    log_mark,
    make_token,
    open_client,
    open_frame_socket,
    receive_json_close,
    strict_loads,
    wait_ws_closed,
    ws_frame,
)
from tests.support.ws_client import CLOSE, COMPLETION, HubClient

HANDSHAKE_TIMEOUT = 1.0
SERVER_SETTINGS = {"handshake_timeout": str(HANDSHAKE_TIMEOUT)}
FLOOD = 10_000


async def test_invalid_json_record_closes_with_invalid_data(server, neighbour):
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw('{"type":1,"target":"Echo","arguments":[}\x1e')
            assert_invalid_data_close(await receive_json_close(client))
            await wait_ws_closed(client)
    await neighbour.check()
    assert_quiet_log(server, mark)


async def test_unknown_protocol_in_handshake_is_refused(server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice"), handshake=False) as client:
            await client.send_raw('{"protocol":"xml","version":1}\x1e')
            response = strict_loads(await client.receive_record())
            await wait_ws_closed(client)
    assert response == {"error": "The protocol 'xml' is not supported."}
    await neighbour.check()


async def test_websocket_without_handshake_is_closed_after_handshake_timeout(server, neighbour):
    with trio.fail_after(HANDSHAKE_TIMEOUT + 5):
        async with open_client(server, make_token("alice"), handshake=False) as client:
            started = trio.current_time()
            response = strict_loads(await client.receive_record())
            elapsed = trio.current_time() - started
            await wait_ws_closed(client)
    assert response == {"error": "Handshake was canceled."}
    assert elapsed >= HANDSHAKE_TIMEOUT * 0.75, elapsed
    await neighbour.check()


async def test_record_over_max_message_size_closes_with_its_text(server, neighbour):
    record = invocation_text(json.dumps("x" * 40_000))
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw(record)
            close = await receive_json_close(client)
            await wait_ws_closed(client)
    assert_invalid_data_close(close, "The maximum message size of 32768B was exceeded.")
    await neighbour.check()


async def answered_or_evicted(client: HubClient, ids: set[str]) -> str:
    """Read until every id in ``ids`` has its Completion ("answered") or the
    server closes the connection ("evicted")."""
    try:
        while ids:
            message = await client.receive_message()
            if message.get("type") == CLOSE:
                return "evicted"
            if message.get("type") == COMPLETION:
                assert message.get("result") == message.get("invocationId"), message
                ids.discard(message["invocationId"])
    except trio_websocket.ConnectionClosed:
        return "evicted"
    return "answered"


async def test_10000_invocations_in_one_websocket_message_are_answered_or_evicted(
        server, neighbour):
    ids = [str(number) for number in range(FLOOD)]
    frame = "".join(invocation_text(json.dumps(i), invocation_id=i) for i in ids)
    with trio.fail_after(30):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw(frame)
            await answered_or_evicted(client, set(ids))
    await neighbour.check()


async def test_10000_pings_in_one_websocket_message_leave_the_connection_usable_or_evicted(
        server, neighbour):
    with trio.fail_after(30):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw('{"type":6}\x1e' * FLOOD + invocation_text('"last"', "last"))
            await answered_or_evicted(client, {"last"})
    await neighbour.check()


async def test_binary_websocket_message_with_json_records_is_answered_or_closed(
        server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw(invocation_text('"7"', invocation_id="7").encode())
            message = await client.receive_message()
    if message.get("type") == CLOSE:
        assert message.get("error"), message
    else:
        assert message == {"type": COMPLETION, "invocationId": "7", "result": "7"}, message
    await neighbour.check()


async def test_10000_websocket_pings_in_a_burst_are_ponged_or_evicted(server, neighbour):
    with trio.fail_after(30):
        socket = await open_frame_socket(server, make_token("alice"))
        try:
            await socket.send(ws_frame(PING_FRAME, b"p") * FLOOD
                              + ws_frame(TEXT, invocation_text('"after"', "after").encode()))
            pongs, answered = 0, False
            while not answered:
                frame = await socket.next_frame()
                if frame is None:
                    break  # evicted
                _, opcode, payload = frame
                if opcode == PONG_FRAME:
                    pongs += 1
                elif opcode == TEXT:
                    answered = any(record.startswith('{"type":3')
                                   for record in payload.decode().split("\x1e"))
                elif opcode == 0x8:
                    break
        finally:
            await socket.aclose()
    assert pongs <= FLOOD
    await neighbour.check()


@pytest.mark.parametrize("record", [
    pytest.param({"type": 2, "invocationId": "nobody", "item": 1}, id="stream-item"),
    pytest.param({"type": 3, "invocationId": "nobody", "result": 1}, id="completion"),
    pytest.param({"type": 3, "invocationId": "s99", "error": "no"}, id="completion-server-id"),
    pytest.param({"type": 5, "invocationId": "nobody"}, id="cancel-invocation"),
])
async def test_messages_about_unknown_invocations_are_ignored(server, neighbour, record):
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            await client.send_record(record)
            assert await client.call("Echo", "still here") == "still here"
    await neighbour.check()


@pytest.mark.parametrize("target", [
    "_secret", "on_connected", "OnConnected", "on_disconnected", "OnDisconnected",
    "__init__", "__class__", "create_hub",
])
async def test_private_and_hook_method_names_do_not_exist(server, neighbour, target):
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            completion = await client.invoke(target)
            assert "Method does not exist." in completion.get("error", ""), completion
            assert await client.call("Echo", "still here") == "still here"
    await neighbour.check()
