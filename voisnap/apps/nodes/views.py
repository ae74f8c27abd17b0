"""What the REST routes show of a node and of a command (docs/hubs/node.md)."""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from ...storage.base import Node, NodeCommand


@attrs.frozen
class NodeView:
    node_id: str
    name: str
    scopes: list[str]
    acknowledged_scopes: list[str] | None
    status: str
    transport: str | None
    last_heartbeat: datetime.datetime | None
    uptime: float | None
    created_at: datetime.datetime


@attrs.frozen
class CommandView:
    command_id: str
    node_id: str
    command: str
    params: Any
    status: str
    result: Any
    error: str | None
    queued: bool
    timeout_seconds: float
    deliveries: int
    created_at: datetime.datetime
    sent_at: datetime.datetime | None
    completed_at: datetime.datetime | None


@attrs.frozen
class Delivery:
    """A command as a poll hands it to the node: what ``ExecuteCommand`` carries."""

    command_id: str
    command: str
    params: Any


def node_view(node: Node) -> NodeView:
    return NodeView(
        node_id=node.node_id,
        name=node.name,
        scopes=list(node.scopes),
        acknowledged_scopes=None
        if node.acknowledged_scopes is None
        else list(node.acknowledged_scopes),
        status=node.status,
        transport=node.transport,
        last_heartbeat=node.last_heartbeat,
        uptime=node.uptime,
        created_at=node.created_at,
    )


def command_view(command: NodeCommand) -> CommandView:
    return CommandView(
        command_id=command.command_id,
        node_id=command.node_id,
        command=command.command,
        params=command.params,
        status=command.status,
        result=command.result,
        error=command.error,
        queued=command.queued,
        timeout_seconds=command.timeout_seconds,
        deliveries=command.deliveries,
        created_at=command.created_at,
        sent_at=command.sent_at,
        completed_at=command.completed_at,
    )


def delivery(command: NodeCommand) -> Delivery:
    return Delivery(command.command_id, command.command, command.params)
