"""Building server-to-client WebSocket frames by hand (RFC 6455, section 5.2).

wsproto parses what clients send and writes control frames, but data frames are
built here, once per message, because a fan-out hands the same frame to every
recipient: building it per recipient would cost a copy of the payload each time.
Server frames are never masked ("A server MUST NOT mask any frames that it sends
to the client", RFC 6455 5.1), which is what makes one frame shareable.
"""

from __future__ import annotations

import struct

from .frames import OPCODE_BINARY, OPCODE_TEXT, Frame, data_runs, is_data

FIN = 0x80


def frame_header(opcode: int, length: int) -> bytes:
    """RFC 6455 5.2: FIN + opcode, then a 7-bit, 16-bit or 64-bit payload length."""
    if length < 126:
        return bytes((FIN | opcode, length))
    if length < 1 << 16:
        return struct.pack("!BBH", FIN | opcode, 126, length)
    return struct.pack("!BBQ", FIN | opcode, 127, length)


class WebSocketFramer:
    """Frames hub protocol records as WebSocket text (JSON) or binary (MessagePack) messages."""

    def __init__(self, opcode: int) -> None:
        self.opcode = opcode

    def frame(self, record: bytes) -> Frame:
        header = frame_header(self.opcode, len(record))
        return Frame(header + record, payload_start=len(header), opcode=self.opcode)


TEXT_FRAMER = WebSocketFramer(OPCODE_TEXT)
BINARY_FRAMER = WebSocketFramer(OPCODE_BINARY)


def raw_frame(data: bytes) -> Frame:
    """Bytes to write as they are, never merged with a neighbour: a control
    frame wsproto built (Close, Pong), or the unsent rest of a frame."""
    return Frame(data, payload_start=len(data), opcode=0)


def coalesce(frames: list[Frame]) -> list[bytes | memoryview]:
    """The buffers to write for ``frames``, merging runs of data frames of one
    opcode into a single WebSocket message.

    HubProtocol.md lets one transport message carry several records, and every
    client splits them again; one message instead of many saves the client a
    frame parse each and the kernel a header each. Nothing is copied: the result
    is a list for ``socket.sendmsg`` (scatter-gather).
    """
    buffers: list[bytes | memoryview] = []
    for run in data_runs(frames):
        if len(run) == 1 or not is_data(run[0]):
            buffers.extend(frame.data for frame in run)
        else:
            payloads = [frame.payload for frame in run]
            buffers.append(frame_header(run[0].opcode, sum(len(p) for p in payloads)))
            buffers.extend(payloads)
    return buffers
