"""The ASGI app hypercorn serves: negotiate, health, statistics, CORS, and the
slow-path hub WebSockets.

Routes:

- ``POST {hub}/negotiate``: TransportProtocols.md, "POST [endpoint-base]/negotiate";
- ``GET /healthz``: 200 while the server runs;
- ``GET /stats``: counters (connections, deliveries, evictions) as JSON; no ids;
- ``OPTIONS *``: CORS preflight, answered for the ``--cors-origin`` list only;
- a WebSocket to a hub path: the same admission as the front door, then the
  ASGI WebSocket transport.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from ..asgi import Receive, Scope, Send
from ..transports.asgi_websocket import AsgiWebSocket
from .connections import NO_CONNECTION
from .http import HttpError, cors_headers, header_map, json_body, parse_query
from .hub_server import HubServer
from .hypercorn_bridge import SOCKET_STATE_KEY

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
PREFLIGHT_HEADERS = "authorization, content-type, x-requested-with, x-signalr-user-agent"


class VoisnapApp:
    def __init__(self, hub_server: HubServer) -> None:
        self.hubs = hub_server
        self.settings = hub_server.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match scope["type"]:
            case "lifespan":
                await self._lifespan(receive, send)
            case "http":
                await self._http(scope, receive, send)
            case "websocket":
                await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope["headers"])
        cors = cors_headers(headers.get("origin"), self.settings.cors_origins)
        try:
            await _read_body(receive)
            status, content_type, body, extra = self._route(scope, headers)
        except HttpError as error:
            status, content_type, body, extra = (
                error.status,
                "text/plain; charset=utf-8",
                error.text.encode(),
                error.headers,
            )
        await _respond(send, status, content_type, body, [*extra, *cors])

    def _route(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, bytes, list]:
        method, path = scope["method"], scope["path"]
        query = parse_query(scope["query_string"])
        if method == "OPTIONS":
            return self._preflight(headers)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return 200, "application/json", json_body({"status": "ok"}), []
        if path == "/stats" and method == "GET":
            return 200, "application/json", json_body(self.hubs.statistics()), []
        if path.endswith("/negotiate") and method == "POST":
            document = self.hubs.negotiate(path.removesuffix("/negotiate"), headers, query)
            return 200, "application/json", json_body(document), []
        if self.hubs.endpoint_for(path) is not None:
            return self._hub_request(method, query)
        raise HttpError(404, "Not Found")

    def _preflight(self, headers: dict[str, str]) -> tuple[int, str, bytes, list]:
        origin = headers.get("origin")
        if origin is None or origin not in self.settings.cors_origins:
            raise HttpError(403, f"CORS: origin '{origin}' is not allowed.")
        requested = headers.get("access-control-request-headers", PREFLIGHT_HEADERS)
        return (
            204,
            "text/plain",
            b"",
            [
                ("access-control-allow-methods", "GET, POST, DELETE, OPTIONS"),
                ("access-control-allow-headers", requested),
                ("access-control-max-age", "600"),
            ],
        )

    def _hub_request(self, method: str, query: dict[str, str]) -> tuple[int, str, bytes, list]:
        """A non-WebSocket request to a hub path (TransportProtocols.md): only
        WebSockets are served for now, so only the errors are answered here."""
        token = query.get("id")
        if not token:
            raise HttpError(400, "Connection ID required")
        if method == "POST" and self.hubs.registry.is_active(token):
            raise HttpError(405, "POST requests are not allowed for WebSocket connections.")
        raise HttpError(404, NO_CONNECTION)

    # -- WebSockets (the slow path) --------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            admission = self.hubs.admit(
                scope["path"], header_map(scope["headers"]), parse_query(scope["query_string"])
            )
        except HttpError as error:
            return await _deny(scope, send, error)
        await send({"type": "websocket.accept"})
        transport = AsgiWebSocket(
            receive,
            send,
            capacity=self.settings.outbox_capacity,
            max_bytes=self.settings.outbox_max_bytes,
            sock=_socket_of(scope),
        )
        await self.hubs.serve(admission, transport)


def _socket_of(scope: Scope) -> socket.socket | None:
    handle = scope.get("state", {}).get(SOCKET_STATE_KEY)
    return None if handle is None else handle.socket


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise HttpError(413, "Request body too large.")
        if not message.get("more_body"):
            break
    return bytes(body)


async def _respond(
    send: Send, status: int, content_type: str, body: bytes, headers: list[tuple[str, str]]
) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(name.encode(), value.encode()) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _deny(scope: Scope, send: Send, error: HttpError) -> None:
    """Refuse a WebSocket with an HTTP status (the ASGI denial-response
    extension, which hypercorn offers); without it, a plain close."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    headers: list[Any] = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(n.encode(), v.encode()) for n, v in error.headers]
    await send(
        {"type": "websocket.http.response.start", "status": error.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": error.text.encode()})
