"""The HTTP side of the hub transports: Server-Sent Events and long polling.

TransportProtocols.md, "Server-Sent Events" and "Long Polling"; the statuses
are the ones the official clients expect (docs/protocol/transports.md):

- ``GET {hub}?id=`` with ``Accept: text/event-stream``: the event stream;
- ``GET {hub}?id=`` otherwise: a long poll. The first one starts the connection
  and returns at once (200, empty); later ones wait for messages;
- ``POST {hub}?id=``: client-to-server records (200, empty body), for either;
  405 if the connection is a WebSocket;
- ``DELETE {hub}?id=``: ends a long-polling connection (202).

Every request carries the access token again, and must come from the user who
negotiated the connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import cast

import trio

from ..asgi import Receive, Scope, Send
from ..errors import ConnectionClosed
from ..transports.base import TransportType
from ..transports.long_polling import LongPolling
from ..transports.sse import ServerSentEvents
from .connections import NO_CONNECTION, NegotiatedConnection
from .http import TEXT, Headers, HttpError, cors_headers, header_map, parse_query, respond
from .hub_server import Elsewhere, HubServer
from .hypercorn_bridge import socket_of
from .relay_commands import Answer
from .request_body import HUB_POST_LIMIT, body_chunks

log = logging.getLogger(__name__)

NO_CACHE = [
    ("cache-control", "no-cache, no-store"),
    ("pragma", "no-cache"),
    ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
]
OCTET_STREAM = "application/octet-stream"


class HttpTransports:
    def __init__(self, hubs: HubServer) -> None:
        self.hubs = hubs
        self.settings = hubs.settings

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request to a hub path that is not a WebSocket upgrade."""
        headers = header_map(scope["headers"])
        cors = cors_headers(headers.get("origin"), self.settings.cors_origins)
        query = parse_query(scope["query_string"])
        timeout = self.settings.request_body_timeout
        request = Request(scope, headers, query, receive, send, cors, timeout)
        try:
            match scope["method"]:
                case "GET" if "text/event-stream" in headers.get("accept", ""):
                    await self._event_stream(request)
                case "GET":
                    await self._poll(request)
                case "POST":
                    await self._post(request)
                case "DELETE":
                    await self._delete(request)
                case _:
                    raise HttpError(405, "Method Not Allowed")
        except HttpError as error:
            await request.respond(
                error.status, error.text.encode(), headers=error.headers, content_type=TEXT
            )

    # -- Server-Sent Events -------------------------------------------------------------------

    async def _event_stream(self, request: Request) -> None:
        admission = await self.hubs.admit(
            request.path, request.headers, request.query, TransportType.SERVER_SENT_EVENTS
        )
        if isinstance(admission, Elsewhere):
            raise HttpError(409, "Another transport is already using this connection.")
        transport = ServerSentEvents(
            request.receive,
            request.send,
            capacity=self.settings.outbox_capacity,
            max_bytes=self.settings.outbox_max_bytes,
            sock=socket_of(request.scope),
            extra_headers=[(name.encode(), value.encode()) for name, value in request.cors],
        )
        await self.hubs.bind(admission, transport)
        await transport.open()
        await self.hubs.serve(admission, transport)

    # -- long polling -------------------------------------------------------------------------

    async def _poll(self, request: Request) -> None:
        admission = await self.hubs.admit(
            request.path, request.headers, request.query, TransportType.LONG_POLLING
        )
        if isinstance(admission, Elsewhere):
            return await self._relayed_poll(request, admission)
        if admission.first:
            # The first poll starts the connection and returns at once: the
            # client sends its handshake only after it (TransportProtocols.md).
            transport = LongPolling(
                capacity=self.settings.outbox_capacity,
                max_bytes=self.settings.outbox_max_bytes,
                poll_timeout=self.settings.long_polling_timeout,
            )
            await self.hubs.bind(admission, transport)
            self.hubs.serve_in_background(admission, transport)
            return await request.respond_records(b"")
        transport = _long_polling(admission.negotiated)
        if transport is None or transport.closed:
            return await request.respond(204, b"")
        async with trio.open_nursery() as nursery:
            # A client that goes away mid-poll ends the poll: the connection
            # then counts as idle, and the heartbeat reaps it in time.
            nursery.start_soon(_cancel_on_disconnect, request, nursery.cancel_scope)
            ended = await transport.poll(
                request.respond_records,
                socket_of(request.scope),
            )
            if ended is not None:
                await request.respond(204, b"")
            nursery.cancel_scope.cancel()

    async def _relayed_poll(self, request: Request, elsewhere: Elsewhere) -> None:
        """A poll for a connection another process owns: its transport answers."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, request, nursery.cancel_scope)
            answer = await self.hubs.relay.poll(elsewhere)
            if answer.status == 200:
                await request.respond_records(answer.body)
            else:
                await request.respond(answer.status, answer.body, content_type=TEXT)
            nursery.cancel_scope.cancel()

    async def _delete(self, request: Request) -> None:
        negotiated = await self.hubs.find(request.path, request.headers, request.query)
        if isinstance(negotiated, Elsewhere):
            return await self._answer(request, await self.hubs.relay.delete(negotiated))
        transport = _long_polling(negotiated)
        if transport is None:
            raise HttpError(400, "DELETE is only for long polling connections.")
        transport.delete()
        await request.respond(202, b"")

    # -- sends, for both ----------------------------------------------------------------------

    async def _post(self, request: Request) -> None:
        negotiated = await self.hubs.find(request.path, request.headers, request.query)
        if isinstance(negotiated, Elsewhere):
            # Another process owns the connection, or none has started it yet
            # (the bytes then wait for whichever will): the whole body goes there.
            body = b"".join([chunk async for chunk in request.body()])
            return await self._answer(request, await self.hubs.relay.post(negotiated, body))
        if negotiated.transport_type is TransportType.WEB_SOCKETS:
            raise HttpError(405, "POST requests are not allowed for WebSocket connections.")
        transport = negotiated.posting_transport()
        if transport is None:
            raise HttpError(404, NO_CONNECTION)  # claimed here, and already gone
        try:
            await transport.posts.post(request.body())
        except ConnectionClosed:
            raise HttpError(404, NO_CONNECTION) from None
        await request.respond(200, b"")

    @staticmethod
    async def _answer(request: Request, answer: Answer) -> None:
        """What the process that owns the connection answered."""
        content_type = TEXT if answer.body else None
        await request.respond(answer.status, answer.body, content_type=content_type)


def _long_polling(negotiated: NegotiatedConnection | None) -> LongPolling | None:
    """The connection's long-polling transport, if that is what it uses (a
    connection claimed by a poll is only ever given a ``LongPolling``)."""
    if negotiated is None or negotiated.transport_type is not TransportType.LONG_POLLING:
        return None
    return cast(LongPolling, negotiated.transport)


async def _cancel_on_disconnect(request: Request, scope: trio.CancelScope) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


class Request:
    """One ASGI HTTP request, with what the handlers above need of it."""

    def __init__(
        self,
        scope: Scope,
        headers: dict[str, str],
        query: dict[str, str],
        receive: Receive,
        send: Send,
        cors: list[tuple[str, str]],
        body_timeout: float,
    ) -> None:
        self.scope = scope
        self.path: str = scope["path"]
        self.headers = headers
        self.query = query
        self.receive = receive
        self.send = send
        self.cors = cors
        self.body_timeout = body_timeout

    def body(self) -> AsyncIterator[bytes]:
        """The POSTed records as they arrive, within the hub POST limit and
        the body deadline (``request_body``)."""
        return body_chunks(self.receive, self.headers, HUB_POST_LIMIT, self.body_timeout)

    async def respond(
        self, status: int, body: bytes, *, headers: Headers = (), content_type: str | None = None
    ) -> None:
        await respond(self.send, status, body, [*headers, *self.cors], content_type=content_type)

    async def respond_records(self, body: bytes) -> None:
        """A poll's 200: the records (raw, also for binary protocols), never cached."""
        await self.respond(200, body, headers=NO_CACHE, content_type=OCTET_STREAM)
