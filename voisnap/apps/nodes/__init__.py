"""The node hub, its REST routes and its gate (docs/hubs/node.md)."""

from .gate import NodeGate
from .hub import NodeHub
from .presence import NotifiedPresence, Presences
from .rest import NodesRest

__all__ = ["NodeGate", "NodeHub", "NodesRest", "NotifiedPresence", "Presences"]
