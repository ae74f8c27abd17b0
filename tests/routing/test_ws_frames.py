"""Server-built WebSocket frames and their coalescing into fewer messages.

RFC 6455 section 5.2 (base framing: FIN, opcode, 7/16/64-bit payload length; server
frames unmasked) and HubProtocol.md, "Transport Requirements" (one transport message
may carry several records). Every frame voisnap builds is checked by parsing it the
way a client does, with wsproto: ``frame_header`` at the length boundaries, and
``coalesce`` merging consecutive text frames into one valid message while keeping
raw frames apart and never mixing text with binary.
"""

from __future__ import annotations

import struct

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode

from voisnap.protocol import PING, CompletionMessage, InvocationMessage, JsonHubProtocol
from voisnap.transports.frames import OPCODE_BINARY, OPCODE_TEXT, Frame, data_runs
from voisnap.transports.ws_frames import (
    BINARY_FRAMER,
    TEXT_FRAMER,
    coalesce,
    frame_header,
    raw_frame,
)

JSON = JsonHubProtocol()


def client_frames(data: bytes) -> list:
    """What a client's wsproto frame parser makes of ``data``."""
    parser = FrameProtocol(client=True, extensions=[])
    parser.receive_bytes(data)
    return list(parser.received_frames())


def open_client() -> WSConnection:
    """A wsproto client after a real (in-memory) opening handshake."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/hub")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client


def client_messages(buffers: list[bytes | memoryview]) -> list[str | bytes]:
    """The whole messages a wsproto client reads from ``buffers`` written in order."""
    client = open_client()
    client.receive_data(b"".join(bytes(buffer) for buffer in buffers))
    messages: list[str | bytes] = []
    parts: list = []
    for event in client.events():
        assert isinstance(event, Message), event
        parts.append(event.data)
        if event.message_finished:
            joined = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
            messages.append(joined)
            parts = []
    assert parts == []
    return messages


# -- frame_header ------------------------------------------------------------------------------

HEADERS = [
    (0, b"\x81\x00"),
    (125, b"\x81\x7d"),
    (126, b"\x81\x7e\x00\x7e"),
    (65535, b"\x81\x7e\xff\xff"),
    (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
]


@pytest.mark.parametrize(("length", "expected"), HEADERS, ids=[str(n) for n, _ in HEADERS])
def test_ws_frames_header_bytes(length: int, expected: bytes) -> None:
    assert frame_header(OPCODE_TEXT, length) == expected


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536])
def test_ws_frames_header_parses_as_one_client_frame(length: int) -> None:
    payload = b"a" * length
    frames = client_frames(frame_header(OPCODE_TEXT, length) + payload)
    assert len(frames) == 1
    frame = frames[0]
    assert frame.opcode is Opcode.TEXT
    assert frame.payload == payload.decode()
    assert frame.frame_finished and frame.message_finished


@pytest.mark.parametrize("length", [0, 126, 65536])
def test_ws_frames_binary_header_parses_as_binary(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    frames = client_frames(frame_header(OPCODE_BINARY, length) + payload)
    assert [(f.opcode, bytes(f.payload)) for f in frames] == [(Opcode.BINARY, payload)]


def test_ws_frames_framer_marks_payload_start() -> None:
    record = JSON.write(InvocationMessage(target="Receive", arguments=("x" * 200,)))
    frame = TEXT_FRAMER.frame(record)
    assert frame.opcode == OPCODE_TEXT
    assert frame.payload_start == 4  # 16-bit length: 200 + record overhead > 125
    assert bytes(frame.payload) == record
    assert frame.size == len(record) + 4
    assert client_messages([frame.data]) == [record.decode()]
    assert BINARY_FRAMER.frame(b"\x91\x06").data == b"\x82\x02\x91\x06"


def test_ws_frames_raw_frame_has_no_payload_to_merge() -> None:
    frame = raw_frame(b"\x88\x02\x03\xe8")
    assert frame.opcode == 0
    assert bytes(frame.payload) == b""
    assert frame.data == b"\x88\x02\x03\xe8"


# -- coalesce ----------------------------------------------------------------------------------


def records(*messages) -> list[bytes]:
    return [JSON.write(message) for message in messages]


def test_ws_frames_coalesce_merges_text_frames_into_one_message() -> None:
    parts = records(
        PING, CompletionMessage.with_result("1", "é" * 70), InvocationMessage(target="T")
    )
    frames = [TEXT_FRAMER.frame(record) for record in parts]
    buffers = coalesce(frames)
    assert client_messages(buffers) == [b"".join(parts).decode()]
    # One header for the whole run, then the payloads as they are.
    assert bytes(buffers[0]) == frame_header(OPCODE_TEXT, sum(len(r) for r in parts))
    assert [bytes(b) for b in buffers[1:]] == parts


def test_ws_frames_coalesce_merged_message_crosses_the_16_bit_boundary() -> None:
    parts = [JSON.write(InvocationMessage(target="T", arguments=("y" * 40_000,)))] * 2
    buffers = coalesce([TEXT_FRAMER.frame(record) for record in parts])
    assert client_messages(buffers) == [b"".join(parts).decode()]


def test_ws_frames_coalesce_leaves_a_single_frame_alone() -> None:
    frame = TEXT_FRAMER.frame(JSON.write(PING))
    buffers = coalesce([frame])
    assert buffers == [frame.data]
    assert buffers[0] is frame.data


def test_ws_frames_coalesce_keeps_raw_frames_separate() -> None:
    text = [TEXT_FRAMER.frame(record) for record in records(PING, PING, PING)]
    close = raw_frame(b"\x88\x02\x03\xe8")  # a Close frame wsproto built
    frames = [text[0], close, text[1], text[2]]
    buffers = coalesce(frames)
    assert buffers[0] is text[0].data
    assert buffers[1] is close.data
    assert bytes(buffers[2]) == frame_header(OPCODE_TEXT, 2 * len(JSON.write(PING)))
    client = open_client()
    client.receive_data(b"".join(bytes(b) for b in buffers))
    kinds = [type(event).__name__ for event in client.events()]
    assert kinds == ["TextMessage", "CloseConnection"]  # nothing is read after a Close


def test_ws_frames_coalesce_keeps_two_raw_frames_apart() -> None:
    first, second = raw_frame(b"\x89\x00"), raw_frame(b"\x8a\x00")
    assert coalesce([first, second]) == [first.data, second.data]


def test_ws_frames_coalesce_never_merges_text_with_binary() -> None:
    t1, t2 = (TEXT_FRAMER.frame(record) for record in records(PING, PING))
    b1, b2 = BINARY_FRAMER.frame(b"\x01\x02"), BINARY_FRAMER.frame(b"\x03")
    t3 = TEXT_FRAMER.frame(JSON.write(CompletionMessage.empty("9")))
    messages = client_messages(coalesce([t1, t2, b1, b2, t3]))
    ping, completion = JSON.write(PING).decode(), bytes(t3.payload).decode()
    assert messages == [ping * 2, b"\x01\x02\x03", completion]
    assert [type(m) for m in messages] == [str, bytes, str]


def test_ws_frames_coalesce_copies_no_payload() -> None:
    frames = [TEXT_FRAMER.frame(record) for record in records(PING, PING)]
    buffers = coalesce(frames)
    for buffer, frame in zip(buffers[1:], frames, strict=True):
        assert isinstance(buffer, memoryview)
        assert buffer.obj is frame.data


def test_ws_frames_coalesce_of_nothing_is_nothing() -> None:
    assert coalesce([]) == []


def test_ws_frames_data_runs_group_consecutive_frames_of_one_opcode() -> None:
    t = [TEXT_FRAMER.frame(b"t%d" % n) for n in range(3)]
    b = [BINARY_FRAMER.frame(b"b%d" % n) for n in range(2)]
    raw = [raw_frame(b"r0"), raw_frame(b"r1")]
    frames: list[Frame] = [t[0], t[1], b[0], b[1], raw[0], raw[1], t[2]]
    assert data_runs(frames) == [[t[0], t[1]], [b[0], b[1]], [raw[0]], [raw[1]], [t[2]]]
