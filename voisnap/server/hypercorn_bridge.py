"""The seam between voisnap's listener and hypercorn: the only module that knows
hypercorn's internals. Written for hypercorn 0.18 (pinned ``>=0.18,<0.19``).

hypercorn's public ``serve()`` owns its listening socket and offers no hook to
take some connections away from it. voisnap owns the listener instead (so hub
WebSockets can take the fast path) and re-creates the small part of
``hypercorn.trio.run.worker_serve`` that starts connections. It uses:

- ``hypercorn.trio.lifespan.Lifespan``: the ASGI lifespan protocol;
- ``hypercorn.trio.worker_context.WorkerContext``: its ``terminated`` event
  tells idle keep-alive connections to close at shutdown;
- ``hypercorn.trio.tcp_server.TCPServer``: one HTTP connection (HTTP/1.1, h2c,
  HTTP/2 over TLS, WebSocket), given a trio stream. It tells a TLS stream from
  a plain one by ``do_handshake`` (missing = plain) and reads addresses from
  ``stream.socket`` (or ``stream.transport_stream.socket``);
- ``hypercorn.app_wrappers.ASGIWrapper`` and ``hypercorn.typing.ConnectionState``;
- ``hypercorn.logging.Logger.atoms`` to redact tokens from the access log.

If hypercorn changes any of these, ``tests/transports/test_front_door.py`` fails.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.logging import Logger
from hypercorn.middleware import ProxyFixMiddleware
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from ..asgi import ASGIApp
from ..config import Settings
from .http import client_address, header_map, redact_query

SOCKET_STATE_KEY = "voisnap.socket"


class SocketHandle:
    """A connection's socket in its ASGI state. Middleware may deep-copy a scope
    (hypercorn's ProxyFixMiddleware does); the socket must survive as itself."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    def __deepcopy__(self, memo: dict) -> SocketHandle:
        return self


def socket_of(scope: Mapping[str, Any]) -> socket.socket | None:
    """The TCP socket under an ASGI request (see ``HypercornBridge.serve_connection``)."""
    handle = scope.get("state", {}).get(SOCKET_STATE_KEY)
    return None if handle is None else handle.socket


class RedactingLogger(Logger):
    """hypercorn's logger, with ``access_token`` values and Authorization headers
    removed from the access-log atoms: tokens never reach a log. Behind a
    trusted proxy, the client address is the one the proxy forwarded."""

    trust_proxy_headers = False

    async def access(self, request: Any, response: Any, request_time: float) -> None:
        if response is not None:  # hypercorn also calls this before a response exists
            await super().access(request, response, request_time)

    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        atoms = super().atoms(request, response, request_time)
        for key in ("q", "Uq", "R"):
            atoms[key] = redact_query(atoms[key])
        headers = header_map(request["headers"])
        atoms["h"] = client_address(headers, atoms["h"], self.trust_proxy_headers)
        atoms.pop("{authorization}i", None)
        return atoms


def make_config(settings: Settings) -> Config:
    config = Config()
    config.logger_class = ProxyTrustingLogger if settings.proxy_headers else RedactingLogger
    # One access log for both doors, on stderr (stdout carries the "listening" line).
    config.accesslog = logging.getLogger("voisnap.access") if settings.access_log else None
    config.access_log_format = '%(h)s "%(R)s" %(s)s %(b)s "%(a)s"'
    # In JSON, hypercorn's own lines go through the root logger's handler (one
    # format on stderr); in text, hypercorn keeps its own handler, as before.
    config.errorlog = logging.getLogger("hypercorn.error") if settings.log_format == "json" else "-"
    config.graceful_timeout = settings.shutdown_timeout
    config.h11_max_incomplete_size = settings.request_head_max_size
    # Deadlines for what the front door cannot see: a TLS handshake, and the
    # head of a second request on a keep-alive connection (hypercorn's idle
    # timer runs until a whole head has arrived). No read_timeout: Server-Sent
    # Events and long polls hear nothing from the client for minutes, rightly.
    config.ssl_handshake_timeout = settings.request_head_timeout
    config.keep_alive_timeout = settings.request_head_timeout
    # A hub WebSocket message may hold several hub messages, but not a megabyte.
    config.websocket_max_message_size = max(settings.max_message_size, 1024 * 1024)
    config.include_server_header = False
    config.certfile = settings.certfile
    config.keyfile = settings.keyfile
    return config


class ProxyTrustingLogger(RedactingLogger):
    trust_proxy_headers = True


class HypercornBridge:
    """hypercorn's per-connection server, driven by voisnap's listener."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        if settings.proxy_headers:
            app = ProxyFixMiddleware(app, mode="legacy", trusted_hops=1)
        self.config = make_config(settings)
        self._app = ASGIWrapper(app)
        self._context = WorkerContext(None)
        self._state: dict[str, Any] = {}
        self._lifespan = Lifespan(self._app, self.config, self._state)
        # What every connection shares, which ``dismantle`` must never empty.
        self._shared = {id(o) for o in hypercorn_objects([self._app, self.config, self._context])}

    def ssl_context(self) -> Any:
        return self.config.create_ssl_context()

    async def start(self, nursery: trio.Nursery) -> None:
        """Run the ASGI lifespan startup (in ``nursery``, which must outlive serving)."""
        await nursery.start(self._lifespan.handle_lifespan)
        await self._lifespan.wait_for_startup()

    async def serve_connection(self, stream: trio.abc.Stream, sock: socket.socket) -> None:
        """Serve one HTTP connection until it closes.

        ``sock`` goes into the connection's ASGI ``state`` (hypercorn copies that
        dict into every scope of the connection) as ``voisnap.socket``: hypercorn
        shields its writes, so an app that must cut off a stalled client shuts
        the socket down itself.
        """
        state = ConnectionState({**self._state, SOCKET_STATE_KEY: SocketHandle(sock)})
        server = TCPServer(self._app, self.config, self._context, state, stream)
        try:
            await server.run()
        finally:
            dismantle(server, keep=self._shared)

    async def stop(self) -> None:
        """Tell keep-alive connections to close, then run the lifespan shutdown."""
        await self._context.terminated.set()
        await self._lifespan.wait_for_shutdown()


def hypercorn_objects(roots: list[object], keep: set[int] | None = None) -> list[object]:
    """The hypercorn objects reachable from ``roots`` through their attributes,
    without entering those whose ids are in ``keep``."""
    found: dict[int, object] = {}
    waiting = list(roots)
    while waiting:
        thing = waiting.pop()
        if id(thing) in found or (keep is not None and id(thing) in keep):
            continue
        if not type(thing).__module__.startswith("hypercorn") or not hasattr(thing, "__dict__"):
            continue
        found[id(thing)] = thing
        waiting.extend(vars(thing).values())
    return list(found.values())


def dismantle(root: object, keep: set[int]) -> None:
    """Empty the hypercorn objects of a finished connection.

    hypercorn's per-connection objects point at each other (the TCP server at
    its protocol, the protocol back at the server's ``protocol_send``, a stream
    at its protocol's callbacks...), so when a connection ends they, and our
    stream and socket handle with them, wait for the cyclic garbage collector,
    whose full collections pause every connection at once. Once ``run()`` has
    returned nothing of that connection runs any more, so emptying its objects
    is safe; those in ``keep`` (the app, the config, the worker context, shared
    by every connection) are neither emptied nor walked through. With the
    cycles broken, reference counting frees everything at once.
    """
    for thing in hypercorn_objects([root], keep):
        vars(thing).clear()


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A socket stream whose first reads return bytes the front door already read.

    Deliberately has no ``do_handshake``: hypercorn's TCPServer takes a stream
    without it for a plain (non-TLS) connection.
    """

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.socket = stream.socket
        # hypercorn writes under its own lock, but ends the connection (send_eof)
        # outside it, and a write that began while the EOF was being sent (the
        # answer to a request refused before its body ended: a 413, a 401) met
        # BusyResourceError. Writes and the EOF take turns here.
        self._sending = trio.Lock()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._sending:
            await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        try:
            self._sending.acquire_nowait()
        except trio.WouldBlock:
            # A write is in flight, and may never end (a client that does not read):
            # hypercorn takes this as "gone already" and closes the stream, which
            # ends that write. Waiting for it here could wait for ever.
            raise trio.BusyResourceError("a write is in flight") from None
        try:
            await self._stream.send_eof()
        finally:
            self._sending.release()

    async def aclose(self) -> None:
        await self._stream.aclose()
