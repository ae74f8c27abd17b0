"""The hubs of one server, and the steps every transport request goes through.

``HubServer`` is what both doors share: voisnap's own WebSocket path (the front
door) and the ASGI app (negotiate, Server-Sent Events, long polling, and
WebSockets that arrive through hypercorn). Admitting a transport request is the
same checks in the same order whichever door it came in by:

1. the path names a mounted hub that offers this transport (else 404);
2. a browser's ``Origin`` is on the allowed list (else 403);
3. the access token is valid (else 401: no connection is created);
4. the ``id`` names a connection this user negotiated for this hub, or there is
   no ``id`` and the client skipped negotiation (WebSockets only); a second
   request is a long poll, or a stateful client coming back on a new WebSocket
   (else 400, 403, 404 or 409).

It also holds what the apps add: background services (the store, the task
runtime) and REST routes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from ..config import Settings
from ..errors import AuthenticationError
from ..failures import error_boundary
from ..hubs.closing import shutting_down
from ..hubs.connection import HubConnection, new_connection_id
from ..hubs.endpoint import HubEndpoint
from ..hubs.heartbeat import run_heartbeat
from ..principal import Principal
from ..transports.base import (
    ALL_TRANSPORTS,
    PostingTransport,
    Transport,
    TransportType,
    parse_hub_transports,
)
from .auth import TokenAuthority, token_from
from .connections import ConnectionRegistry, NegotiatedConnection
from .http import HttpError
from .routes import Route

log = logging.getLogger(__name__)


Service = Callable[..., Awaitable[None]]


@attrs.frozen
class Admission:
    """A transport request that passed every check: what its connection will be."""

    endpoint: HubEndpoint
    principal: Principal
    connection_id: str
    negotiated: NegotiatedConnection | None
    """None when the client skipped negotiation (WebSockets only)."""
    first: bool = True
    """This request starts the connection (long polling comes back with more)."""

    @property
    def connection_token(self) -> str | None:
        return None if self.negotiated is None else self.negotiated.connection_token


class HubServer:
    def __init__(self, settings: Settings, authority: TokenAuthority) -> None:
        self.settings = settings
        self.authority = authority
        self.endpoints: dict[str, HubEndpoint] = {}
        self.registry = ConnectionRegistry(settings.disconnect_timeout)
        self.connections: set[HubConnection] = set()
        self._background: trio.Nursery | None = None
        self.services: list[Service] = []
        """Run for the server's whole life, started before it listens (in order)."""
        self.routes: list[Route] = []
        """REST routes of the apps (``server.routes``)."""
        self._hub_transports = parse_hub_transports(settings.hub_transports)
        self._idle = trio.Event()
        self._idle.set()

    def mount(self, path: str, hub_class: type, services: Any = None) -> HubEndpoint:
        """Serve ``hub_class`` at ``path`` (``/hubs/chat``): one line per hub."""
        path = "/" + path.strip("/")
        endpoint = HubEndpoint(
            path=path,
            hub_class=hub_class,
            settings=self.settings,
            services=services,
            transports=self._hub_transports.get(path, ALL_TRANSPORTS),
        )
        self.endpoints[path] = endpoint
        return endpoint

    def add_service(self, service: Service) -> None:
        """``service(task_status=...)`` runs as long as the server; it calls
        ``task_status.started()`` once the server may start listening."""
        self.services.append(service)

    def add_routes(self, routes: list[Route]) -> None:
        self.routes.extend(routes)

    def endpoint_for(self, path: str) -> HubEndpoint | None:
        return self.endpoints.get(path.rstrip("/") or "/")

    # -- the checks ------------------------------------------------------------------------------

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """A request without ``Origin`` is not from a browser and is allowed."""
        origin = headers.get("origin")
        if origin is not None and origin not in self.settings.cors_origins:
            raise HttpError(403, f"Origin '{origin}' is not allowed.")

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal:
        token = token_from(headers, query)
        if token is None:
            raise HttpError(401, "An access token is required.", [("www-authenticate", "Bearer")])
        try:
            return self.authority.verify(token)
        except AuthenticationError as error:
            raise HttpError(
                401, str(error), [("www-authenticate", 'Bearer error="invalid_token"')]
            ) from None

    def negotiate(
        self, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        """TransportProtocols.md, "POST [endpoint-base]/negotiate"."""
        endpoint = self._endpoint_or_404(path)
        principal = self.authenticate(headers, query)
        version = _negotiate_version(query.get("negotiateVersion"))
        if isinstance(version, str):
            return {"error": version}
        # Stateful reconnect only when the client asks and the server allows
        # it: the JS client refuses a server that offers it unasked.
        stateful = self.settings.stateful_reconnect and query.get("useStatefulReconnect") == "true"
        negotiated = self.registry.negotiate(endpoint.path, principal, version, stateful=stateful)
        response: dict[str, Any] = {
            "negotiateVersion": version,
            "connectionId": negotiated.connection_id,
        }
        if version >= 1:
            response["connectionToken"] = negotiated.connection_token
        response["availableTransports"] = [
            {"transport": t.value, "transferFormats": t.transfer_formats}
            for t in endpoint.transports
        ]
        if stateful:
            response["useStatefulReconnect"] = True
        return response

    def admit(
        self,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        transport_type: TransportType,
    ) -> Admission:
        """Run the checks for a transport request; HttpError if one fails."""
        endpoint = self._endpoint_or_404(path)
        if transport_type not in endpoint.transports:
            raise HttpError(
                404, f"{transport_type.value} transport not supported by this end point type"
            )
        self.check_origin(headers)
        principal = self.authenticate(headers, query)
        token = query.get("id")
        if not token:
            if transport_type is not TransportType.WEB_SOCKETS:
                raise HttpError(400, "Connection ID required")
            # skipNegotiation: the client opened the WebSocket without negotiating.
            return Admission(endpoint, principal, new_connection_id(), None)
        negotiated, first = self.registry.claim(token, endpoint.path, principal, transport_type)
        if not first and not _may_come_back(negotiated, transport_type):
            raise HttpError(409, "Another transport is already using this connection.")
        return Admission(endpoint, principal, negotiated.connection_id, negotiated, first)

    def find(
        self, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> NegotiatedConnection:
        """The running connection a send or a close (POST, DELETE) is for."""
        endpoint = self._endpoint_or_404(path)
        self.check_origin(headers)
        principal = self.authenticate(headers, query)
        token = query.get("id")
        if not token:
            raise HttpError(400, "Connection ID required")
        return self.registry.find(token, endpoint.path, principal)

    def _endpoint_or_404(self, path: str) -> HubEndpoint:
        endpoint = self.endpoint_for(path)
        if endpoint is None:
            raise HttpError(404, "Not Found")
        return endpoint

    # -- running connections ---------------------------------------------------------------------

    def attach(self, nursery: trio.Nursery) -> None:
        """Where connections that outlive their first request (long polling) run."""
        self._background = nursery

    def bind(self, admission: Admission, transport: PostingTransport) -> None:
        """Make a posting transport (Server-Sent Events, long polling) the one
        this connection's POSTs and polls find, with any bytes POSTed before it
        existed. Call it before telling the client the transport is open, or its
        first POST could miss it."""
        assert admission.negotiated is not None, "posting transports always negotiate"
        admission.negotiated.use(transport)

    def serve_in_background(self, admission: Admission, transport: Transport) -> None:
        assert self._background is not None, "attach() a nursery first"
        self._background.start_soon(self.serve, admission, transport)

    async def serve(self, admission: Admission, transport: Transport) -> None:
        """Run one admitted connection on ``transport`` until it ends, inside
        its own error boundary (long polling runs it in a shared nursery)."""
        with error_boundary(log, "a hub connection", lambda _: transport.abort()):
            await self._serve(admission, transport)

    async def _serve(self, admission: Admission, transport: Transport) -> None:
        negotiated = admission.negotiated
        if negotiated is not None and not admission.first:
            # A stateful client coming back on a new WebSocket.
            assert negotiated.connection is not None
            negotiated.use(transport)
            return await negotiated.connection.adopt(transport)
        connection = HubConnection(
            endpoint=admission.endpoint,
            transport=transport,
            principal=admission.principal,
            connection_id=admission.connection_id,
            stateful=negotiated is not None and negotiated.stateful,
        )
        if negotiated is not None:
            negotiated.use(transport, connection)
        if not self.connections:
            self._idle = trio.Event()
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if admission.connection_token is not None:
                self.registry.release(admission.connection_token)
            if not self.connections:
                self._idle.set()

    async def run_heartbeat(self) -> None:
        """Keep-alive, client timeouts and token expiry for every connection."""
        await run_heartbeat(lambda: self.connections, self.settings, self.registry.forget_expired)

    async def wait_idle(self) -> None:
        """Until no connection is open."""
        await self._idle.wait()

    async def close_all(self) -> None:
        """Graceful shutdown: every client gets a Close that invites it to
        reconnect (to this server once it is back, or to another)."""
        for connection in list(self.connections):
            connection.close(shutting_down())
        with trio.move_on_after(self.settings.shutdown_timeout):
            await self._idle.wait()

    def statistics(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "negotiated": {"pending": self.registry.pending, "active": self.registry.active},
            "hubs": {
                path: attrs.asdict(endpoint.router.statistics())
                for path, endpoint in self.endpoints.items()
            },
        }


def _may_come_back(negotiated: NegotiatedConnection, transport_type: TransportType) -> bool:
    """A second request for a connection: long polling always comes back; a
    WebSocket may, for a connection that does stateful reconnect."""
    if transport_type is TransportType.LONG_POLLING:
        return True
    connection = negotiated.connection
    return (
        transport_type is TransportType.WEB_SOCKETS
        and connection is not None
        and connection.resumable
    )


def _negotiate_version(raw: str | None) -> int | str:
    """The version to answer with, or an error text (sent with status 200, as
    ASP.NET Core does). Absent means 0: the Python clients send none."""
    if raw is None:
        return 0
    try:
        version = int(raw)
    except ValueError:
        return "The client requested a non-integer protocol version."
    if version < 0:
        return (
            f"The client requested version '{version}', "
            "but the server does not support this version."
        )
    return min(version, 1)
