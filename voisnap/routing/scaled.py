"""One hub's router across processes: ASP.NET Core's ``RedisHubLifetimeManager``.

``BackplaneRouter`` is the ``Router`` hubs use when voisnap runs as several
processes (and, over an in-memory backplane, when it runs as one). It wraps a
``LocalRouter`` for this process's own connections and reaches the others'
through the ``Cluster``'s backplane:

- a send to a group, a user or the tenant is delivered here first (serialized
  once per protocol, as always), then published once on that key's channel
  (``names.channel``); every other process subscribed to it delivers the same
  command to its own members (``GroupListener``). Handle locally, then publish,
  as ASP.NET and python-socketio do;
- this process listens to a channel while it has members for it
  (``Subscriptions``): its connections' tenant, user and group channels, and
  each connection's own channel (``ConnectionListener``);
- an operation on a connection held by another process (join or leave a group,
  send to it, invoke a client result, close it) is a request on that
  connection's channel, answered by its owner or failing after ``timeout``;
  no subscriber means no such connection, in this tenant, anywhere;
- closing a user's connections asks every other live process (``Presence``).

While the backplane is down, every process goes on delivering to its own
connections; what would have gone to the others is dropped (at-most-once, as
REST catch-up covers durable data), and cross-process operations fail with a
clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..backplane import (
    BackplaneError,
    BackplaneUnavailable,
    NoSubscriber,
    RequestRefused,
    RequestTimeout,
)
from ..errors import HubError
from ..failures import report_client_error
from ..protocol import CloseMessage, HubMessage, InvocationMessage
from . import names, remote
from .router import (
    GroupKey,
    LocalRouter,
    Recipient,
    RouterStatistics,
    key_tenant,
    tenant_key,
    user_key,
)
from .serialized import SerializedMessage

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger(__name__)

# A client result waits ``timeout``; its answer needs a moment more to come back.
REPLY_MARGIN = 1.0


class BackplaneRouter:
    def __init__(self, hub: str, cluster: Cluster) -> None:
        self.local = LocalRouter()
        self._hub = hub
        self._cluster = cluster
        self._held: dict[str, set[str]] = {}  # connection id -> the channels it holds

    # -- membership ------------------------------------------------------------------------------

    async def add_connection(self, connection: Recipient) -> None:
        self.local.register(connection)
        self._held[connection.connection_id] = set()
        self._cluster.presence.connected(self._hub, connection)
        tenant = connection.tenant_id
        for key in (tenant_key(tenant), user_key(tenant, connection.user_id)):
            await self._hold(connection, names.channel(self._hub, key), GroupListener(self, key))
        own = names.connection_channel(self._hub, connection.tenant_id, connection.connection_id)
        await self._hold(connection, own, ConnectionListener(self, connection))

    def remove_connection(self, connection: Recipient) -> None:
        self.local.remove_connection(connection)
        held = self._held.pop(connection.connection_id, None)
        if held is None:
            return
        for channel in held:
            self._cluster.subscriptions.release(channel)
        self._cluster.presence.disconnected(connection)

    async def _hold(self, connection: Recipient, channel: str, listener: Any) -> None:
        held = self._held.get(connection.connection_id)
        if held is None or channel in held:
            return  # gone meanwhile, or held already
        held.add(channel)
        await self._cluster.subscriptions.hold(channel, listener)

    async def add_to_group(self, tenant_id: str, connection_id: str, key: GroupKey) -> None:
        connection = self.local.find(tenant_id, connection_id)
        if connection is None:
            return await self._ask(tenant_id, connection_id, remote.Join(key))
        await self.join_here(connection, key)

    async def join_here(self, connection: Recipient, key: GroupKey) -> None:
        if key_tenant(key) != connection.tenant_id:
            raise HubError("A connection can only join groups of its own tenant.")
        await self._hold(connection, names.channel(self._hub, key), GroupListener(self, key))
        await self.local.add_to_group(connection.tenant_id, connection.connection_id, key)

    async def remove_from_group(self, tenant_id: str, connection_id: str, key: GroupKey) -> None:
        connection = self.local.find(tenant_id, connection_id)
        if connection is None:
            return await self._ask(tenant_id, connection_id, remote.Leave(key))
        await self.leave_here(connection, key)

    async def leave_here(self, connection: Recipient, key: GroupKey) -> None:
        await self.local.remove_from_group(connection.tenant_id, connection.connection_id, key)
        channel = names.channel(self._hub, key)
        held = self._held.get(connection.connection_id)
        if held is not None and channel in held:
            held.discard(channel)
            self._cluster.subscriptions.release(channel)

    # -- sending ---------------------------------------------------------------------------------

    async def send_group(
        self, key: GroupKey, message: HubMessage, exclude: Collection[str] = ()
    ) -> None:
        await self.local.send_group(key, message, exclude)
        await self._publish([key], message, exclude)

    async def send_groups(
        self, keys: Sequence[GroupKey], message: HubMessage, exclude: Collection[str] = ()
    ) -> None:
        await self.local.send_groups(keys, message, exclude)
        await self._publish(list(keys), message, exclude)

    async def send_connection(
        self, tenant_id: str, connection_id: str, message: HubMessage
    ) -> None:
        if self.local.find(tenant_id, connection_id) is not None:
            return await self.local.send_connection(tenant_id, connection_id, message)
        if isinstance(message, InvocationMessage):
            command = remote.Send(message.target, message.arguments)
            await self._send_remote(
                names.connection_channel(self._hub, tenant_id, connection_id), command
            )

    async def _publish(
        self, keys: list[GroupKey], message: HubMessage, exclude: Collection[str]
    ) -> None:
        """Once per key's channel: the other processes deliver to their members."""
        if not isinstance(message, InvocationMessage):
            return  # routers only fan out invocations; nothing else crosses processes
        fanout = remote.Fanout(
            message.target, message.arguments, tuple(exclude), tuple(keys) if len(keys) > 1 else ()
        )
        for index, key in enumerate(keys):
            command = fanout if index == 0 else remote.Fanout(
                fanout.target, fanout.arguments, fanout.exclude, fanout.keys, index
            )
            await self._send_remote(names.channel(self._hub, key), command)

    async def _send_remote(self, channel: str, command: remote.Command) -> None:
        try:
            payload = remote.encode(command)
        except ValueError as error:
            report_client_error(log, "a message was not sent to other processes", str(error))
            return
        try:
            await self._cluster.backplane.publish(channel, payload)
        except BackplaneUnavailable as error:
            report_client_error(log, "the backplane is unavailable", str(error))

    def deliver_fanout(self, key: GroupKey, fanout: remote.Fanout) -> None:
        """Another process's fan-out, to this process's members of ``key``. For a
        send to several groups, only members of none of the groups before ``key``."""
        exclude = set(fanout.exclude)
        for earlier in fanout.keys[: fanout.index]:
            exclude.update(self.local.member_ids(earlier))
        message = InvocationMessage(target=fanout.target, arguments=fanout.arguments)
        self.local.deliver(self.local.members_by_id(key), SerializedMessage(message), exclude)

    # -- one connection, wherever it is ----------------------------------------------------------

    async def invoke_connection(
        self,
        tenant_id: str,
        connection_id: str,
        target: str,
        arguments: tuple[Any, ...],
        timeout: float,
    ) -> Any:
        if self.local.find(tenant_id, connection_id) is not None:
            return await self.local.invoke_connection(
                tenant_id, connection_id, target, arguments, timeout
            )
        command = remote.Invoke(target, arguments, timeout)
        reply = await self._ask(tenant_id, connection_id, command, timeout + REPLY_MARGIN)
        return reply.value if isinstance(reply, remote.Result) else None

    async def close_user_connections(
        self, tenant_id: str, user_id: str, message: CloseMessage
    ) -> int:
        """Close every connection of one user, on every process; how many there were."""
        closed = await self.local.close_user_connections(tenant_id, user_id, message)
        command = remote.CloseUser(
            self._hub, tenant_id, user_id, message.error, message.allow_reconnect
        )
        return closed + await self._cluster.ask_every_other_node(command)

    async def _ask(
        self,
        tenant_id: str,
        connection_id: str,
        command: remote.Command,
        timeout: float | None = None,
    ) -> remote.Command | None:
        """A request to the process that holds the connection; HubError if it
        cannot be done, with a text the caller may show."""
        channel = names.connection_channel(self._hub, tenant_id, connection_id)
        timeout = self._cluster.timeout if timeout is None else timeout
        try:
            payload = remote.encode(command)
        except ValueError as error:
            raise HubError(str(error)) from None
        try:
            reply = await self._cluster.backplane.request(channel, payload, timeout)
        except NoSubscriber:
            raise HubError(f"Connection '{connection_id}' does not exist.") from None
        except RequestRefused as refused:
            raise HubError(refused.text) from None
        except RequestTimeout:
            raise HubError(
                f"Connection '{connection_id}' did not answer within {timeout:g} seconds."
            ) from None
        except BackplaneError as error:
            raise HubError(f"Other processes cannot be reached: {error}") from None
        return remote.decode(reply) if reply else None

    def statistics(self) -> RouterStatistics:
        return self.local.statistics()

    def all_connections(self) -> list[Recipient]:
        return self.local.all_connections()


class GroupListener:
    """This process's ear on one group's, user's or tenant's channel."""

    def __init__(self, router: BackplaneRouter, key: GroupKey) -> None:
        self._router = router
        self._key = key

    def message(self, payload: bytes) -> None:
        command = _decode(payload)
        if isinstance(command, remote.Fanout):
            self._router.deliver_fanout(self._key, command)

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("A group's channel takes no requests.")


class ConnectionListener:
    """What other processes ask of one of this process's connections."""

    def __init__(self, router: BackplaneRouter, connection: Recipient) -> None:
        self._router = router
        self._connection = connection

    def message(self, payload: bytes) -> None:
        command = _decode(payload)
        if isinstance(command, remote.Send):
            message = InvocationMessage(target=command.target, arguments=command.arguments)
            connection = self._connection
            self._router.local.deliver(
                {connection.connection_id: connection}, SerializedMessage(message)
            )

    async def request(self, payload: bytes) -> bytes:
        command = _decode(payload)
        try:
            return await self._answer(command)
        except HubError as error:
            raise RequestRefused(str(error)) from None

    async def _answer(self, command: remote.Command | None) -> bytes:
        connection = self._connection
        match command:
            case remote.Join(key=key):
                await self._router.join_here(connection, key)
            case remote.Leave(key=key):
                await self._router.leave_here(connection, key)
            case remote.Invoke(target=target, arguments=arguments, timeout=timeout):
                with trio.fail_after(timeout + REPLY_MARGIN):
                    value = await connection.invoke_client(target, arguments, timeout)
                try:
                    return remote.encode(remote.Result(value))
                except ValueError as error:
                    raise HubError(str(error)) from None
            case remote.Close(error=error, allow_reconnect=allow):
                connection.request_close(CloseMessage(error=error, allow_reconnect=allow))
            case _:
                raise RequestRefused("Not a command for a connection.")
        return b""


def _decode(payload: bytes) -> remote.Command | None:
    try:
        return remote.decode(payload)
    except remote.RemoteCommandError as error:
        report_client_error(log, "a malformed command from the backplane was dropped", str(error))
        return None
