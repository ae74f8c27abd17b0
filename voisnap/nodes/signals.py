"""The processes' node dispatchers, telling each other what happened.

One backplane channel (``names.machines_channel``) that every process listens
to, carrying MessagePack arrays:

    [1, NodeId]              commands wait for this node: deliver them
    [2, CommandId]           this command has its outcome: wake its waiters
    [3, NodeId, [Scope...]]  this node's scopes changed: tell it
    [4, NodeId]              this node was revoked: tell it, and cut it off

The backplane sends a message to the *other* processes; this one is told
directly (``handle``), as ASP.NET's Redis lifetime manager handles locally,
then publishes. All are hints, at most once: every waiter reads the store too.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import msgpack

from ..backplane import BackplaneError, RequestRefused
from ..failures import report_client_error
from ..routing import names
from ..routing.cluster import Cluster

log = logging.getLogger(__name__)

COMMANDS, FINISHED, SCOPES, REVOKED = 1, 2, 3, 4


class SignalHandler(Protocol):
    def commands_waiting(self, node_id: str) -> None: ...

    def command_finished(self, command_id: str) -> None: ...

    def scopes_changed(self, node_id: str, scopes: tuple[str, ...]) -> None: ...

    def revoked(self, node_id: str) -> None: ...


class NodeSignals:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._handler: SignalHandler | None = None

    async def listen(self, handler: SignalHandler) -> None:
        self._handler = handler
        await self._cluster.subscriptions.hold(names.machines_channel(), self)

    async def commands_waiting(self, node_id: str) -> None:
        await self._tell([COMMANDS, node_id])

    async def command_finished(self, command_id: str) -> None:
        await self._tell([FINISHED, command_id])

    async def scopes_changed(self, node_id: str, scopes: tuple[str, ...]) -> None:
        await self._tell([SCOPES, node_id, list(scopes)])

    async def revoked(self, node_id: str) -> None:
        await self._tell([REVOKED, node_id])

    async def _tell(self, items: list[Any]) -> None:
        payload = msgpack.packb(items)
        self.message(payload)  # this process first
        try:
            await self._cluster.backplane.publish(names.machines_channel(), payload)
        except BackplaneError as error:
            report_client_error(log, "other processes were not told about a node", str(error))

    # -- the channel's listener ------------------------------------------------------------------

    def message(self, payload: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            items = msgpack.unpackb(payload)
        except Exception:  # msgpack raises several kinds; all mean "not a signal"
            items = None
        match items:
            case [1, str() as node_id, *_]:
                handler.commands_waiting(node_id)
            case [2, str() as command_id, *_]:
                handler.command_finished(command_id)
            case [3, str() as node_id, list() as scopes, *_] if all(
                isinstance(scope, str) for scope in scopes
            ):
                handler.scopes_changed(node_id, tuple(scopes))
            case [4, str() as node_id, *_]:
                handler.revoked(node_id)
            case _:
                log.info("a malformed node signal was dropped")

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("The machines channel takes no requests.")
