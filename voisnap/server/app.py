"""The ASGI app hypercorn serves: negotiate, health, statistics, CORS, and the
slow-path hub WebSockets.

Routes:

- ``POST {hub}/negotiate``: TransportProtocols.md, "POST [endpoint-base]/negotiate";
- ``GET /healthz``: 200 while the process runs (liveness);
- ``GET /readyz``: 200 when everything it depends on answers (the backplane),
  otherwise 503 with a JSON body naming what does not (readiness);
- ``GET /stats``: counters (connections, deliveries, evictions) as JSON; no ids;
- the apps' REST routes (``server.routes``), authenticated like the hubs;
- ``OPTIONS *``: CORS preflight, answered for the ``--cors-origin`` list only;
- other requests to a hub path: Server-Sent Events and long polling
  (``http_transports``);
- a WebSocket to a hub path: the same admission as the front door, then the
  ASGI WebSocket transport.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..asgi import Receive, Scope, Send
from ..errors import ServiceUnavailable
from ..failures import error_boundary
from ..logs import log_context, request_id_from
from ..metrics import REGISTRY
from ..transports.asgi_websocket import AsgiWebSocket
from ..transports.base import TransportType
from ..transports.plain import AsgiUpgrade, UpgradeRequest
from .auth import token_from
from .http import (
    TEXT,
    HttpError,
    cors_headers,
    framing_problem,
    header_map,
    json_body,
    parse_query,
    respond,
)
from .http_transports import HttpTransports
from .hub_server import Elsewhere, HubServer
from .hypercorn_bridge import socket_of
from .request_body import REST_BODY_LIMIT, read_body
from .routes import RestRequest, body_limit, match

log = logging.getLogger(__name__)

T = TypeVar("T")

PREFLIGHT_HEADERS = "authorization, content-type, x-requested-with, x-signalr-user-agent"

RETRY_AFTER = ("retry-after", "1")


class VoisnapApp:
    def __init__(self, hub_server: HubServer) -> None:
        self.hubs = hub_server
        self.settings = hub_server.settings
        self.transports = HttpTransports(hub_server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match scope["type"]:
            case "lifespan":
                await self._lifespan(receive, send)
            case "http":
                tracked = TrackedSend(send)
                with (
                    log_context(request_id=_request_id(scope)),
                    error_boundary(log, "an HTTP request", lambda _: tracked.fail_soon()),
                ):
                    await self._http(scope, receive, tracked)
                await tracked.answer_failure()
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
        problem = framing_problem(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        if problem is not None:  # every request, not only a connection's first
            error = HttpError(400, problem, close=True)
            return await respond(send, 400, error.text.encode(), [*error.headers, *cors])
        if scope["method"] != "OPTIONS" and self.hubs.endpoint_for(scope["path"]) is not None:
            # Server-Sent Events and long polling stream their responses.
            return await self.transports.handle(scope, receive, send)
        try:
            # A route may take a larger body than the REST limit (an upload):
            # its own limit applies from the first byte, Content-Length included.
            limit = body_limit(self.hubs.routes, scope["method"], scope["path"], REST_BODY_LIMIT)
            if limit > REST_BODY_LIMIT:
                await self._admit_large_body(headers, scope["query_string"])
            received = await read_body(receive, headers, limit, self.settings.request_body_timeout)
            answer = await _until_disconnect(receive, self._route(scope, headers, received))
            if answer is None:
                return  # the client went away: nobody to answer
            status, content_type, body, extra = answer
        except HttpError as error:
            status, content_type, body, extra = (
                error.status,
                TEXT,
                error.text.encode(),
                error.headers,
            )
        await respond(send, status, body, [*extra, *cors], content_type=content_type)

    async def _admit_large_body(self, headers: dict[str, str], query_string: bytes) -> None:
        """Check the token before reading a body larger than the REST limit (an
        upload's): only a caller with a token may make the server hold that much.
        A refusal leaves the body unread, so the connection is then closed."""
        try:
            await self.hubs.authenticate_request(headers, parse_query(query_string))
        except HttpError as error:
            raise HttpError(error.status, error.text, error.headers, close=True) from None

    async def _route(
        self, scope: Scope, headers: dict[str, str], received: bytes
    ) -> tuple[int, str, bytes, list]:
        method, path = scope["method"], scope["path"]
        query = parse_query(scope["query_string"])
        if method == "OPTIONS":
            return self._preflight(headers)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return 200, "application/json", json_body({"status": "ok"}), []
        if path == "/readyz" and method in ("GET", "HEAD"):
            unavailable = await self.hubs.readiness()
            status = 503 if unavailable else 200
            document = {"status": "unavailable" if unavailable else "ready", **unavailable}
            return status, "application/json", json_body(document), []
        if path == "/stats" and method == "GET":
            return 200, "application/json", json_body(self.hubs.statistics()), []
        if path == "/metrics" and method == "GET":
            return self._metrics(headers, query)
        if path.endswith("/negotiate") and method == "POST":
            document = await self.hubs.negotiate(path.removesuffix("/negotiate"), headers, query)
            return 200, "application/json", json_body(document), []
        return await self._rest(method, path, headers, query, received)

    def _metrics(
        self, headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, str, bytes, list]:
        """Prometheus's text format, by prometheus-client (``voisnap.metrics``);
        behind ``--metrics-token`` when one is set."""
        expected = self.settings.metrics_token
        if expected is not None and not hmac.compare_digest(
            (token_from(headers, query) or "").encode(), expected.encode()
        ):
            challenge = [("www-authenticate", "Bearer")]
            raise HttpError(401, "/metrics needs the metrics token.", challenge)
        body = generate_latest(REGISTRY) + generate_latest(self.hubs.metrics_registry)
        return 200, CONTENT_TYPE_LATEST, body, []

    async def _rest(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        query: dict[str, str],
        received: bytes,
    ) -> tuple[int, str, bytes, list]:
        """The apps' REST routes (``server.routes``), with the hubs' JWT."""
        found = match(self.hubs.routes, method, path)
        if found is None:
            raise HttpError(404, "Not Found")
        if found is False:
            raise HttpError(405, "Method Not Allowed")
        route, params = found
        principal = await self.hubs.authenticate_request(headers, query)
        await self.hubs.admit_principal(path, principal)
        try:
            with log_context(user_id=principal.user_id, tenant_id=principal.tenant_id):
                status, document = await route.handler(
                    RestRequest(principal, params, query, received, headers.get("content-type", ""))
                )
        except ServiceUnavailable as error:
            # A route's answers are JSON, this one too; the client may try again.
            return 503, "application/json", json_body({"error": str(error)}), [RETRY_AFTER]
        if status == 204:  # RFC 9110, 15.3.5: "A 204 response ... cannot contain content"
            return 204, "application/json", b"", []
        return status, "application/json", json_body(document), []

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
                ("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
                ("access-control-allow-headers", requested),
                ("access-control-max-age", "600"),
            ],
        )

    # -- WebSockets (the slow path) --------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        handler = self.hubs.websocket_routes.get(scope["path"])
        if handler is not None:  # a plain protocol (``/v1/stream``), not a hub
            client = scope.get("client") or ("-", 0)
            return await handler(
                AsgiUpgrade(
                    UpgradeRequest(
                        scope["path"], header_map(scope["headers"]),
                        parse_query(scope["query_string"]), f"{client[0]}:{client[1]}",
                        self.settings.outbox_capacity, self.settings.outbox_max_bytes,
                    ),
                    receive,
                    send,
                    socket_of(scope),
                )
            )
        try:
            admission = await self.hubs.admit(
                scope["path"],
                header_map(scope["headers"]),
                parse_query(scope["query_string"]),
                TransportType.WEB_SOCKETS,
            )
        except HttpError as error:
            return await _deny(scope, send, error)
        await send({"type": "websocket.accept"})
        transport = AsgiWebSocket(
            receive,
            send,
            capacity=self.settings.outbox_capacity,
            max_bytes=self.settings.outbox_max_bytes,
            sock=socket_of(scope),
        )
        if isinstance(admission, Elsewhere):
            return await self.hubs.relay.websocket(admission, transport)
        await self.hubs.serve(admission, transport)


def _request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` if it is sane, else a fresh short id (for log lines)."""
    for name, value in scope["headers"]:
        if name.lower() == b"x-request-id":
            return request_id_from(value.decode("latin-1"))
    return request_id_from(None)


async def _until_disconnect(receive: Receive, work: Awaitable[T]) -> T | None:
    """``work``'s result; None if the client goes away first, and then ``work``
    is cancelled: a request that waits (a node's long poll, a dispatched
    command) must not go on, or take anything, for a client that is gone."""
    result: T | HttpError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        try:
            result = await work
        except HttpError as error:  # raised below, outside the nursery, as itself
            result = error
        nursery.cancel_scope.cancel()
    if isinstance(result, HttpError):
        raise result
    return result


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


class TrackedSend:
    """An ASGI ``send`` that remembers whether the response has started, so
    that a request that fails unexpectedly can still be answered 500."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self._failed = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    def fail_soon(self) -> None:
        self._failed = True

    async def answer_failure(self) -> None:
        """500 for a request that failed before its response started."""
        if self._failed and not self.started:
            body = b"Internal server error."
            with contextlib.suppress(Exception):  # the client may be gone
                await respond(self, 500, body, [("connection", "close")])


async def _deny(scope: Scope, send: Send, error: HttpError) -> None:
    """Refuse a WebSocket with an HTTP status (the ASGI denial-response
    extension, which hypercorn offers); without it, a plain close."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await respond(send, error.status, error.text.encode(), error.headers, websocket=True)
