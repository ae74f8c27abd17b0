"""Plain WebSockets: one whole message at a time, for protocols that are not SignalR.

A hub connection reads a byte stream of records with their own separators, so
its transports join and split WebSocket messages freely. A plain protocol
(``/v1/stream``, seed 004: "one event per frame") is the opposite: the message
*is* the unit. The two sockets here give such a protocol

- ``receive()``: the next whole message (text as ``str``, binary as ``bytes``),
  refused with ``MessageTooLarge`` as soon as it grows past the limit, without
  buffering the rest;
- ``send_nowait(frame)``: one frame, one message, never merged with its
  neighbours (``trio.WouldBlock`` when the outbox is full, as for hubs);
- ``close(code, reason)``: a WebSocket Close with the protocol's own code
  (4001, 1009...), after what is queued.

Both paths exist, as for hubs: ``DirectMessages`` on voisnap's own socket (the
front door) and ``AsgiMessages`` under hypercorn (TLS). An ``Upgrade`` is the
request before it is answered: its headers and query, and ``accept(subprotocol)``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import Protocol

import attrs
import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionState as WSState
from wsproto.events import CloseConnection, Ping, TextMessage

from ..asgi import Receive, Send
from ..errors import ConnectionClosed
from .asgi_websocket import AsgiWebSocket
from .frames import Frame
from .websockets import DirectWebSocket, accept_upgrade

MESSAGE_TOO_BIG = 1009  # RFC 6455 7.4.1


class MessageTooLarge(Exception):
    """A client's message is longer than the protocol takes."""


class MessageSocket(Protocol):
    outbox: object

    @property
    def closed(self) -> bool: ...

    def start(self, nursery: trio.Nursery, on_closed: object) -> None: ...

    async def receive(self, max_size: int) -> str | bytes:
        """The next whole message; ConnectionClosed when the client is gone,
        MessageTooLarge when it is over ``max_size`` bytes."""
        ...

    def frame(self, message: bytes) -> Frame:
        """A text message as this socket writes it (shareable between sockets of a kind)."""
        ...

    def send_nowait(self, frame: Frame) -> None: ...

    async def send(self, frame: Frame) -> None: ...

    @property
    def heard_at(self) -> float:
        """When the client was last heard from (``trio.current_time()``)."""
        ...

    def ping(self) -> None:
        """Send a WebSocket Ping; the Pong (any bytes) counts as heard from."""

    async def close(self, code: int, reason: str, timeout: float) -> None: ...

    def abort(self) -> None: ...


class Upgrade(Protocol):
    """A WebSocket upgrade request to a plain route, not yet answered."""

    request: UpgradeRequest

    async def accept(self, subprotocol: str | None) -> MessageSocket: ...


class SharedFrames:
    """One message's frames, built once per kind of socket (a fan-out's
    recipients of one kind share the very same frame)."""

    __slots__ = ("_frames", "message")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self._frames: dict[type, Frame] = {}

    def for_socket(self, sock: MessageSocket) -> Frame:
        frame = self._frames.get(type(sock))
        if frame is None:
            frame = self._frames[type(sock)] = sock.frame(self.message)
        return frame


def _size_of(data: str | bytes) -> int:
    return len(data.encode()) if isinstance(data, str) else len(data)


def close_reason(text: str) -> str:
    """``text`` cut to fit a Close frame (RFC 6455 5.5: 123 bytes of UTF-8 at most)."""
    return text.encode()[:123].decode(errors="ignore")


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """``Sec-WebSocket-Protocol``'s entries, in the client's order."""
    offered = headers.get("sec-websocket-protocol", "")
    return [entry.strip() for entry in offered.split(",") if entry.strip()]


# -- voisnap's own path -------------------------------------------------------------------------


class DirectMessages(DirectWebSocket):
    """voisnap's own WebSocket transport, read and written a message at a time."""

    __slots__ = ("_close_code", "_close_reason", "_heard_at", "_parts", "_size")

    def __init__(self, sock: socket.socket, ws: object, *, capacity: int, max_bytes: int) -> None:
        super().__init__(sock, ws, capacity=capacity, max_bytes=max_bytes)  # type: ignore[arg-type]
        self._parts: list[str | bytes] = []
        self._size = 0
        self._close_code = 1000
        self._close_reason = ""
        self._heard_at = trio.current_time()

    @property
    def heard_at(self) -> float:
        return self._heard_at

    def ping(self) -> None:
        if self._ws.state is WSState.OPEN:
            self._send_control(self._ws.send(Ping(b"voisnap")))

    async def _receive_raw(self) -> bytes | None:
        data = await super()._receive_raw()
        if data:  # a Pong, or anything else: the client is there
            self._heard_at = trio.current_time()
        return data

    def frame(self, message: bytes) -> Frame:
        return self.info.text_framer.frame(message)

    async def receive(self, max_size: int) -> str | bytes:
        while True:
            message = self._next_message(max_size)
            if message is not None:
                return message
            if self._peer_closed:
                raise ConnectionClosed("the client closed the WebSocket")
            self._ws.receive_data(await self._receive_raw())

    def _next_message(self, max_size: int) -> str | bytes | None:
        """A whole message, once wsproto has all its parts; None until then."""
        for event in self._data_events():
            part = event.data if isinstance(event, TextMessage) else bytes(event.data)
            self._size += _size_of(part)
            if self._size > max_size:  # refused now: the rest is never buffered
                raise MessageTooLarge(f"a message is over {max_size} bytes")
            self._parts.append(part)
            if event.message_finished:
                parts, self._parts, self._size = self._parts, [], 0
                return "".join(parts) if isinstance(part, str) else b"".join(parts)  # type: ignore[arg-type]
        return None

    async def _write_batch(self, frames: list[Frame]) -> None:
        """Each frame is its own message: never merged (unlike a hub's records)."""
        try:
            await self._write_all([frame.data for frame in frames])
        except ConnectionClosed:
            return

    async def close(self, code: int, reason: str, timeout: float) -> None:
        self._close_code, self._close_reason = code, close_reason(reason)
        await self.aclose(None, timeout)

    def _close_frame(self) -> bytes:
        if self._ws.state is not WSState.OPEN:
            return b""
        return self._ws.send(CloseConnection(code=self._close_code, reason=self._close_reason))


@attrs.frozen
class UpgradeRequest:
    """What both doors know of an upgrade: where to, with what, and the outbox
    its socket gets."""

    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    peer: str
    capacity: int
    max_bytes: int


@attrs.define
class DirectUpgrade:
    """An upgrade the front door read from a socket it owns."""

    request: UpgradeRequest
    sock: socket.socket
    ws: WSConnection

    async def accept(self, subprotocol: str | None) -> MessageSocket:
        connection = await accept_upgrade(self.sock, self.ws, subprotocol)
        request = self.request
        return DirectMessages(
            self.sock, connection, capacity=request.capacity, max_bytes=request.max_bytes
        )


# -- under hypercorn (TLS) ----------------------------------------------------------------------


class AsgiMessages(AsgiWebSocket):
    """The ASGI WebSocket, a message at a time (hypercorn frames each one).
    ASGI has no Ping: hypercorn answers the client's, and keep-alive is not
    checked on this path (TLS; docs/v1-events.md, "Keep-alive")."""

    _close_code = 1000
    _close_reason = ""

    @property
    def heard_at(self) -> float:
        return trio.current_time()

    def ping(self) -> None:
        pass

    def frame(self, message: bytes) -> Frame:
        return self.info.text_framer.frame(message)

    async def receive(self, max_size: int) -> str | bytes:
        message = await self.receive_message()
        if _size_of(message) > max_size:
            raise MessageTooLarge(f"a message is over {max_size} bytes")
        return message

    async def _write_batch(self, frames: list[Frame]) -> None:
        for frame in frames:
            if not await self._write(frame.opcode, bytes(frame.payload)):
                return

    async def close(self, code: int, reason: str, timeout: float) -> None:
        self._close_code, self._close_reason = code, close_reason(reason)
        await self.aclose(None, timeout)

    async def _say_goodbye(self) -> None:
        with contextlib.suppress(Exception):  # the client may be gone already
            await self._send(
                {"type": "websocket.close", "code": self._close_code, "reason": self._close_reason}
            )


@attrs.define
class AsgiUpgrade:
    """An upgrade that arrived through hypercorn (its ``websocket.connect`` read)."""

    request: UpgradeRequest
    receive: Receive
    send: Send
    sock: socket.socket | None

    async def accept(self, subprotocol: str | None) -> MessageSocket:
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol})
        request = self.request
        return AsgiMessages(
            self.receive, self.send, capacity=request.capacity, max_bytes=request.max_bytes,
            sock=self.sock,
        )


__all__ = [
    "MESSAGE_TOO_BIG",
    "AsgiUpgrade",
    "DirectUpgrade",
    "MessageSocket",
    "MessageTooLarge",
    "SharedFrames",
    "Upgrade",
    "UpgradeRequest",
    "offered_subprotocols",
]
