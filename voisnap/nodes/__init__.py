"""A user's own machines (nodes): credentials, dispatch, presence (docs/hubs/node.md)."""

from .credentials import NodeError, node_id_of
from .links import NodeLink
from .service import Nodes, PresenceSink
from .signals import NodeSignals

__all__ = ["NodeError", "NodeLink", "NodeSignals", "Nodes", "PresenceSink", "node_id_of"]
