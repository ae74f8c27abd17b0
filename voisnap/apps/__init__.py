"""The product's hubs, mounted on one server."""

from __future__ import annotations

from ..config import Settings
from ..server.auth import TokenAuthority
from ..server.hub_server import HubServer
from ..server.secrets import load_secret
from .chat import mount_chat
from .playground import PlaygroundHub


def create_app(settings: Settings) -> HubServer:
    """A server with every hub of the product mounted."""
    authority = TokenAuthority(load_secret(settings.data_dir), settings.jwt_algorithm)
    server = HubServer(settings, authority)
    server.mount("/hubs/playground", PlaygroundHub)
    mount_chat(server)
    return server
