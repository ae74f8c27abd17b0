"""A node's presence, told to its owner's notifications (docs/hubs/node.md, "Presence")."""

from __future__ import annotations

import datetime

from ...storage.base import USER, Audience, Node
from ..notifications.events import NodeOffline, NodeOnline
from ..notifications.publisher import Notifications


class NotifiedPresence:
    """``nodes.service.PresenceSink``: ``NodeOnline`` and ``NodeOffline``, stored
    in the owner's feed and sent to their notifications connections."""

    def __init__(self, notifications: Notifications) -> None:
        self._notifications = notifications

    async def online(self, node: Node, at: datetime.datetime) -> None:
        await self._publish(node, "NodeOnline", NodeOnline(node.node_id, node.name, at))

    async def offline(self, node: Node, at: datetime.datetime) -> None:
        await self._publish(node, "NodeOffline", NodeOffline(node.node_id, node.name, at))

    async def _publish(self, node: Node, event: str, payload: object) -> None:
        owner = node.owner
        await self._notifications.publish(
            owner.tenant_id, Audience(USER, owner.user_id), event, payload
        )


class Presences:
    """Several presence sinks as one (the notifications, ``/v1/events``), each told in turn."""

    def __init__(self, *sinks: object) -> None:
        self._sinks = sinks

    async def online(self, node: Node, at: datetime.datetime) -> None:
        for sink in self._sinks:
            await sink.online(node, at)  # type: ignore[attr-defined]

    async def offline(self, node: Node, at: datetime.datetime) -> None:
        for sink in self._sinks:
            await sink.offline(node, at)  # type: ignore[attr-defined]
