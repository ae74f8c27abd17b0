"""The reference node, ``voisnap node`` (docs/hubs/node.md, "The reference node").

A trio client of ``/hubs/node`` (SignalR, JSON hub protocol, over
trio-websocket) or of the polling routes (``/api/nodes/me/...``, over httpx).
The modules, from the bottom up:

- ``token``: the node id and scopes in the node token;
- ``files``, ``shell``, ``commands``: the commands and their checks;
- ``results``, ``executor``: each ``commandId`` runs at most once;
- ``signalr``: the client side of the handshake and JSON records, sans-IO;
- ``hub_session``, ``polling_session``: one connection each;
- ``backoff``, ``node``: staying connected; ``cli``: ``voisnap node``.
"""

from .cli import add_node_parser, run_node
from .config import NodeConfig
from .errors import CommandError, NodeStopped
from .node import ReferenceNode, run_reference_node

__all__ = [
    "CommandError",
    "NodeConfig",
    "NodeStopped",
    "ReferenceNode",
    "add_node_parser",
    "run_node",
    "run_reference_node",
]
