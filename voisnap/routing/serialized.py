"""A hub message serialized once per hub protocol and framed once per transport.

ASP.NET Core's ``SerializedHubMessage`` does the first half: a message sent to a
group of a thousand JSON connections is written to JSON once, not a thousand
times. voisnap goes one step further, because its WebSocket transport writes
frames itself: the *frame* (WebSocket header + record) is built once per wire
(hub protocol + transport framing), and every recipient on that wire is handed
the same ``Frame`` object. The per-recipient cost of a fan-out is then a dict
lookup and a ``send()``.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..protocol import EncodeError, HubMessage, HubProtocol


class Wire(Protocol):
    """A hub protocol and how one transport frames its records (the
    transports' ``frames.Wire``). The router needs no more of it: what a frame
    is, is the transport's business."""

    protocol: HubProtocol

    def frame(self, record: bytes) -> Any: ...


class SerializedMessage:
    """Raises ``EncodeError`` for a protocol that cannot carry the message (NaN
    in JSON); the failure is remembered, so each recipient costs a lookup."""

    __slots__ = ("_frames", "_records", "message")

    def __init__(self, message: HubMessage) -> None:
        self.message = message
        self._records: dict[HubProtocol, bytes | EncodeError] = {}
        self._frames: dict[Wire, Any] = {}

    def record_for(self, protocol: HubProtocol) -> bytes:
        record = self._records.get(protocol)
        if record is None:
            try:
                record = protocol.write(self.message)
            except EncodeError as error:
                record = error
            self._records[protocol] = record
        if isinstance(record, EncodeError):
            raise EncodeError(str(record))
        return record

    def frame_for(self, wire: Wire) -> Any:
        """The frame of this message for ``wire``, built once per wire."""
        frame = self._frames.get(wire)
        if frame is None:
            frame = self._frames[wire] = wire.frame(self.record_for(wire.protocol))
        return frame
