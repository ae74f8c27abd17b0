"""WebSocket protocol errors on voisnap's own WebSocket path (issue 8, case 6).

RFC 6455 section 7.4.1: 1002 "indicates that an endpoint is terminating the
connection due to a protocol error"; 1007 "because it has received data within
a message that was not consistent with the type of the message (e.g., non-UTF-8
[RFC3629] data within a text message)". The frames are built by hand on a raw
socket after a hand-made upgrade and a completed SignalR handshake, so the
server's own transport (not hypercorn) reads them.
"""

from __future__ import annotations

import pytest
import trio

from tests.hostile.helpers import (
    CONTINUATION,
    PING_FRAME,
    PONG_FRAME,
    TEXT,
    TIMEOUT,
    invocation_text,
    make_token,
    open_frame_socket,
    ws_frame,
)

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007


def echo_record(invocation_id: str, value: str = "fragmented") -> bytes:
    return invocation_text(f'"{value}"', invocation_id=invocation_id).encode()


VIOLATIONS = {
    "invalid-utf8-text": (ws_frame(TEXT, b'{"type":6}\x1e\xff\xfe\xfd'), INVALID_PAYLOAD),
    "continuation-without-start": (ws_frame(CONTINUATION, b'{"type":6}\x1e'), PROTOCOL_ERROR),
    "data-frame-inside-fragmented-message": (
        ws_frame(TEXT, b'{"type":6}', fin=False) + ws_frame(TEXT, b'{"type":6}\x1e'),
        PROTOCOL_ERROR,
    ),
    "control-frame-over-125-bytes": (ws_frame(PING_FRAME, b"p" * 126), PROTOCOL_ERROR),
    "unmasked-client-frame": (ws_frame(TEXT, b'{"type":6}\x1e', masked=False), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
async def test_websocket_protocol_error_closes_with_its_rfc_6455_code(server, neighbour, name):
    frames, code = VIOLATIONS[name]
    with trio.fail_after(TIMEOUT):
        socket = await open_frame_socket(server, make_token("alice"))
        try:
            await socket.send(frames)
            assert await socket.close_code() == code
        finally:
            await socket.aclose()
    await neighbour.check()


async def test_websocket_record_split_across_fragments_is_answered(server, neighbour):
    record = echo_record("7")
    first, second, third = record[:5], record[5:30], record[30:]
    with trio.fail_after(TIMEOUT):
        socket = await open_frame_socket(server, make_token("alice"))
        try:
            await socket.send(ws_frame(TEXT, first, fin=False)
                              + ws_frame(CONTINUATION, second, fin=False)
                              + ws_frame(CONTINUATION, third))
            completion = await socket.receive_completion("7")
        finally:
            await socket.aclose()
    assert completion.get("result") == "fragmented", completion
    await neighbour.check()


async def test_websocket_fragments_sent_one_by_one_with_a_ping_between_are_answered(
        server, neighbour):
    """RFC 6455 section 5.4: "Control frames MAY be injected in the middle of
    a fragmented message"; the Pong comes, then the Echo's Completion."""
    record = echo_record("8", "one by one")
    with trio.fail_after(TIMEOUT):
        socket = await open_frame_socket(server, make_token("alice"))
        try:
            await socket.send(ws_frame(TEXT, record[:10], fin=False))
            await socket.send(ws_frame(PING_FRAME, b"mid-message"))
            while True:
                frame = await socket.next_frame()
                assert frame is not None, "closed instead of a Pong"
                if frame[1] == PONG_FRAME:
                    assert frame[2] == b"mid-message", frame
                    break
            await socket.send(ws_frame(CONTINUATION, record[10:]))
            completion = await socket.receive_completion("8")
        finally:
            await socket.aclose()
    assert completion.get("result") == "one by one", completion
    await neighbour.check()


async def test_websocket_two_records_in_one_fragmented_message_are_both_answered(
        server, neighbour):
    data = echo_record("1", "a") + echo_record("2", "b")
    middle = len(data) // 2 + 3
    with trio.fail_after(TIMEOUT):
        socket = await open_frame_socket(server, make_token("alice"))
        try:
            await socket.send(ws_frame(TEXT, data[:middle], fin=False)
                              + ws_frame(CONTINUATION, data[middle:]))
            assert (await socket.receive_completion("1")).get("result") == "a"
            assert (await socket.receive_completion("2")).get("result") == "b"
        finally:
            await socket.aclose()
    await neighbour.check()
