"""The worker protocol: length-prefixed MessagePack on a pipe (sans-IO).

Each message is a 4-byte big-endian length followed by that many bytes of
MessagePack: an array whose first element names the message. The table lives
in docs/voice-pipeline.md ("Worker protocol"); in short:

server -> worker                      worker -> server
  ["open", sid, auto, pause, full]      ["ready", pid]
  ["audio", sid, pcm]                   ["ack", sid]            (one per "audio")
  ["finish", sid]                       ["interim", sid, text]
  ["close", sid]                        ["final", sid, text, confidence]
                                        ["done", sid]           (after "finish")
                                        ["error", sid, reason]

Like wsproto's ``Buffer``, ``FrameReader.receive_data`` takes whatever bytes
arrived and ``next_message`` hands out whole messages, so the same code serves
the blocking worker and the trio side.
"""

from __future__ import annotations

import struct

import msgpack

HEADER = struct.Struct(">I")
#: A message larger than this is a broken peer, not a big chunk of audio.
MAX_MESSAGE = 4 * 1024 * 1024


def encode(*message: object) -> bytes:
    body = msgpack.packb(list(message), use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental decoder of length-prefixed MessagePack messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> list | None:
        """The next whole message, or None until more bytes arrive."""
        if len(self._buffer) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buffer)
        if length > MAX_MESSAGE:
            raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
        end = HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        message = msgpack.unpackb(body, raw=False)
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            raise ValueError("a worker message is an array starting with its name")
        return message
