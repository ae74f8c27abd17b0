"""The front door: one listener, two paths in.

voisnap owns the listening socket. For each new TCP connection it reads the
request head (bounded in time and size: browsers open idle pre-connections)
and decides:

- a WebSocket upgrade to a mounted hub path goes to voisnap's own WebSocket
  transport, which writes pre-built frames straight to the socket (the fan-out
  hot path, ``transports.websockets``);
- everything else (negotiate, REST, health, HTTP/2, and WebSockets to other
  paths) is handed to hypercorn with the bytes already read, through
  ``hypercorn_bridge``.

With TLS on, every connection goes to hypercorn, which terminates TLS; hub
WebSockets then take the ASGI path (correct, but slower to fan out: terminate
TLS in a proxy in front of voisnap when fan-out speed matters).
"""

from __future__ import annotations

import enum
import errno
import logging
import re
import socket
from contextlib import suppress

import attrs
import trio

from ..failures import error_boundary
from ..transports.base import TransportType
from ..transports.plain import DirectUpgrade, UpgradeRequest
from ..transports.websockets import (
    DirectWebSocket,
    accept_upgrade,
    send_all,
    start_upgrade,
)
from .http import (
    HttpError,
    client_address,
    framing_problem,
    parse_query,
    plain_response,
    redact_query,
)
from .hub_server import Admission, Elsewhere, HubServer
from .hypercorn_bridge import HypercornBridge, PrefixedStream

log = logging.getLogger(__name__)
access_log = logging.getLogger("voisnap.access")

RECEIVE_SIZE = 64 * 1024
HEAD_END = b"\r\n\r\n"
# Errors accept() reports when the process or the system is out of descriptors
# or memory: wait a moment and go on, as trio.serve_listeners does.
ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_BACKOFF = 0.1
LINGER_BYTES = 1024 * 1024  # what a refused client may still send before the close
HEAD_TOO_LARGE = plain_response(431, "The request head is too large.")


class Outcome(enum.Enum):
    NOT_A_HUB_UPGRADE = "hand the connection to hypercorn"
    REFUSED = "answered with an error and closed"


NOT_A_HUB_UPGRADE = Outcome.NOT_A_HUB_UPGRADE
REFUSED = Outcome.REFUSED


@attrs.frozen
class RequestHead:
    """The parts of an HTTP/1.1 request head the front door routes on."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    framing_problem: str | None = None
    """Why the body framing cannot be trusted (``http.framing_problem``), if so."""

    @classmethod
    def parse(cls, head: bytes) -> RequestHead | None:
        """None when the bytes are not an HTTP/1.x request head (hypercorn will
        answer those, or an HTTP/2 preface, itself)."""
        try:
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
        except ValueError:
            return None
        if not version.startswith("HTTP/1."):
            return None
        pairs = []
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                pairs.append((name.strip().lower(), value.strip()))
        path, _, query = target.partition("?")
        return cls(method, path, query, dict(pairs), framing_problem(pairs))

    @property
    def is_websocket_upgrade(self) -> bool:
        return self.method == "GET" and "websocket" in self.headers.get("upgrade", "").lower()


class FrontDoor:
    def __init__(self, hubs: HubServer, bridge: HypercornBridge) -> None:
        self.hubs = hubs
        self.bridge = bridge
        self.settings = hubs.settings
        self._ssl_context = bridge.ssl_context() if self.settings.tls else None

    async def serve(self, listener: socket.socket, connections: trio.Nursery) -> None:
        """Accept until cancelled; each connection's task goes in ``connections``."""
        listener.setblocking(False)
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            except OSError as error:
                if listener.fileno() < 0:
                    return  # the listener was closed: shutting down
                if error.errno in ACCEPT_CAPACITY_ERRORS:
                    log.error("accept failed (%s); retrying shortly", error)
                    await trio.sleep(ACCEPT_BACKOFF)
                continue  # ECONNABORTED and friends: that client is gone already
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections.start_soon(self._handle, sock)

    async def _handle(self, sock: socket.socket) -> None:
        """One TCP connection, inside its own error boundary: whatever goes
        wrong with it, no other connection notices."""
        with error_boundary(log, "a connection", lambda _: _close_quietly(sock)):
            await self._route(sock)

    async def _route(self, sock: socket.socket) -> None:
        if self._ssl_context is not None:
            stream = trio.SSLStream(
                _trio_stream(sock), self._ssl_context, server_side=True, https_compatible=True
            )
            return await self.bridge.serve_connection(stream, sock)
        head = await self._read_head(sock)
        if head is None:
            return _close_quietly(sock)
        if _head_size(head) > self.settings.request_head_max_size:
            return await self._refuse(sock, HEAD_TOO_LARGE)
        request = RequestHead.parse(head)
        if request is not None and request.framing_problem is not None:
            response = plain_response(400, request.framing_problem)
            return await self._refuse(sock, response)
        if await self._plain_websocket(sock, head, request):
            return
        outcome = await self._hub_websocket(sock, head, request)
        if outcome is NOT_A_HUB_UPGRADE:
            stream = PrefixedStream(_trio_stream(sock), head)
            del head  # this frame lives as long as the connection: keep it small
            await self.bridge.serve_connection(stream, sock)
        elif outcome is not REFUSED:
            del head
            admission, transport = outcome
            if isinstance(admission, Elsewhere):  # a stateful client back, at the wrong process
                return await self.hubs.relay.websocket(admission, transport)
            await self.hubs.serve(admission, transport)

    async def _refuse(self, sock: socket.socket, response: bytes) -> None:
        """Answer with ``response`` and close, lingering (RFC 9112, 9.6): a
        socket closed with unread bytes sends a reset, which can destroy the
        response before the client reads it. So: send, shut the sending side,
        read and drop what the client is still sending (bounded), then close."""
        with trio.move_on_after(self.settings.request_head_timeout), suppress(OSError):
            await send_all(sock, response)
            sock.shutdown(socket.SHUT_WR)
            await _drain(sock, LINGER_BYTES)
        _close_quietly(sock)

    async def _read_head(self, sock: socket.socket) -> bytes | None:
        """Everything received up to the end of the request head (and perhaps a
        little after it); None if the client sent nothing usable in time."""
        buffer = bytearray()
        with trio.move_on_after(self.settings.request_head_timeout):
            while HEAD_END not in buffer and len(buffer) <= self.settings.request_head_max_size:
                try:
                    await trio.lowlevel.wait_readable(sock)
                    chunk = sock.recv(RECEIVE_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    return None
                if not chunk:
                    return None if not buffer else bytes(buffer)
                buffer += chunk
                if _REQUEST_LINE_START.match(buffer) is None:
                    return None  # not HTTP (a TLS hello, binary noise): close now
            return bytes(buffer)
        return None

    async def _plain_websocket(
        self, sock: socket.socket, head: bytes, request: RequestHead | None
    ) -> bool:
        """A WebSocket upgrade to a plain route (``/v1/stream``): handed to the
        route on voisnap's own path. False if it is not one."""
        if request is None or not request.is_websocket_upgrade:
            return False
        handler = self.hubs.websocket_routes.get(request.path)
        ws = None if handler is None else start_upgrade(head)
        if ws is None:
            return False  # hypercorn answers (404, or 400 for a broken upgrade)
        peer = _peer_of(sock)
        self._log(request, peer, 101)
        await handler(
            DirectUpgrade(
                UpgradeRequest(
                    request.path, request.headers, parse_query(request.query), peer,
                    self.settings.outbox_capacity, self.settings.outbox_max_bytes,
                ),
                sock,
                ws,
            )
        )
        return True

    async def _hub_websocket(
        self, sock: socket.socket, head: bytes, request: RequestHead | None
    ) -> tuple[Admission | Elsewhere, DirectWebSocket] | Outcome:
        """Admit and accept a WebSocket upgrade to a hub, on voisnap's own path."""
        if (
            request is None
            or not request.is_websocket_upgrade
            or self.hubs.endpoint_for(request.path) is None
        ):
            return NOT_A_HUB_UPGRADE
        ws = start_upgrade(head)
        if ws is None:
            return NOT_A_HUB_UPGRADE  # not a valid upgrade after all: hypercorn answers 400
        peer = _peer_of(sock)
        try:
            admission = await self.hubs.admit(
                request.path,
                request.headers,
                parse_query(request.query),
                TransportType.WEB_SOCKETS,
            )
        except HttpError as error:
            self._log(request, peer, error.status)
            await self._refuse(sock, plain_response(error.status, error.text, error.headers))
            return REFUSED
        try:
            connection = await accept_upgrade(sock, ws)
        except OSError:  # the client is gone already
            _close_quietly(sock)
            return REFUSED
        self._log(request, peer, 101)
        transport = DirectWebSocket(
            sock,
            connection,
            capacity=self.settings.outbox_capacity,
            max_bytes=self.settings.outbox_max_bytes,
        )
        return admission, transport

    def _log(self, request: RequestHead, peer: str, status: int) -> None:
        """One access-log line per upgrade, in the format of hypercorn's lines."""
        if self.settings.access_log:
            query = redact_query(request.query)
            target = request.path + (f"?{query}" if query else "")
            client = client_address(request.headers, peer, self.settings.proxy_headers)
            agent = request.headers.get("user-agent", "-")
            access_log.info('%s "GET %s websocket" %d - "%s"', client, target, status, agent)


# What every HTTP/1.x request (and the HTTP/2 preface, "PRI * ...") begins
# with: a method token of RFC 9110's token characters, then a space.
_REQUEST_LINE_START = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}(?: |\Z)")


async def _drain(sock: socket.socket, limit: int) -> None:
    """Read and drop until the client's EOF, or ``limit`` bytes."""
    drained = 0
    while drained < limit:
        await trio.lowlevel.wait_readable(sock)
        try:
            chunk = sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not chunk:
            return
        drained += len(chunk)


def _head_size(received: bytes) -> int:
    """The length of the request head in ``received`` (all of it if it has no end)."""
    end = received.find(HEAD_END)
    return len(received) if end < 0 else end + len(HEAD_END)


def _peer_of(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "-"
    return f"{host}:{port}"


def _trio_stream(sock: socket.socket) -> trio.SocketStream:
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


def _close_quietly(sock: socket.socket) -> None:
    if sock.fileno() < 0:
        return  # closed already (a transport closed it before failing)
    trio.lowlevel.notify_closing(sock)
    sock.close()
