"""The group router: who receives a message sent to a group, a user, a tenant.

docs/auth.md, "Who a connection belongs to": group names are tenant-qualified,
and a server hosting many tenants never delivers one tenant's messages to
another tenant's connections. So every key the router knows embeds a tenant, and is
built by one function per kind (``group_key``, ``user_key``, ``tenant_key``),
never by string formatting at a call site. "All" is the tenant's key: a hub's
``clients.all`` reaches every connection of that hub in the sender's tenant.

``Router`` is the interface (ASP.NET Core's ``HubLifetimeManager``); the
in-memory ``LocalRouter`` is the default, and a backplane implementation can
wrap it so that a publish may come from another process.

A fan-out never awaits a client (STYLE habit 4): it serializes once
(``SerializedMessage``) and calls each member's non-blocking ``send_nowait``.
A member whose outbox is full is evicted after the pass, and nobody waits for it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import attrs
import trio

from ..errors import HubError
from ..failures import error_boundary, report_client_error, report_unexpected
from ..protocol import CloseMessage, EncodeError, HubMessage
from .serialized import SerializedMessage

log = logging.getLogger(__name__)

GroupKey = tuple[str, ...]


def group_key(tenant_id: str, name: str) -> GroupKey:
    return ("group", tenant_id, name)


def user_key(tenant_id: str, user_id: str) -> GroupKey:
    return ("user", tenant_id, user_id)


def tenant_key(tenant_id: str) -> GroupKey:
    return ("tenant", tenant_id)


def key_tenant(key: GroupKey) -> str:
    return key[1]


class Lag(Protocol):
    """How far behind a connection is (its transport's outbox knows)."""

    @property
    def behind_seconds(self) -> float: ...

    @property
    def full_seconds(self) -> float: ...


class Recipient(Protocol):
    """What the router needs from a connection."""

    connection_id: str
    user_id: str
    tenant_id: str

    def send_nowait(self, message: SerializedMessage) -> None:
        """Deliver or queue; ``trio.WouldBlock`` when the outbox is full."""

    def evict_slow_consumer(self) -> None:
        """Close at once: the connection could not keep up with a fan-out."""

    def lag(self) -> Lag:
        """How long the connection has been behind, and full."""

    def request_close(self, message: CloseMessage) -> None:
        """Close politely (send ``message``, then close the transport)."""

    def crashed(self, error: Exception) -> None:
        """Close with an error: something unexpected failed for this connection."""

    async def invoke_client(self, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        """Invoke a client method and wait for its result."""


@attrs.frozen
class RouterStatistics:
    connections: int
    groups: int
    messages_sent: int
    deliveries: int
    evictions: int
    recent_evictions: tuple[Lag, ...]
    """For the latest evictions: how long each connection had been behind."""


class Router(Protocol):
    async def add_connection(self, connection: Recipient) -> None:
        """Register a connection (and whatever it takes for other processes to reach it)."""

    def remove_connection(self, connection: Recipient) -> None:
        """Forget a connection; never waits (evictions happen inside a fan-out)."""

    async def send_group(
        self, key: GroupKey, message: HubMessage, exclude: Collection[str] = ()
    ) -> None: ...

    async def send_groups(
        self, keys: Sequence[GroupKey], message: HubMessage, exclude: Collection[str] = ()
    ) -> None:
        """One message to the members of several groups, each connection once."""
        ...

    async def send_connection(
        self, tenant_id: str, connection_id: str, message: HubMessage
    ) -> None: ...

    async def add_to_group(self, tenant_id: str, connection_id: str, key: GroupKey) -> None: ...

    async def remove_from_group(
        self, tenant_id: str, connection_id: str, key: GroupKey
    ) -> None: ...

    async def invoke_connection(
        self,
        tenant_id: str,
        connection_id: str,
        target: str,
        arguments: tuple[Any, ...],
        timeout: float,
    ) -> Any: ...

    async def close_user_connections(
        self, tenant_id: str, user_id: str, message: CloseMessage
    ) -> int: ...

    def statistics(self) -> RouterStatistics: ...


class LocalRouter:
    """All of one hub's connections in this process, indexed by id and by key."""

    def __init__(self) -> None:
        self._connections: dict[str, Recipient] = {}
        self._members: dict[GroupKey, dict[str, Recipient]] = {}
        self._keys_of: dict[str, set[GroupKey]] = {}
        self._messages_sent = 0
        self._deliveries = 0
        self._evictions = 0
        self._recent_evictions: deque[Lag] = deque(maxlen=20)

    # -- membership ------------------------------------------------------------------------------

    async def add_connection(self, connection: Recipient) -> None:
        self.register(connection)

    def register(self, connection: Recipient) -> None:
        """Register a connection, with its tenant and user keys (docs/auth.md: "Clients
        are auto-joined to their user group on connect")."""
        self._connections[connection.connection_id] = connection
        self._keys_of[connection.connection_id] = set()
        self._join(connection, tenant_key(connection.tenant_id))
        self._join(connection, user_key(connection.tenant_id, connection.user_id))

    def remove_connection(self, connection: Recipient) -> None:
        connection_id = connection.connection_id
        if self._connections.pop(connection_id, None) is None:
            return
        for key in self._keys_of.pop(connection_id, ()):
            members = self._members.get(key)
            if members is not None:
                members.pop(connection_id, None)
                if not members:
                    del self._members[key]

    def _join(self, connection: Recipient, key: GroupKey) -> None:
        self._members.setdefault(key, {})[connection.connection_id] = connection
        self._keys_of[connection.connection_id].add(key)

    async def add_to_group(self, tenant_id: str, connection_id: str, key: GroupKey) -> None:
        connection = self._find(tenant_id, connection_id)
        if key_tenant(key) != connection.tenant_id:
            raise HubError("A connection can only join groups of its own tenant.")
        self._join(connection, key)

    async def remove_from_group(self, tenant_id: str, connection_id: str, key: GroupKey) -> None:
        self._find(tenant_id, connection_id)
        members = self._members.get(key)
        if members is not None and members.pop(connection_id, None) is not None:
            self._keys_of[connection_id].discard(key)
            if not members:
                del self._members[key]

    def _find(self, tenant_id: str, connection_id: str) -> Recipient:
        connection = self._connections.get(connection_id)
        if connection is None or connection.tenant_id != tenant_id:
            raise HubError(f"Connection '{connection_id}' does not exist.")
        return connection

    def members(self, key: GroupKey) -> Collection[Recipient]:
        return self._members.get(key, {}).values()

    def member_ids(self, key: GroupKey) -> Collection[str]:
        return self._members.get(key, {}).keys()

    def members_by_id(self, key: GroupKey) -> dict[str, Recipient] | None:
        """The members of ``key`` as ``deliver`` takes them (not a copy: do not change it)."""
        return self._members.get(key)

    def find(self, tenant_id: str, connection_id: str) -> Recipient | None:
        """This process's connection of that id and tenant, if it has it."""
        connection = self._connections.get(connection_id)
        return connection if connection is not None and connection.tenant_id == tenant_id else None

    # -- sending ---------------------------------------------------------------------------------

    async def send_group(
        self, key: GroupKey, message: HubMessage, exclude: Collection[str] = ()
    ) -> None:
        self.deliver(self._members.get(key), SerializedMessage(message), exclude)

    async def send_groups(
        self, keys: Sequence[GroupKey], message: HubMessage, exclude: Collection[str] = ()
    ) -> None:
        members: dict[str, Recipient] = {}
        for key in keys:
            members.update(self._members.get(key, {}))
        self.deliver(members, SerializedMessage(message), exclude)

    async def send_connection(
        self, tenant_id: str, connection_id: str, message: HubMessage
    ) -> None:
        connection = self._connections.get(connection_id)
        if connection is not None and connection.tenant_id == tenant_id:
            self.deliver({connection_id: connection}, SerializedMessage(message))

    def deliver(
        self,
        members: dict[str, Recipient] | None,
        message: SerializedMessage,
        exclude: Collection[str] = (),
    ) -> None:
        """The fan-out pass: hand ``message`` to every member without waiting.

        Members whose outbox is full are collected and evicted after the pass,
        so the member dict is not changed while it is being walked.
        """
        self._messages_sent += 1
        if not members:
            return
        slow: list[Recipient] = []
        broken: list[tuple[Recipient, Exception]] = []
        unencodable: EncodeError | None = None
        delivered = 0
        for connection_id, connection in members.items():
            if exclude and connection_id in exclude:
                continue
            try:
                connection.send_nowait(message)
                delivered += 1
            except trio.WouldBlock:
                slow.append(connection)
            except EncodeError as error:  # this member's protocol cannot carry it
                unencodable = error
            except Exception as error:  # a bug: that member alone pays for it
                broken.append((connection, error))
        self._deliveries += delivered
        if unencodable is not None:
            report_client_error(log, "a message was not sent to some members", str(unencodable))
        for connection, error in broken:
            report_unexpected(log, "a fan-out to one connection", error)
            with error_boundary(log, "closing a connection a fan-out failed on"):
                connection.crashed(error)
            self.remove_connection(connection)
        for connection in slow:
            self._evictions += 1
            lag = connection.lag()
            self._recent_evictions.append(lag)
            log.warning(
                "evicting slow consumer %s (behind for %.3f s, full for %.3f s)",
                connection.connection_id,
                lag.behind_seconds,
                lag.full_seconds,
            )
            connection.evict_slow_consumer()
            # Out of every group now, not when its task gets round to it.
            self.remove_connection(connection)

    # -- one connection --------------------------------------------------------------------------

    async def invoke_connection(
        self,
        tenant_id: str,
        connection_id: str,
        target: str,
        arguments: tuple[Any, ...],
        timeout: float,
    ) -> Any:
        connection = self._find(tenant_id, connection_id)
        return await connection.invoke_client(target, arguments, timeout)

    async def close_user_connections(
        self, tenant_id: str, user_id: str, message: CloseMessage
    ) -> int:
        """Close every connection of one user (token revocation needs it)."""
        connections = list(self.members(user_key(tenant_id, user_id)))
        for connection in connections:
            connection.request_close(message)
        return len(connections)

    def all_connections(self) -> list[Recipient]:
        return list(self._connections.values())

    def statistics(self) -> RouterStatistics:
        return RouterStatistics(
            connections=len(self._connections),
            groups=sum(1 for key in self._members if key[0] == "group"),
            messages_sent=self._messages_sent,
            deliveries=self._deliveries,
            evictions=self._evictions,
            recent_evictions=tuple(self._recent_evictions),
        )
