"""TransportProtocols.md, "Transfer Formats": what a transport can carry."""

from __future__ import annotations

import enum


class TransferFormat(enum.Enum):
    """``TEXT`` transports carry UTF-8 only (Server-Sent Events); ``BINARY``
    ones carry any bytes. A hub protocol needs a transport that carries its
    format: JSON is text, MessagePack is binary."""

    TEXT = "Text"
    BINARY = "Binary"
