"""Negotiated connections: connection tokens waiting for, or held by, a transport.

TransportProtocols.md, "POST [endpoint-base]/negotiate": negotiate creates a
connection and returns its public ``connectionId`` and, from negotiate version
1, a secret ``connectionToken`` that every transport request presents as ``id``.
The two are kept apart: the id may be shown to other clients (client results
address connections by id), the token proves ownership.

A token must be used within ``disconnect_timeout`` (ASP.NET's
DisconnectTimeout, 15 s), by the user who negotiated it (using someone else's
token is refused), for the hub it was negotiated for. Its first transport
request binds it to that transport: a WebSocket or an event stream holds it for
as long as it lasts; long polling comes back with it for every poll and send.
When its connection ends the token is forgotten, and reusing it gives 404, as
in ASP.NET Core.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, cast

import attrs
import trio

from ..principal import Principal
from ..transports.base import PostingTransport, Transport, TransportType
from .http import HttpError

if TYPE_CHECKING:
    from ..hubs.connection import HubConnection

NO_CONNECTION = "No Connection with that ID"


@attrs.define(eq=False)
class NegotiatedConnection:
    connection_id: str
    connection_token: str
    hub_path: str
    principal: Principal
    created_at: float
    stateful: bool = False
    """The client asked for stateful reconnect, and the server allows it."""
    transport_type: TransportType | None = None
    """Set by the first transport request."""
    transport: Transport | None = None
    """The transport that holds the token (for requests that come back to it)."""
    connection: HubConnection | None = None
    """The HubConnection, once it runs."""

    def use(
        self, transport: Transport, connection: HubConnection | None = None, early: bytes = b""
    ) -> None:
        """The one place a negotiated connection gets its transport (and its
        HubConnection, when it starts). ``early``: bytes POSTed before it
        started (signalrcore sends its handshake before its first poll), which
        the transport receives first."""
        self.transport = transport
        if connection is not None:
            self.connection = connection
        posting = self.posting_transport()
        if posting is not None and early:
            posting.posts.feed_nowait(early)

    def posting_transport(self) -> PostingTransport | None:
        """The transport, if the client sends by POST (Server-Sent Events, long polling)."""
        transport = self.transport
        if transport is None or transport.info.kind is TransportType.WEB_SOCKETS:
            return None
        return cast(PostingTransport, transport)


def new_secret_id() -> str:
    return secrets.token_urlsafe(16)


class ConnectionRegistry:
    def __init__(self, disconnect_timeout: float) -> None:
        self._timeout = disconnect_timeout
        self._pending: OrderedDict[str, NegotiatedConnection] = OrderedDict()
        self._active: dict[str, NegotiatedConnection] = {}

    def negotiate(
        self, hub_path: str, principal: Principal, version: int, *, stateful: bool = False
    ) -> NegotiatedConnection:
        self.forget_expired()
        connection_id = new_secret_id()
        # Version 0 has no token: the client presents the connection id itself.
        token = new_secret_id() if version >= 1 else connection_id
        negotiated = NegotiatedConnection(
            connection_id=connection_id,
            connection_token=token,
            hub_path=hub_path,
            principal=principal,
            created_at=trio.current_time(),
            stateful=stateful,
        )
        self._pending[token] = negotiated
        return negotiated

    def claim(
        self, token: str, hub_path: str, principal: Principal, transport_type: TransportType
    ) -> tuple[NegotiatedConnection, bool]:
        """The connection ``token`` names, checked against who asks and how;
        True if this request is its first (it starts the connection). Refuses
        with the statuses ASP.NET Core uses."""
        self.forget_expired()
        negotiated = self._active.get(token)
        first = negotiated is None
        if first:
            negotiated = self._pending.get(token)
        negotiated = _checked(negotiated, hub_path, principal)
        if first:
            del self._pending[token]
            self._active[token] = negotiated
            negotiated.transport_type = transport_type
        elif negotiated.transport_type is not transport_type:
            raise HttpError(400, "Cannot change transports mid-connection")
        return negotiated, first

    def find(self, token: str, hub_path: str, principal: Principal) -> NegotiatedConnection:
        """A negotiated connection, started or not (for sends and closes)."""
        self.forget_expired()
        return _checked(self._active.get(token) or self._pending.get(token), hub_path, principal)

    def release(self, token: str) -> None:
        self._active.pop(token, None)

    # -- what other processes negotiated (``server.shared``) -------------------------------------

    def is_active(self, token: str) -> bool:
        """A transport of this process holds the connection."""
        return token in self._active

    def is_pending(self, token: str) -> bool:
        """Negotiated (here, or adopted from another process), not yet started."""
        return token in self._pending

    def adopt(
        self, token: str, connection_id: str, hub_path: str, principal: Principal, stateful: bool
    ) -> None:
        """A negotiation made by another process, whose first transport request
        arrived here: pending, as if negotiated here."""
        self._pending[token] = NegotiatedConnection(
            connection_id=connection_id,
            connection_token=token,
            hub_path=hub_path,
            principal=principal,
            created_at=trio.current_time(),
            stateful=stateful,
        )

    def drop_pending(self, token: str) -> None:
        """Another process claimed the connection: it is not ours to start."""
        self._pending.pop(token, None)

    def forget_expired(self, now: float | None = None) -> None:
        """Drop negotiations no transport claimed in time (the heartbeat calls
        this every tick, so unclaimed tokens never pile up)."""
        now = trio.current_time() if now is None else now
        deadline = now - self._timeout
        while self._pending:
            token, oldest = next(iter(self._pending.items()))
            if oldest.created_at > deadline:
                break
            del self._pending[token]

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return len(self._active)


def _checked(
    negotiated: NegotiatedConnection | None, hub_path: str, principal: Principal
) -> NegotiatedConnection:
    """``negotiated`` if it exists, for this hub, and belongs to ``principal``:
    404 and 403 otherwise, as ASP.NET Core answers."""
    if negotiated is None or negotiated.hub_path != hub_path:
        raise HttpError(404, NO_CONNECTION)
    owner = negotiated.principal
    check_owner(owner.user_id, owner.tenant_id, principal)
    return negotiated


def check_owner(user_id: str, tenant_id: str, principal: Principal) -> None:
    """403 unless ``principal`` is the user who negotiated the connection."""
    if (user_id, tenant_id) != (principal.user_id, principal.tenant_id):
        raise HttpError(403, "The connection token belongs to another user.")
