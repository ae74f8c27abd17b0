"""Splitting a byte stream into records, and joining records into a stream.

HubProtocol.md, "Transport Requirements": transports deliver *messages*, but one
transport message may hold several hub messages, and (on stream transports) one
hub message may arrive in several pieces. Each hub protocol therefore frames its
records itself:

- text protocols (JSON, and every handshake) end each record with the ASCII
  Record Separator 0x1E (HubProtocol.md, "JSON Encoding");
- binary protocols (MessagePack) put a VarInt length before each record
  (HubProtocol.md, "MessagePack (MsgPack) encoding").

Both splitters are incremental and enforce the per-message size limit, which the
issue asks for per hub message, not per transport frame: a client may pack
several small messages into one WebSocket frame, and that is fine.
"""

from __future__ import annotations

from .errors import RemoteProtocolError

RECORD_SEPARATOR = 0x1E
RECORD_SEPARATOR_BYTES = b"\x1e"


def message_too_large(limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"The maximum message size of {limit}B was exceeded.")


class TextFraming:
    """Records separated by 0x1E. ``feed`` bytes in, ``next_record`` records out.

    >>> framing = TextFraming(max_message_size=100)
    >>> framing.feed(b'{"type":6}\\x1e{"ty')
    >>> framing.next_record()
    b'{"type":6}'
    >>> framing.next_record() is None
    True
    """

    # one per connection: slots keep idle connections small
    __slots__ = ("_buffer", "_max", "_scanned")

    def __init__(self, max_message_size: int) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no separator
        self._max = max_message_size

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_record(self) -> bytes | None:
        """The next complete record without its separator, or None if more
        bytes are needed. Raises RemoteProtocolError for an oversize record."""
        end = self._buffer.find(RECORD_SEPARATOR, self._scanned)
        if end < 0:
            self._scanned = len(self._buffer)
            if self._scanned > self._max:
                raise message_too_large(self._max)
            return None
        if end > self._max:
            raise message_too_large(self._max)
        record = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        return record

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole record."""
        return len(self._buffer)

    def take_buffered(self) -> bytes:
        """Hand over the bytes that follow the last record (after a handshake,
        they belong to the hub protocol, whose framing may differ)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return rest

    @staticmethod
    def frame(record: bytes) -> bytes:
        return record + RECORD_SEPARATOR_BYTES


class BinaryFraming:
    """Records prefixed by their length as a VarInt: 7 bits a byte, least
    significant group first, high bit set on every byte but the last, at most
    5 bytes (HubProtocol.md, "MessagePack (MsgPack) encoding", "Binary encoding")."""

    # one per connection: slots keep idle connections small
    __slots__ = ("_buffer", "_max")

    MAX_LENGTH_PREFIX = 5

    def __init__(self, max_message_size: int) -> None:
        self._buffer = bytearray()
        self._max = max_message_size

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_record(self) -> bytes | None:
        header = _read_varint(self._buffer)
        if header is None:
            return None
        length, prefix = header
        if length > self._max:
            raise message_too_large(self._max)
        if len(self._buffer) < prefix + length:
            return None
        record = bytes(self._buffer[prefix : prefix + length])
        del self._buffer[: prefix + length]
        return record

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def take_buffered(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    @staticmethod
    def frame(record: bytes) -> bytes:
        return encode_varint(len(record)) + record


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(buffer: bytearray) -> tuple[int, int] | None:
    """(value, bytes used), or None if the prefix is not complete yet."""
    value = 0
    for index in range(min(len(buffer), BinaryFraming.MAX_LENGTH_PREFIX)):
        byte = buffer[index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, index + 1
    if len(buffer) >= BinaryFraming.MAX_LENGTH_PREFIX:
        raise RemoteProtocolError("Messages over 2GB in size are not supported.")
    return None
