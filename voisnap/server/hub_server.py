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
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import attrs
import trio
from prometheus_client import CollectorRegistry

from ..backplane import Backplane, MemoryBackplane
from ..config import Settings
from ..errors import AuthenticationError
from ..failures import error_boundary
from ..hubs.closing import shutting_down
from ..hubs.connection import HubConnection, new_connection_id
from ..hubs.endpoint import HubEndpoint
from ..hubs.heartbeat import run_heartbeat
from ..logs import log_context
from ..metrics import ScrapedCollector
from ..principal import Principal
from ..routing import names
from ..routing.cluster import Cluster
from ..transports.base import (
    ALL_TRANSPORTS,
    PostingTransport,
    Transport,
    TransportType,
    parse_hub_transports,
)
from .auth import JwksAuthority, TokenAuthority, token_from
from .collector import collector_statistics
from .connections import NO_CONNECTION, ConnectionRegistry, NegotiatedConnection, check_owner
from .http import HttpError
from .relay import Relay
from .relayed import TransportListener
from .routes import Route
from .shared import SharedNegotiations

# How long forgetting a finished connection's shared records may take.
FORGET_TIMEOUT = 2.0
READINESS_TIMEOUT = 2.0


def make_backplane(settings: Settings) -> Backplane:
    """Redis when several processes serve the application; otherwise the
    in-memory backplane (one process, and no server of any kind to run)."""
    if settings.redis_url is None:
        return MemoryBackplane()
    from ..backplane.redis import RedisBackplane  # loads coredis only when it is used

    return RedisBackplane(settings.redis_url)

log = logging.getLogger(__name__)


Service = Callable[..., Awaitable[None]]
PrincipalCheck = Callable[[str, Principal], Awaitable[None]]
"""``check(path, principal)``: raises ``HttpError`` if ``principal`` may not use ``path``."""


SOMEWHERE = "?"
API_TOKEN_PREFIX = "rc_"
"""How an API token starts (docs/api-tokens.md): REST takes it, the hubs do not."""


@attrs.frozen
class Elsewhere:
    """A request for a connection this process does not own: another process
    does (``owner``: its id, or ``SOMEWHERE`` when only the process itself
    knows, its records in Redis lost), or none has started it yet (``owner`` is
    None). It is relayed (``server.relay``)."""

    token: str
    hub_path: str
    principal: Principal
    owner: str | None


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
    query: Mapping[str, str] = attrs.field(factory=dict)
    """The request's query, without the access token and the connection token:
    what the hub sees as ``Context.query`` (``?agentId=...``)."""

    @property
    def connection_token(self) -> str | None:
        return None if self.negotiated is None else self.negotiated.connection_token


class HubServer:
    def __init__(
        self, settings: Settings, authority: TokenAuthority | JwksAuthority
    ) -> None:
        self.settings = settings
        self.authority = authority
        self.endpoints: dict[str, HubEndpoint] = {}
        self.cluster = Cluster(make_backplane(settings), timeout=settings.cross_process_timeout)
        self.registry = ConnectionRegistry(settings.disconnect_timeout)
        self.shared = SharedNegotiations(self.cluster.backplane, settings.disconnect_timeout)
        self.relay = Relay(self)
        self._relay_listeners: dict[str, TransportListener] = {}
        self.connections: set[HubConnection] = set()
        self._background: trio.Nursery | None = None
        self.services: list[Service] = [self.cluster.run]
        """Run for the server's whole life, started before it listens (in order)."""
        self.readiness_checks: dict[str, Callable[[], Awaitable[None]]] = {}
        """What the apps depend on (the store), checked by ``GET /readyz``."""
        self.routes: list[Route] = []
        self.websocket_routes: dict[str, Callable[[Any], Awaitable[None]]] = {}
        """REST routes of the apps (``server.routes``)."""
        self.statistics_sources: dict[str, Callable[[], Any]] = {}
        # This server's scraped figures (one registry per server: a process
        # that assembles several, as the tests do, shows each its own).
        self.metrics_registry = CollectorRegistry(auto_describe=False)
        self.metrics_registry.register(ScrapedCollector(self.metrics_figures))
        """The apps' own counters, each under its name in ``GET /stats``."""
        self.principal_checks: list[PrincipalCheck] = []
        self.api_tokens: Callable[[str], Awaitable[Principal]] | None = None
        """The apps' reading of an API token (``rc_...``) for REST: a Principal,
        or AuthenticationError. None: the server knows no API tokens."""
        """The apps' own say on who may use a path (a hub or a REST route), after
        the token was verified: each raises ``HttpError`` to refuse."""
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
            router=self.cluster.router_for(path),
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

    def add_websocket_route(self, path: str, handler: Callable[[Any], Awaitable[None]]) -> None:
        """A plain WebSocket protocol at ``path`` (not a hub): ``handler`` gets the
        ``transports.plain.Upgrade`` from either door and answers it."""
        self.websocket_routes[path] = handler

    def endpoint_for(self, path: str) -> HubEndpoint | None:
        return self.endpoints.get(path.rstrip("/") or "/")

    # -- the checks ------------------------------------------------------------------------------

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """A request without ``Origin`` is not from a browser and is allowed."""
        origin = headers.get("origin")
        if origin is not None and origin not in self.settings.cors_origins:
            raise HttpError(403, f"Origin '{origin}' is not allowed.")

    async def admit_principal(self, path: str, principal: Principal) -> None:
        """The apps' checks (``principal_checks``) of who may use ``path``."""
        for check in self.principal_checks:
            await check(path, principal)

    async def authenticate(
        self, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Principal:
        """A hub's request: a JWT. Seed 002: "API keys cannot be used for
        real-time hub connections — only JWT access tokens". Async: with
        ``--jwt-jwks-url`` an unknown key id fetches the provider's keys."""
        token = _token_of(headers, query)
        if token.startswith(API_TOKEN_PREFIX):
            raise _unauthorized(
                "API tokens cannot be used for hub connections: use a JWT access token."
            )
        try:
            return await self.authority.verify_async(token)
        except AuthenticationError as error:
            raise _unauthorized(str(error)) from None

    async def authenticate_request(
        self, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Principal:
        """A REST request: a JWT, or an API token the apps know (``api_tokens``)."""
        try:
            return await self.principal_of(_token_of(headers, query))
        except AuthenticationError as error:
            raise _unauthorized(str(error)) from None

    async def principal_of(self, token: str) -> Principal:
        """Who a JWT or an API token speaks for; AuthenticationError if nobody."""
        if token.startswith(API_TOKEN_PREFIX) and self.api_tokens is not None:
            return await self.api_tokens(token)
        return await self.authority.verify_async(token)

    async def negotiate(
        self, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        """TransportProtocols.md, "POST [endpoint-base]/negotiate"."""
        endpoint = self._endpoint_or_404(path)
        principal = await self.authenticate(headers, query)
        await self.admit_principal(endpoint.path, principal)
        version = _negotiate_version(query.get("negotiateVersion"))
        if isinstance(version, str):
            return {"error": version}
        # Stateful reconnect only when the client asks and the server allows
        # it: the JS client refuses a server that offers it unasked.
        stateful = self.settings.stateful_reconnect and query.get("useStatefulReconnect") == "true"
        negotiated = self.registry.negotiate(endpoint.path, principal, version, stateful=stateful)
        await self.shared.share(negotiated)  # valid on every process: no sticky sessions
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

    async def admit(
        self,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        transport_type: TransportType,
    ) -> Admission | Elsewhere:
        """Run the checks for a transport request; HttpError if one fails;
        ``Elsewhere`` if another process owns the connection."""
        endpoint = self._endpoint_or_404(path)
        if transport_type not in endpoint.transports:
            raise HttpError(
                404, f"{transport_type.value} transport not supported by this end point type"
            )
        self.check_origin(headers)
        principal = await self.authenticate(headers, query)
        await self.admit_principal(endpoint.path, principal)
        token = query.get("id")
        if not token:
            if transport_type is not TransportType.WEB_SOCKETS:
                raise HttpError(400, "Connection ID required")
            # skipNegotiation: the client opened the WebSocket without negotiating.
            return Admission(endpoint, principal, new_connection_id(), None, query=hub_query(query))
        elsewhere = await self._claim(token, endpoint.path, principal)
        if elsewhere is not None:
            return elsewhere
        negotiated, first = self.registry.claim(token, endpoint.path, principal, transport_type)
        if not first and not _may_come_back(negotiated, transport_type):
            raise HttpError(409, "Another transport is already using this connection.")
        return Admission(
            endpoint, principal, negotiated.connection_id, negotiated, first, hub_query(query)
        )

    async def find(
        self, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> NegotiatedConnection | Elsewhere:
        """The connection a send or a close (POST, DELETE) is for: this
        process's, or ``Elsewhere`` (owned by another process, or started by none)."""
        endpoint = self._endpoint_or_404(path)
        self.check_origin(headers)
        principal = await self.authenticate(headers, query)
        token = query.get("id")
        if not token:
            raise HttpError(400, "Connection ID required")
        if self.registry.is_active(token):
            return self.registry.find(token, endpoint.path, principal)
        owner = await self.shared.owner(token)
        if owner is not None and owner != self.shared.node_id:
            return Elsewhere(token, endpoint.path, principal, owner)
        if self.registry.is_pending(token):
            self.registry.find(token, endpoint.path, principal)  # 403 for another user
            return Elsewhere(token, endpoint.path, principal, None)
        record = await self.shared.fetch(token)
        if record is None:
            return await self._somewhere(Elsewhere(token, endpoint.path, principal, SOMEWHERE))
        if record.hub_path != endpoint.path:
            raise HttpError(404, NO_CONNECTION)
        check_owner(record.user_id, record.tenant_id, principal)
        return Elsewhere(token, endpoint.path, principal, None)

    async def _somewhere(self, elsewhere: Elsewhere) -> Elsewhere:
        """A token nobody here or in Redis knows: a process may still own it
        (Redis restarted and forgot); it answers on the connection's relay
        channel. 404 if none does, 403 if the asker may not use it."""
        answer = await self.relay.probe(elsewhere)
        if answer.status != 200:
            raise HttpError(answer.status, answer.body.decode(errors="replace"))
        return elsewhere

    async def _claim(self, token: str, hub_path: str, principal: Principal) -> Elsewhere | None:
        """Before a transport request is served: None if this process owns the
        connection (or nobody does, for a 404 to come), ``Elsewhere`` if another does."""
        if self.registry.is_active(token):
            return None
        if not self.registry.is_pending(token):
            record = await self.shared.fetch(token)
            if record is None:
                owner = await self.shared.owner(token)
                if owner is not None:
                    return Elsewhere(token, hub_path, principal, owner)
                return await self._somewhere(Elsewhere(token, hub_path, principal, SOMEWHERE))
            if record.hub_path != hub_path:
                return None  # the registry answers 404
            check_owner(record.user_id, record.tenant_id, principal)
            self.registry.adopt(token, record.connection_id, hub_path, principal, record.stateful)
        self.registry.find(token, hub_path, principal)  # 404 or 403 before anything is claimed
        owner = await self.shared.claim(token)
        if owner is None:
            return None
        self.registry.drop_pending(token)
        if owner == self.shared.node_id:
            raise HttpError(404, NO_CONNECTION)  # this process ran it, and it has ended
        return Elsewhere(token, hub_path, principal, owner)

    def _endpoint_or_404(self, path: str) -> HubEndpoint:
        endpoint = self.endpoint_for(path)
        if endpoint is None:
            raise HttpError(404, "Not Found")
        return endpoint

    # -- running connections ---------------------------------------------------------------------

    def attach(self, nursery: trio.Nursery) -> None:
        """Where connections that outlive their first request (long polling) run."""
        self._background = nursery

    async def bind(self, admission: Admission, transport: PostingTransport) -> None:
        """Make a posting transport (Server-Sent Events, long polling) the one
        this connection's POSTs and polls find, with any bytes POSTed before it
        existed. Call it before telling the client the transport is open, or its
        first POST could miss it."""
        negotiated = admission.negotiated
        assert negotiated is not None, "posting transports always negotiate"
        await self._listen_for_relays(negotiated)
        negotiated.use(transport, early=await self.shared.take_early(negotiated.connection_token))

    def serve_in_background(self, admission: Admission, transport: Transport) -> None:
        assert self._background is not None, "attach() a nursery first"
        self._background.start_soon(self.serve, admission, transport)

    async def serve(self, admission: Admission, transport: Transport) -> None:
        """Run one admitted connection on ``transport`` until it ends, inside
        its own error boundary (long polling runs it in a shared nursery)."""
        context = log_context(
            connection_id=admission.connection_id,
            hub=admission.endpoint.path,
            user_id=admission.principal.user_id,
            tenant_id=admission.principal.tenant_id,
        )
        with context, error_boundary(log, "a hub connection", lambda _: transport.abort()):
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
            query=admission.query,
        )
        if negotiated is not None:
            negotiated.use(transport, connection)
            await self._listen_for_relays(negotiated)
        if not self.connections:
            self._idle = trio.Event()
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if negotiated is not None:
                await self._forget(negotiated.connection_token)
            if not self.connections:
                self._idle.set()

    # -- requests that arrive at one process for another's connection ---------------------------

    async def _listen_for_relays(self, negotiated: NegotiatedConnection) -> None:
        """Requests for this connection that reach other processes come here."""
        token = negotiated.connection_token
        if token not in self._relay_listeners:
            listener = self._relay_listeners[token] = TransportListener(self, negotiated)
            await self.cluster.subscriptions.hold(names.relay_channel(token), listener)

    async def _forget(self, token: str) -> None:
        """The connection ended: its token is no good here, nor anywhere else.
        Shared records go first: until they are gone, requests for the token
        still find it here, ended, rather than nowhere (and a process could
        start it again)."""
        with trio.CancelScope(shield=True), trio.move_on_after(FORGET_TIMEOUT):
            await self.shared.forget(token)
        self.registry.release(token)
        if self._relay_listeners.pop(token, None) is not None:
            self.cluster.subscriptions.release(names.relay_channel(token))

    def adopt_in_background(self, negotiated: NegotiatedConnection, transport: Transport) -> None:
        """A stateful client came back through another process (``relayed``)."""
        assert self._background is not None, "attach() a nursery first"
        self._background.start_soon(self._adopt, negotiated, transport)

    async def _adopt(self, negotiated: NegotiatedConnection, transport: Transport) -> None:
        with error_boundary(log, "a relayed WebSocket", lambda _: transport.abort()):
            connection = negotiated.connection
            if connection is None:
                return transport.abort()
            negotiated.use(transport)
            await connection.adopt(transport)

    async def readiness(self) -> dict[str, dict[str, str]]:
        """What this process depends on that does not answer now, by name:
        empty when it is ready to serve (``GET /readyz``)."""
        checks = {"backplane": self.cluster.backplane.check, **self.readiness_checks}
        unavailable: dict[str, str] = {}
        for name, check in checks.items():
            try:
                with trio.fail_after(READINESS_TIMEOUT):
                    await check()
            except trio.TooSlowError:
                unavailable[name] = "did not answer in time"
            except Exception as error:  # any failure of a dependency means "not ready"
                unavailable[name] = str(error) or type(error).__name__
        return {"unavailable": unavailable} if unavailable else {}

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

    def metrics_figures(self) -> dict[str, Any]:
        """What ``metrics.ScrapedCollector`` shows, read now (at a scrape)."""
        connections: Counter[tuple[str, str, str]] = Counter()
        depths = []
        for connection in self.connections:
            protocol = connection.wire.protocol.name if connection.wire is not None else "-"
            kind = connection.transport.info.kind.value
            connections[(connection.endpoint.path, kind, protocol)] += 1
            depths.append(connection.transport.outbox.queued)
        gauges = dict(
            item for name, source in self.statistics_sources.items()
            for item in _numbers(name, source())
        )
        return {
            "connections": connections,
            "hubs": {path: attrs.asdict(endpoint.router.statistics())
                     for path, endpoint in self.endpoints.items()},
            "outbox": {"total": sum(depths), "max": max(depths, default=0)},
            "backplane": self.cluster.statistics().get("backplane", {}),
            "gauges": gauges,
        }

    def statistics(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "negotiated": {"pending": self.registry.pending, "active": self.registry.active},
            "gc": collector_statistics(),
            "cluster": self.cluster.statistics(),
            "hubs": {
                path: attrs.asdict(endpoint.router.statistics())
                for path, endpoint in self.endpoints.items()
            },
            **{name: source() for name, source in self.statistics_sources.items()},
        }


def _numbers(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    """The numeric leaves of a statistics document, as ``prefix_key_subkey``
    (snake case), for the metrics' gauges."""
    if prefix.endswith("pid"):
        return  # an id, not a figure
    if isinstance(value, int | float):
        yield prefix, float(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", str(key)).lower()
            yield from _numbers(f"{prefix}_{name}", inner)


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


TRANSPORT_QUERY = frozenset({"access_token", "id"})


def _token_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    token = token_from(headers, query)
    if token is None:
        raise HttpError(401, "An access token is required.", [("www-authenticate", "Bearer")])
    return token


def _unauthorized(reason: str) -> HttpError:
    return HttpError(401, reason, [("www-authenticate", 'Bearer error="invalid_token"')])
"""What the transports read from a query; a hub sees only the rest."""


def hub_query(query: Mapping[str, str]) -> Mapping[str, str]:
    return {name: value for name, value in query.items() if name not in TRANSPORT_QUERY}
