"""The ``Hub`` base class and what a hub method sees: its caller, clients, groups.

A hub is a class whose public ``async def`` methods clients can call::

    class ChatHub(Hub):
        async def send(self, text: str) -> None:
            await self.clients.all.send("Receive", self.context.user_id, text)

    server.mount("/hubs/chat", ChatHub)

As in ASP.NET Core, a hub instance lives for one invocation (or one
connected/disconnected hook): keep per-connection state in
``self.context.items`` and shared state elsewhere.

Every address here is tenant-qualified by the caller's tenant: ``clients.all``
is all of this hub's connections *in the caller's tenant*, ``clients.group(n)``
the group ``n`` of that tenant, and so on (docs/auth.md, "Who a connection belongs to").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from ..protocol import CloseMessage, InvocationMessage
from ..routing.router import GroupKey, Router, group_key, tenant_key, user_key
from .binder import unstructure


@attrs.define
class HubCallerContext:
    """Who is calling: ASP.NET Core's ``HubCallerContext``."""

    connection_id: str
    user_id: str
    tenant_id: str
    roles: frozenset[str]
    claims: Mapping[str, Any]
    items: dict[str, Any]
    """Per-connection state that outlives one invocation."""
    _request_close: Callable[[CloseMessage], None]
    query: Mapping[str, str] = attrs.field(factory=dict)
    """The connection request's query string, without the access token and
    the connection token (ASP.NET: ``Context.GetHttpContext().Request.Query``)."""

    def abort(self, error: str | None = None) -> None:
        """Close the caller's connection (ASP.NET's ``Context.Abort()``); the
        Close message carries ``error``, if given, and no ``allowReconnect``."""
        self._request_close(CloseMessage(error=error))

    def after_reply(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once the current invocation's Completion is sent: a
        method that ends a conversation still answers its caller first, then
        says goodbye and closes (``abort``)."""
        self.after_reply_work.append(work)

    after_reply_work: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list, init=False)


class ClientProxy:
    """A set of connections a message can be sent to."""

    def __init__(self, router: Router, key: GroupKey, exclude: Collection[str] = ()) -> None:
        self._router = router
        self._key = key
        self._exclude = exclude

    async def send(self, method: str, *args: Any) -> None:
        """Invoke ``method`` on every connection of this set, without waiting
        for any of them (a non-blocking invocation: no result comes back)."""
        await self._router.send_group(self._key, invocation_of(method, args), self._exclude)


class SingleClientProxy:
    """One connection: a message can be sent to it, or a result asked of it."""

    def __init__(self, router: Router, tenant_id: str, connection_id: str, timeout: float) -> None:
        self._router = router
        self._tenant_id = tenant_id
        self._connection_id = connection_id
        self._timeout = timeout

    async def send(self, method: str, *args: Any) -> None:
        await self._router.send_connection(
            self._tenant_id, self._connection_id, invocation_of(method, args)
        )

    async def invoke(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Invoke ``method`` on this client and return its result (client results,
        HubProtocol.md "Invocation" with an id sent by the server).

        Raises ``ClientResultError`` if the client answers with an error, does
        not answer within ``timeout`` (default: the ``client_result_timeout``
        setting), or disconnects first.
        """
        arguments = tuple(unstructure(arg) for arg in args)
        return await self._router.invoke_connection(
            self._tenant_id, self._connection_id, method, arguments, timeout or self._timeout
        )


def invocation_of(method: str, args: tuple[Any, ...]) -> InvocationMessage:
    """A non-blocking Invocation of client method ``method``, its arguments as plain data."""
    return InvocationMessage(target=method, arguments=tuple(unstructure(arg) for arg in args))


class HubClients:
    """``self.clients`` inside a hub method (ASP.NET's ``IHubCallerClients``)."""

    def __init__(self, router: Router, context: HubCallerContext, result_timeout: float) -> None:
        self._router = router
        self._context = context
        self._timeout = result_timeout

    @property
    def caller(self) -> SingleClientProxy:
        return self.connection(self._context.connection_id)

    @property
    def all(self) -> ClientProxy:
        return ClientProxy(self._router, tenant_key(self._context.tenant_id))

    @property
    def others(self) -> ClientProxy:
        return ClientProxy(
            self._router, tenant_key(self._context.tenant_id), {self._context.connection_id}
        )

    def connection(self, connection_id: str) -> SingleClientProxy:
        return SingleClientProxy(
            self._router, self._context.tenant_id, connection_id, self._timeout
        )

    def user(self, user_id: str) -> ClientProxy:
        return ClientProxy(self._router, user_key(self._context.tenant_id, user_id))

    def group(self, name: str, *, exclude: Collection[str] = ()) -> ClientProxy:
        return ClientProxy(self._router, group_key(self._context.tenant_id, name), exclude)

    def others_in_group(self, name: str) -> ClientProxy:
        return self.group(name, exclude={self._context.connection_id})


class GroupManager:
    """``self.groups`` inside a hub method: group membership in the caller's tenant."""

    def __init__(self, router: Router, tenant_id: str) -> None:
        self._router = router
        self._tenant_id = tenant_id

    async def add(self, connection_id: str, name: str) -> None:
        await self._router.add_to_group(
            self._tenant_id, connection_id, group_key(self._tenant_id, name)
        )

    async def remove(self, connection_id: str, name: str) -> None:
        await self._router.remove_from_group(
            self._tenant_id, connection_id, group_key(self._tenant_id, name)
        )


class Hub:
    """Base class of every hub. Subclasses add public ``async def`` methods;
    an async generator method streams its items to the caller; a parameter
    annotated ``AsyncIterator[T]`` receives a stream the client uploads."""

    context: HubCallerContext
    clients: HubClients
    groups: GroupManager
    services: Any
    """Whatever was passed as ``services`` when the hub was mounted."""

    def __init__(
        self, context: HubCallerContext, clients: HubClients, groups: GroupManager, services: Any
    ) -> None:
        self.context = context
        self.clients = clients
        self.groups = groups
        self.services = services

    async def on_connected(self) -> None:
        """Called once the handshake is done, before any invocation is read."""

    async def on_disconnected(self, error: Exception | None) -> None:
        """Called when the connection ends; ``error`` is why, if it failed."""

    @classmethod
    def token_expired_notice(cls, items: Mapping[str, Any]) -> Sequence[InvocationMessage]:
        """Messages sent just before the Close when the caller's access token
        expires (``items``: the connection's ``Context.items``). None by default:
        the Close says why."""
        return ()
