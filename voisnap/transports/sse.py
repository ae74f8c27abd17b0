"""Server-Sent Events: a GET stream server-to-client, POSTs client-to-server.

TransportProtocols.md, "Server-Sent Events (Server-to-Client only)": the server
answers the GET with ``text/event-stream`` and writes each payload as an event:
every line of it prefixed ``data: ``, then a blank line. The client sends with
POST requests to the same URL. Text only: a binary hub protocol cannot use it
(the handshake refuses one).

Hub records never contain a line break (JSON escapes them), so a record is one
``data:`` line. Several queued records may share one event: the client splits
them on the record separator, as it does for WebSocket messages.

This transport goes through hypercorn (ASGI), which shields its writes; to cut
off a stalled client, ``abort`` shuts the socket down itself, as the ASGI
WebSocket transport does.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import trio

from ..asgi import Receive, Send
from ..protocol import TransferFormat
from .base import QueuedTransport, TransportInfo, TransportType
from .frames import Frame
from .outbox import Outbox
from .posts import PostedBytes

# Sent before anything else: a comment line, so that Firefox fires "open".
STREAM_START = b":\r\n"
RESPONSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-store"),
    (b"pragma", b"no-cache"),
    (b"content-encoding", b"identity"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]


class EventFramer:
    """One record as one event: ``data: <record>`` and a blank line."""

    def frame(self, record: bytes) -> Frame:
        return Frame(b"data: " + record + b"\r\n\r\n", payload_start=0)


EVENT_FRAMER = EventFramer()


class ServerSentEvents(QueuedTransport):
    info = TransportInfo(
        kind=TransportType.SERVER_SENT_EVENTS,
        transfer_format=TransferFormat.TEXT,
        resumable=False,
        polled=False,
        text_framer=EVENT_FRAMER,
        binary_framer=EVENT_FRAMER,  # never used: the handshake refuses binary protocols
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        capacity: int,
        max_bytes: int,
        sock: socket.socket | None = None,
        extra_headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    ) -> None:
        self._headers = [*RESPONSE_HEADERS, *extra_headers]
        self._receive = receive
        self._send = send
        self._sock = sock
        self.outbox: Outbox[Frame] = Outbox(capacity, max_bytes)
        self.frames_accepted = 0
        self.on_closed: Callable[[], None] | None = None
        self._closed = False
        self.posts = PostedBytes()

    async def open(self) -> None:
        """Start the event stream (the GET's response)."""
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await self._send({"type": "http.response.body", "body": STREAM_START, "more_body": True})

    def _start(self, nursery: trio.Nursery) -> None:
        self.outbox.start_writer(nursery, self._write_batch)
        nursery.start_soon(self._watch_disconnect)

    async def _watch_disconnect(self) -> None:
        """The GET's request side: it says only when the client has gone."""
        while not self._closed:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.abort()

    # -- client to server: POSTs --------------------------------------------------------------

    async def receive_some(self) -> bytes:
        return await self.posts.receive_some()

    # -- server to client: the event stream ---------------------------------------------------

    async def _write_batch(self, frames: list[Frame]) -> None:
        body = b"".join(frame.data for frame in frames)
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except Exception:  # hypercorn raises various errors once the client is gone
            self.abort()

    # -- closing ------------------------------------------------------------------------------

    async def _say_goodbye(self) -> None:
        """End the response: the client's EventSource sees the stream end."""
        with contextlib.suppress(Exception):  # the client may be gone already
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def _socket(self) -> socket.socket | None:
        return self._sock

    def _release(self) -> None:
        self.posts.close()
