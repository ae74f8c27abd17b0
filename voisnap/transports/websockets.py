"""voisnap's own WebSocket transport: the fan-out hot path.

TransportProtocols.md, "WebSockets (Full Duplex)": one WebSocket carries hub
records both ways; JSON goes in text messages, MessagePack in binary ones.

Why not ASGI? Measured on a 2-core machine, 1000 subscribers of one group:
an ASGI WebSocket with a sender task per connection costs about 100 us of server
CPU per delivery, and the last of N recipients waits for the whole fan-out. A
non-blocking ``send()`` of a pre-built frame straight from the fan-out pass costs
about 9 us. So this transport owns its socket (a plain non-blocking stdlib
socket, waited on with ``trio.lowlevel.wait_readable/wait_writable``):

- ``send_nowait(frame)`` writes at once when nothing is queued, and queues only
  what the kernel did not take, in the connection's bounded ``Outbox``;
- a writer task, started by the outbox only while it holds anything, drains it,
  merging queued records into as few WebSocket messages as it can;
- ``abort()`` closes the socket with SO_LINGER 0, so the kernel frees a stalled
  client's buffers at once.

wsproto parses the upgrade and every incoming frame (masking, fragmentation,
UTF-8, control frames) and writes the control frames; data frames are built once
per message by ``ws_frames``. permessage-deflate is never negotiated: the
``AcceptConnection`` offers no extensions, whatever the client proposes (Node's
``ws`` proposes it), because compressing would mean a copy per recipient.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.connection import ConnectionState as WSState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from ..errors import ConnectionClosed
from ..protocol import TransferFormat
from .base import Activity, TransportInfo, TransportType, send_waiting
from .frames import Frame
from .outbox import Outbox
from .sockets import LINGER_ABORT
from .ws_frames import BINARY_FRAMER, TEXT_FRAMER, coalesce, raw_frame

log = logging.getLogger(__name__)

RECEIVE_SIZE = 64 * 1024
NORMAL_CLOSURE = 1000
# A server closing after a *hub* protocol error still says 1000: the SignalR
# Close message carries the reason, and the JS client treats any other code as a
# transport failure ("WebSocket closed with status code: N"). A *WebSocket*
# protocol error closes with the code RFC 6455 gives it (``_answer_close``).


class DirectWebSocket:
    """A server-side WebSocket on a raw non-blocking socket, after the upgrade.

    One reader (``receive_some``), one writer (``_write_batch``), one write
    point (``send_nowait``), as in trio-websocket. Transport failures become
    ``ConnectionClosed`` at those points. ``ws`` is wsproto's connection after
    the upgrade (the handshake's HTTP parser is not kept: memory per idle
    connection is one of the things the bench measures).
    """

    # one per connection: slots keep idle connections small
    __slots__ = (
        "_closed",
        "_mid_write",
        "_peer_closed",
        "_sock",
        "_ws",
        "frames_accepted",
        "on_closed",
        "outbox",
    )

    # Text messages for text protocols (the JS client reads binary ones as
    # Blobs and fails), binary messages for binary protocols.
    info = TransportInfo(
        kind=TransportType.WEB_SOCKETS,
        transfer_format=TransferFormat.BINARY,  # WebSockets carry text and binary
        resumable=True,  # a stateful client may continue on a new WebSocket
        polled=False,
        text_framer=TEXT_FRAMER,
        binary_framer=BINARY_FRAMER,
    )

    def __init__(
        self, sock: socket.socket, ws: Connection, *, capacity: int, max_bytes: int
    ) -> None:
        self._sock = sock
        self._ws = ws
        self.outbox: Outbox[Frame] = Outbox(capacity, max_bytes)
        self._mid_write = False  # part of a frame is written, the rest is not
        self._closed = False
        self._peer_closed = False
        self.on_closed: Callable[[], None] | None = None
        self.frames_accepted = 0  # every frame taken by send_nowait; keep-alive watches it

    def start(self, nursery: trio.Nursery, on_closed: Callable[[], None]) -> None:
        """The nursery the writer task runs in, whenever a backlog needs one."""
        self.on_closed = on_closed
        self.outbox.start_writer(nursery, self._write_batch)

    def activity(self, now: float) -> Activity:
        # A WebSocket is always ready to receive: it is never idle.
        return Activity(self.frames_accepted, 0.0, self.outbox.lag(now))

    # -- reading ---------------------------------------------------------------------------------

    async def receive_some(self) -> bytes:
        """The next hub protocol bytes from the client, from one or more
        WebSocket messages. Raises ConnectionClosed when the client is gone."""
        while True:
            data = b"".join(self._drain_events())
            if data:
                return data
            if self._peer_closed:
                raise ConnectionClosed("the client closed the WebSocket")
            self._ws.receive_data(await self._receive_raw())

    def _drain_events(self) -> Iterator[bytes]:
        for event in self._data_events():
            yield event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)

    def _data_events(self) -> Iterator[TextMessage | BytesMessage]:
        """The data wsproto parsed so far (a message may come in parts); control
        frames are answered on the way."""
        try:
            for event in self._ws.events():
                match event:
                    case TextMessage() | BytesMessage():
                        yield event
                    case Ping():
                        self._send_control(self._ws.send(event.response()))
                    case CloseConnection():
                        self._answer_close(event)
        except WSRemoteProtocolError as error:
            raise ConnectionClosed(f"WebSocket protocol error: {error}") from None

    def _answer_close(self, event: CloseConnection) -> None:
        if self._ws.state is WSState.REMOTE_CLOSING:
            # RFC 6455 5.5.1: "the endpoint MUST send a Close frame in response".
            self._send_control(self._ws.send(event.response()))
        elif self._ws.state is WSState.OPEN:
            # Not the client's Close: wsproto found a protocol error in its
            # frames and says so with the code to close with (RFC 6455 7.4.1:
            # 1002 protocol error, 1007 invalid UTF-8 in a text message).
            log.info("WebSocket protocol error (%d): %s", event.code, event.reason)
            self._send_control(self._ws.send(CloseConnection(event.code, event.reason)))
        self._peer_closed = True

    async def _receive_raw(self) -> bytes | None:
        if self._closed:
            raise ConnectionClosed("the connection is closed")
        try:
            await trio.lowlevel.wait_readable(self._sock)
            data = self._sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return b""
        except (OSError, trio.ClosedResourceError, ValueError) as error:
            raise ConnectionClosed(f"socket error: {error}") from None
        if not data:
            self._peer_closed = True
            return None
        return data

    # -- writing ---------------------------------------------------------------------------------

    def send_nowait(self, frame: Frame) -> None:
        """Write ``frame`` now if nothing is ahead of it; otherwise queue it.

        Raises ``trio.WouldBlock`` when the outbox is full: a fan-out then
        evicts this connection. Never blocks, never waits for the client.
        """
        if self._closed:
            return
        self.frames_accepted += 1
        if self.outbox.empty:
            try:
                sent = self._sock.send(frame.data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(frame.data):
                return
            if sent:
                # The kernel took part of the frame: the rest goes first in the
                # queue, as raw bytes that the writer must not merge or cut into.
                frame = raw_frame(frame.data[sent:])
                self._mid_write = True
        self.outbox.put_nowait(frame, frame.size)

    async def send(self, frame: Frame) -> None:
        await send_waiting(self, frame)

    def _send_control(self, data: bytes) -> None:
        try:
            self.send_nowait(raw_frame(data))
        except trio.WouldBlock:
            pass  # a client too slow to take a Pong will be evicted anyway

    async def _write_batch(self, frames: list[Frame]) -> None:
        """The writer's work (run by the outbox): one batch, as few writes as
        possible. The only code that waits for this socket to become writable."""
        try:
            await self._write_all(coalesce(frames))
        except ConnectionClosed:
            return  # aborted: the connection is told through on_closed

    async def _write_all(self, buffers: list[bytes | memoryview]) -> None:
        while buffers:
            try:
                sent = self._sock.sendmsg(buffers)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self.abort()
                raise ConnectionClosed(f"socket error: {error}") from None
            buffers = _advance(buffers, sent)
            self._mid_write = bool(buffers) and (sent > 0 or self._mid_write)
            if buffers:
                try:
                    await trio.lowlevel.wait_writable(self._sock)
                except (trio.ClosedResourceError, ValueError, OSError):
                    raise ConnectionClosed("the connection is closed") from None
        self._mid_write = False

    # -- closing ---------------------------------------------------------------------------------

    async def aclose(self, last_frame: Frame | None, timeout: float) -> None:
        """Close politely: ``last_frame`` (the hub Close message) and a WebSocket
        Close after everything queued, then wait (at most ``timeout``) for the
        client to answer the Close before closing the socket."""
        if self._closed:
            return
        with trio.move_on_after(timeout):
            if last_frame is not None:
                await self.send(last_frame)
            close = self._close_frame()
            if close:
                await self.send(raw_frame(close))
            await self.outbox.wait_empty()
            await self._wait_peer_close()
        self._close_socket(abort=False)

    async def _wait_peer_close(self) -> None:
        """Read (and drop) until the client's Close or EOF: closing with unread
        bytes in the kernel would reset the connection under the client."""
        try:
            while not self._peer_closed:
                self._ws.receive_data(await self._receive_raw())
                for _ in self._drain_events():
                    pass
        except (ConnectionClosed, WSLocalProtocolError):
            pass

    def abort(self, last_frame: Frame | None = None) -> None:
        """Close at once: send ``last_frame`` (a hub Close) and a WebSocket Close
        if the socket takes them without blocking and no frame is half-written,
        drop the backlog, then reset the connection (SO_LINGER 0 frees the
        kernel's buffers now)."""
        if self._closed:
            return
        if not self._mid_write and last_frame is not None:
            try:
                self._sock.send(last_frame.data + self._close_frame())
            except OSError:
                pass
        self._close_socket(abort=True)

    def _close_socket(self, *, abort: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self.outbox.close()
        try:
            if abort:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
        except OSError:
            pass
        # Wake any task waiting on this socket (with ClosedResourceError) before
        # the descriptor goes away, as trio's own sockets do.
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        on_closed, self.on_closed = self.on_closed, None  # once; and no cycle left behind
        if on_closed is not None:
            on_closed()

    @property
    def closed(self) -> bool:
        return self._closed

    def _close_frame(self) -> bytes:
        """A WebSocket Close frame, unless one was sent already."""
        if self._ws.state is not WSState.OPEN:
            return b""
        return self._ws.send(CloseConnection(code=NORMAL_CLOSURE))


def _advance(buffers: list[bytes | memoryview], sent: int) -> list[bytes | memoryview]:
    """The buffers still to write after the kernel took ``sent`` bytes."""
    index = 0
    while index < len(buffers) and sent >= len(buffers[index]):
        sent -= len(buffers[index])
        index += 1
    rest = buffers[index:]
    if rest and sent:
        rest[0] = memoryview(rest[0])[sent:]
    return rest


# -- the upgrade (RFC 6455 section 4.2) ----------------------------------------------------------


def start_upgrade(head: bytes) -> WSConnection | None:
    """Feed a request head to a server-side wsproto connection; None if it is
    not a valid WebSocket upgrade (wsproto checks the RFC 6455 4.2.1 rules)."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(head)
        event = next(ws.events(), None)
    except WSRemoteProtocolError:
        return None
    return ws if isinstance(event, Request) else None


async def accept_upgrade(
    sock: socket.socket, ws: WSConnection, subprotocol: str | None = None
) -> Connection:
    """Answer 101 Switching Protocols, offering no extensions: permessage-deflate
    is never negotiated, even when the client proposes it. ``subprotocol`` is
    the one of the client's that the server selects (browsers fail a handshake
    that offered some and got none back). Returns the WebSocket connection,
    without the handshake that made it."""
    await send_all(sock, ws.send(AcceptConnection(subprotocol=subprotocol, extensions=[])))
    assert ws.connection is not None
    return ws.connection


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of ``data`` to a non-blocking socket, waiting when it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
