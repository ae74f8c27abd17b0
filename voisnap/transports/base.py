"""What the hub layer needs from a transport (TransportProtocols.md).

A transport moves bytes; it knows nothing of hubs. Every transport (voisnap's
own WebSocket, the ASGI WebSocket, Server-Sent Events and long polling) offers
the same small surface, ``Transport``:

- ``info``: what it is (its kind, the formats it carries, whether stateful
  reconnect can continue on a new one, whether polls are its keep-alive, and
  how it frames a hub record);
- ``start(nursery, on_closed)``: where its writer task runs while its outbox
  holds a backlog, and whom to tell, once, when it closes (so that a connection
  whose reader is busy elsewhere still learns of it);
- ``receive_some()``: the next hub-protocol bytes from the client;
- ``send_nowait(frame)``: deliver or queue without waiting, ``trio.WouldBlock``
  when the connection's outbox is full (a fan-out then evicts it); ``send(frame)``
  the same, waiting for room (a connection's own replies);
- ``activity(now)``: frames accepted, idle time and lag, for the heartbeat and
  the router;
- ``aclose(last_frame, timeout)`` to close politely, ``abort(last_frame)`` to
  close at once.

What only Server-Sent Events and long polling have (the client's POSTs) is a
protocol of its own, ``PostingTransport``.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from ..protocol import TransferFormat
from .frames import Frame, Framer
from .outbox import Lag, Outbox
from .posts import PostedBytes
from .sockets import cut_off


class TransportType(enum.Enum):
    """TransportProtocols.md: the three transports, by the names negotiate uses."""

    WEB_SOCKETS = "WebSockets"
    SERVER_SENT_EVENTS = "ServerSentEvents"
    LONG_POLLING = "LongPolling"

    @property
    def transfer_formats(self) -> list[str]:
        """Server-Sent Events carry text only (TransportProtocols.md)."""
        if self is TransportType.SERVER_SENT_EVENTS:
            return [TransferFormat.TEXT.value]
        return [TransferFormat.TEXT.value, TransferFormat.BINARY.value]


ALL_TRANSPORTS = tuple(TransportType)


def parse_hub_transports(entries: tuple[str, ...]) -> dict[str, tuple[TransportType, ...]]:
    """``("/hubs/chat=WebSockets,LongPolling", ...)`` -> {path: transports}."""
    hubs: dict[str, tuple[TransportType, ...]] = {}
    for entry in entries:
        path, separator, names = entry.partition("=")
        if not separator or not path.strip():
            raise ValueError(f"hub transports {entry!r}: expected PATH=TRANSPORT,...")
        try:
            chosen = tuple(TransportType(name.strip()) for name in names.split(",") if name.strip())
        except ValueError as error:
            known = ", ".join(t.value for t in TransportType)
            raise ValueError(f"hub transports {entry!r}: {error} (known: {known})") from None
        hubs["/" + path.strip().strip("/")] = chosen
    return hubs


@attrs.frozen
class TransportInfo:
    """What a transport is: the few facts a hub connection decides by."""

    kind: TransportType
    transfer_format: TransferFormat
    """The formats it can carry: BINARY means text and binary."""
    resumable: bool
    """Stateful reconnect can continue on a new one (WebSockets only)."""
    polled: bool
    """Long polling: the polls themselves show the client is alive, so no Pings
    are sent and no client timeout applies (TransportProtocols.md)."""
    text_framer: Framer
    binary_framer: Framer

    def framer_for(self, transfer_format: TransferFormat) -> Framer:
        """How a hub record of this format becomes one of this transport's frames."""
        return self.text_framer if transfer_format is TransferFormat.TEXT else self.binary_framer


@attrs.frozen
class Activity:
    """What the heartbeat and the router ask of a transport, read in one call."""

    frames_accepted: int
    """Frames taken by ``send_nowait`` so far (the keep-alive watches it)."""
    idle_seconds: float
    """How long the client has not been waiting for data (long polling: no
    poll in flight); 0 for transports that always are."""
    lag: Lag
    """How far behind the client is (``outbox.Lag``)."""


class Transport(Protocol):
    """A transport moves bytes between one client and its hub connection."""

    info: TransportInfo

    @property
    def closed(self) -> bool: ...

    def start(self, nursery: trio.Nursery, on_closed: Callable[[], None]) -> None:
        """``nursery`` is where the transport's writer runs while it has a
        backlog; ``on_closed`` is called once, when it closes, whoever closed it."""

    async def receive_some(self) -> bytes:
        """The next bytes from the client; ConnectionClosed once it is gone."""
        ...

    def send_nowait(self, frame: Frame) -> None:
        """Deliver or queue without waiting; ``trio.WouldBlock`` when the outbox is full."""

    async def send(self, frame: Frame) -> None:
        """The same, waiting for room (a connection's own replies)."""

    def activity(self, now: float) -> Activity: ...

    async def aclose(self, last_frame: Frame | None, timeout: float) -> None:
        """``last_frame`` after everything queued, then close, within ``timeout``."""

    def abort(self, last_frame: Frame | None = None) -> None:
        """Close at once (``last_frame`` only if the socket takes it now)."""


class PostingTransport(Transport, Protocol):
    """Server-Sent Events and long polling: the client sends by HTTP POST."""

    posts: PostedBytes


class QueuedTransport:
    """What transports whose every write goes through their outbox share (ASGI
    WebSocket, Server-Sent Events, long polling): ``send_nowait`` queues,
    ``send`` waits for room (``send_waiting``), and closing.

    Subclasses set ``info``, ``outbox``, ``frames_accepted``, ``on_closed``
    and ``_closed``, and fill in the hooks: ``_start`` (its writer and whatever
    runs beside it), ``_idle_seconds``, ``_say_goodbye`` (the transport's own
    polite end), ``_socket`` (the TCP socket to cut off) and ``_release``
    (whatever else waits on the transport).
    """

    __slots__ = ()
    info: TransportInfo
    outbox: Outbox[Frame]
    frames_accepted: int
    on_closed: Callable[[], None] | None
    _closed: bool

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self, nursery: trio.Nursery, on_closed: Callable[[], None]) -> None:
        self.on_closed = on_closed
        self._start(nursery)

    def _start(self, nursery: trio.Nursery) -> None:
        """Start the writer (and whatever else runs beside the transport)."""

    def activity(self, now: float) -> Activity:
        return Activity(self.frames_accepted, self._idle_seconds(now), self.outbox.lag(now))

    def _idle_seconds(self, now: float) -> float:
        return 0.0  # always waiting for data, as a WebSocket or an event stream is

    # -- sending ----------------------------------------------------------------------------------

    def send_nowait(self, frame: Frame) -> None:
        if self._closed:
            return
        self.frames_accepted += 1
        self.outbox.put_nowait(frame, frame.size)
        self._queued()

    def _queued(self) -> None:
        """Called after each frame is queued (long polling wakes its poll)."""

    async def send(self, frame: Frame) -> None:
        await send_waiting(self, frame)

    # -- closing ----------------------------------------------------------------------------------

    async def aclose(self, last_frame: Frame | None, timeout: float) -> None:
        """``last_frame`` (the hub Close) after everything queued, then the
        transport's own goodbye, all bounded by ``timeout``; then closed."""
        if self._closed:
            return
        with trio.move_on_after(timeout):
            if last_frame is not None:
                await self.send(last_frame)
            await self.outbox.wait_empty()
            await self._say_goodbye()
        self._mark_closed()

    def abort(self, last_frame: Frame | None = None) -> None:
        """Close at once. These transports cannot write without waiting, so
        ``last_frame`` is dropped; and since hypercorn shields its writes, a
        write stuck on a stalled client is made to fail by cutting the socket
        off (``transports.sockets``)."""
        sock = self._socket()
        if sock is not None and not self._closed:
            cut_off(sock)
        self._mark_closed()

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.outbox.close()
        self._release()
        on_closed, self.on_closed = self.on_closed, None  # once; and no cycle left behind
        if on_closed is not None:
            on_closed()

    async def _say_goodbye(self) -> None:
        """End the transport politely (end the response, a WebSocket Close)."""

    def _socket(self) -> socket.socket | None:
        """The TCP socket under the transport, if there is one to cut off."""
        return None

    def _release(self) -> None:
        """Close or wake what else waits on the transport."""


async def send_waiting(transport: Transport | QueuedTransport, frame: Frame) -> None:
    """Send ``frame``, waiting for room in the outbox while it is full: a
    connection's own replies and streams (the caller's flow control), never a
    fan-out. A frame for a transport that closes meanwhile is dropped."""
    while True:
        try:
            return transport.send_nowait(frame)
        except trio.WouldBlock:
            try:
                await transport.outbox.wait_for_space(frame.size)
            except trio.ClosedResourceError:
                return
