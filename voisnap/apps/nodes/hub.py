"""``/hubs/node``: a user's machines, connected as clients (docs/hubs/node.md).

Only node tokens connect here (``gate``). The hub is thin: it hands its
connection to ``nodes.Nodes`` as a ``HubLink`` (on connect, last, so that the
commands that wait are delivered once the connection reads) and passes the
node's three methods on. The payloads are one object each, as in the seed.
"""

from __future__ import annotations

from typing import Any

import attrs

from ...errors import HubError
from ...hubs.hub import Hub, HubCallerContext, SingleClientProxy
from ...nodes import NodeError, Nodes, node_id_of
from ...nodes.service import WEBSOCKETS


@attrs.frozen
class HeartbeatRequest:
    node_id: str
    status: str | None = None
    uptime: float | None = None


@attrs.frozen
class ScopesRequest:
    scopes: list[str]


class HubLink:
    """``nodes.links.NodeLink`` over the hub's own proxy for this connection."""

    def __init__(self, caller: SingleClientProxy, context: HubCallerContext, node_id: str) -> None:
        self._caller = caller
        self._context = context
        self.node_id = node_id
        self.connection_id = context.connection_id

    async def invoke(self, method: str, payload: dict[str, Any], timeout: float) -> Any:
        return await self._caller.invoke(method, payload, timeout=timeout)

    async def send(self, method: str, payload: dict[str, Any]) -> None:
        await self._caller.send(method, payload)

    def close(self, error: str) -> None:
        self._context.abort(error)


class NodeHub(Hub):
    services: Nodes

    @property
    def node_id(self) -> str:
        node_id = node_id_of(self.context)
        if node_id is None:  # the gate lets only node tokens in
            raise HubError("Only a node may use this hub.")
        return node_id

    async def on_connected(self) -> None:
        link = HubLink(self.clients.caller, self.context, self.node_id)
        await self.services.connected(link)

    async def on_disconnected(self, error: Exception | None) -> None:
        await self.services.disconnected(self.node_id, self.context.connection_id)

    async def heartbeat(self, request: HeartbeatRequest) -> None:
        if request.node_id != self.node_id:
            raise HubError(f"This connection is node '{self.node_id}', not '{request.node_id}'.")
        with _as_hub_error():
            await self.services.heard(
                self.node_id, WEBSOCKETS, self.context.connection_id, request.uptime
            )

    async def command_result(self, payload: dict[str, Any]) -> None:
        with _as_hub_error():
            await self.services.record_result(self.node_id, payload)

    async def scope_changed(self, request: ScopesRequest) -> None:
        with _as_hub_error():
            await self.services.scopes_acknowledged(self.node_id, request.scopes)


class _as_hub_error:
    """A ``NodeError`` reaches the node as the method's error Completion."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, trace: Any) -> bool:
        if isinstance(error, NodeError):
            raise HubError(str(error)) from None
        return False
