"""The product: its hubs, stores and agents, mounted on the framework's server."""

from __future__ import annotations

from ..config import Settings
from ..server.factory import create_server
from ..server.hub_server import HubServer
from .chat import mount_chat
from .playground import PlaygroundHub


def create_product(settings: Settings) -> HubServer:
    """A server with every hub of the product mounted: what ``voisnap serve`` runs."""
    server = create_server(settings)
    server.mount("/hubs/playground", PlaygroundHub)
    mount_chat(server)
    return server
