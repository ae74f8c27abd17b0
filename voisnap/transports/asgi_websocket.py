"""The WebSocket transport for hub connections that arrive through hypercorn.

This is the slow path. Hub WebSockets normally take voisnap's own transport
(``transports.websockets``), but a WebSocket upgrade can arrive on a connection
already handed to hypercorn (TLS, HTTP/2, or an HTTP keep-alive connection that
upgrades later), and it must work too. Here each message goes through ASGI's
``send``, which hypercorn shields, so a write stuck on a stalled client cannot
be cancelled: eviction cuts the socket off instead (``transports.sockets``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import trio

from ..asgi import Receive, Send
from ..errors import ConnectionClosed
from ..protocol import TransferFormat
from .base import QueuedTransport, TransportInfo, TransportType
from .frames import OPCODE_BINARY, OPCODE_TEXT, Frame, RecordFramer, data_runs
from .outbox import Outbox

# A record as one ASGI WebSocket message: hypercorn frames it.
TEXT_MESSAGES = RecordFramer(OPCODE_TEXT)
BINARY_MESSAGES = RecordFramer(OPCODE_BINARY)


class AsgiWebSocket(QueuedTransport):
    info = TransportInfo(
        kind=TransportType.WEB_SOCKETS,
        transfer_format=TransferFormat.BINARY,  # WebSockets carry text and binary
        resumable=True,  # a stateful client may continue on a new WebSocket
        polled=False,
        text_framer=TEXT_MESSAGES,
        binary_framer=BINARY_MESSAGES,
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        capacity: int,
        max_bytes: int,
        sock: socket.socket | None = None,
    ) -> None:
        self._receive = receive
        self._send = send
        self._sock = sock  # the TCP socket under hypercorn, to cut off a stalled client
        self.outbox: Outbox[Frame] = Outbox(capacity, max_bytes)
        self.frames_accepted = 0
        self.on_closed: Callable[[], None] | None = None
        self._closed = False

    def _start(self, nursery: trio.Nursery) -> None:
        self.outbox.start_writer(nursery, self._write_batch)

    async def receive_some(self) -> bytes:
        message = await self.receive_message()
        return message.encode() if isinstance(message, str) else message

    async def receive_message(self) -> str | bytes:
        """The next WebSocket message (hypercorn assembles it), text or binary."""
        if self._closed:
            raise ConnectionClosed("the connection is closed")
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._mark_closed()
            raise ConnectionClosed("the client closed the WebSocket")
        if message.get("bytes") is not None:
            return message["bytes"]
        return message.get("text") or ""

    async def _write_batch(self, frames: list[Frame]) -> None:
        """Each run of same-type records as one ASGI WebSocket message."""
        for run in data_runs(frames):
            payload = b"".join(frame.payload for frame in run)
            if not await self._write(run[0].opcode, payload):
                return

    async def _write(self, opcode: int, payload: bytes) -> bool:
        if opcode == OPCODE_TEXT:
            message = {"type": "websocket.send", "text": payload.decode()}
        else:
            message = {"type": "websocket.send", "bytes": payload}
        try:
            await self._send(message)
        except Exception:  # hypercorn raises various errors once the client is gone
            self.abort()
            return False
        return True

    async def _say_goodbye(self) -> None:
        with contextlib.suppress(Exception):  # the client may be gone already
            await self._send({"type": "websocket.close", "code": 1000})

    def _socket(self) -> socket.socket | None:
        return self._sock
