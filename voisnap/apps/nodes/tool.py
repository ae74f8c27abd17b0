"""The agent's ``run_on_node`` tool, on the same dispatch as ``POST /api/nodes/{id}/commands``.

The tool names a node by its name (what a person says) or its id; the command
runs for the task's user, not queued, with the default timeout. Its approval
is the runtime's business (``require_approval``): by the time it runs here, a
person has said yes.
"""

from __future__ import annotations

from typing import Any

from ...agents.tools import ToolError
from ...nodes import NodeError, Nodes
from ...storage.base import COMMAND_SUCCEEDED, Owner


class NodeTool:
    """``agents.tools.NodeRunner`` for the product's nodes."""

    def __init__(self, nodes: Nodes) -> None:
        self._nodes = nodes

    async def run_on_node(self, owner: Owner, node: str, command: str, params: Any) -> Any:
        found = [n for n in await self._nodes.list(owner) if node in (n.name, n.node_id)]
        if not found:
            raise ToolError(f"You have no node named '{node}'.")
        target = found[0]
        try:
            finished = await self._nodes.dispatch(owner, target.node_id, command, params)
        except NodeError as error:
            raise ToolError(str(error)) from None
        if finished.status != COMMAND_SUCCEEDED:
            raise ToolError(f"'{command}' failed on node '{target.name}': {finished.error}")
        return {"node": target.name, "command": command, "result": finished.result}
