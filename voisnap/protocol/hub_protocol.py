"""The interface every hub protocol codec implements (HubProtocol.md, "Hub Protocols")."""

from __future__ import annotations

from typing import Protocol

from .framing import BinaryFraming, TextFraming
from .limits import DecodeLimits
from .messages import HubMessage
from .transfer_format import TransferFormat


class HubProtocol(Protocol):
    """A codec: one record of bytes <-> one hub message.

    ``name`` is what the client asks for in the handshake (``"json"``,
    ``"messagepack"``); ``transfer_format`` is what the transport must carry;
    ``framing_class`` splits a byte stream into this protocol's records.
    """

    name: str
    version: int
    transfer_format: TransferFormat
    framing_class: type[TextFraming] | type[BinaryFraming]

    def parse(self, record: bytes, limits: DecodeLimits = ...) -> HubMessage:
        """One record, without framing, to a message; RemoteProtocolError if
        malformed or beyond ``limits`` (``protocol.limits``), never anything else."""
        ...

    def write(self, message: HubMessage) -> bytes:
        """One message to one record, framing included."""
        ...
