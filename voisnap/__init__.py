"""voisnap: a SignalR-compatible real-time hub server for AI-agent applications, on trio."""

from .apps import create_app
from .config import Settings
from .errors import HubError
from .hubs.hub import Hub
from .server.hub_server import HubServer

__all__ = ["Hub", "HubError", "HubServer", "Settings", "create_app"]
