"""A frame: the bytes one transport writes for one serialized hub message.

The router serializes a fan-out message once per hub protocol and frames it
once per transport (``routing.serialized``); every recipient on that transport
gets the very same ``Frame``. A frame remembers where its hub-protocol payload
starts, so a writer may merge several queued frames into one transport message
(``transports.ws_frames.coalesce``).
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ..protocol import HubProtocol


@attrs.frozen(slots=True, eq=False)
class Frame:
    data: bytes
    """The bytes to write, transport framing included."""
    payload_start: int = 0
    """Where the hub protocol's record(s) start inside ``data``."""
    opcode: int = 0
    """The WebSocket opcode (text 1, binary 2, control 8-10); 0 for plain bytes."""

    @property
    def payload(self) -> memoryview:
        return memoryview(self.data)[self.payload_start :]

    @property
    def size(self) -> int:
        return len(self.data)


OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2


def is_data(frame: Frame) -> bool:
    """A text or binary message, as opposed to raw bytes that must go out alone."""
    return frame.opcode in (OPCODE_TEXT, OPCODE_BINARY)


def data_runs(frames: list[Frame]) -> list[list[Frame]]:
    """``frames`` cut into runs that may share one transport message: consecutive
    data frames of one opcode. Every other frame is a run of its own."""
    runs: list[list[Frame]] = []
    for frame in frames:
        if runs and is_data(frame) and frame.opcode == runs[-1][-1].opcode:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


class Framer(Protocol):
    """Turns one hub protocol record into one transport frame."""

    def frame(self, record: bytes) -> Frame: ...


@attrs.frozen
class RecordFramer:
    """A record is its own frame: the transport adds no framing of its own (a
    long poll's body, an ASGI WebSocket message). ``opcode`` tells a WebSocket
    whether to send it as a text or a binary message."""

    opcode: int = 0

    def frame(self, record: bytes) -> Frame:
        return Frame(record, payload_start=0, opcode=self.opcode)


@attrs.frozen(eq=False)
class Wire:
    """A (hub protocol, framer) pair: everything needed to turn a hub message
    into the bytes one connection receives. Connections that share a wire share
    frames. Compared by identity, so a dict lookup per recipient stays cheap;
    use ``wire_for`` to get the one instance of each pair."""

    protocol: HubProtocol
    framer: Framer

    def frame(self, record: bytes) -> Frame:
        return self.framer.frame(record)


_wires: dict[tuple[int, int], Wire] = {}


def wire_for(protocol: HubProtocol, framer: Framer) -> Wire:
    key = (id(protocol), id(framer))
    wire = _wires.get(key)
    if wire is None:
        wire = _wires[key] = Wire(protocol, framer)
    return wire
