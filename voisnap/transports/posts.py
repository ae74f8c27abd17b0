"""Client-to-server bytes over HTTP POST (Server-Sent Events and long polling).

TransportProtocols.md: with those transports the client sends by POSTing to
the connection's URL; a body holds one or more whole records, or part of one.
POSTs are taken one at a time, so that two bodies never interleave inside a
record (ASP.NET Core serializes them the same way), and their chunks wait in a
small queue for the connection's reader: a client that sends faster than its
hub methods run is slowed down by its own POSTs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from ..errors import ConnectionClosed

WAITING_CHUNKS = 8


class PostedBytes:
    def __init__(self) -> None:
        self._in, self._out = trio.open_memory_channel[bytes](WAITING_CHUNKS)
        self._one_at_a_time = trio.Lock()

    async def post(self, body: AsyncIterator[bytes]) -> None:
        """Hand one POST body on, chunk by chunk; ConnectionClosed once closed."""
        async with self._one_at_a_time:
            async for chunk in body:
                try:
                    await self._in.send(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise ConnectionClosed("the connection is closed") from None

    def feed_nowait(self, data: bytes) -> None:
        """Bytes that arrived before this transport existed (the queue is empty then)."""
        self._in.send_nowait(data)

    async def receive_some(self) -> bytes:
        try:
            return await self._out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed("the connection is closed") from None

    def close(self) -> None:
        """No more sends: the reader sees the end once the queue is empty."""
        self._in.close()
