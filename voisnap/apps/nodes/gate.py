"""Which token may use which path: nodes on theirs, users on the rest (docs/hubs/node.md).

A node token may connect to ``/hubs/node`` and use ``/api/nodes/me/...``, and
nothing else; only a node token may use those. A node token is good only while
its node is registered and not revoked: the store is asked on every use
(negotiate, connect, each REST request), so a revocation takes effect at once.
User tokens pay nothing for this: they are never looked up.
"""

from __future__ import annotations

from ...nodes import Nodes, node_id_of
from ...nodes.links import REVOKED
from ...principal import Principal
from ...server.http import HttpError
from .rest import ME

INVALID_TOKEN = [("www-authenticate", 'Bearer error="invalid_token"')]


class NodeGate:
    """A ``HubServer.principal_checks`` entry."""

    def __init__(self, nodes: Nodes, hub_path: str) -> None:
        self._nodes = nodes
        self._hub_path = hub_path

    async def __call__(self, path: str, principal: Principal) -> None:
        for_nodes = path == self._hub_path or path.startswith(ME)
        if node_id_of(principal) is None:
            if for_nodes:
                raise HttpError(403, "Only a node's token may use this (see POST /api/nodes).")
            return
        if not for_nodes:
            raise HttpError(403, f"A node's token may only be used on {self._hub_path} and {ME}...")
        if not await self._nodes.is_admitted(principal):
            raise HttpError(401, REVOKED, INVALID_TOKEN)
