"""Building a server: the framework alone, without the product.

``create_server(settings)`` is a bare hub server: auth (the JWT authority
whose secret lives in the data dir, or in ``VOISNAP_JWT_SECRET``), every
transport, routing, health. Mount hubs on it and run it with ``serve``::

    server = create_server(Settings.from_environment())
    server.mount("/hubs/notes", NotesHub)
    trio.run(serve, server)

The product (``voisnap.apps.create_product``) starts from here and adds its
hubs, stores and agents; ``voisnap serve`` runs that.
"""

from __future__ import annotations

from ..config import Settings
from .auth import TokenAuthority
from .hub_server import HubServer
from .secrets import load_secret


def token_authority(settings: Settings) -> TokenAuthority:
    """The one JWT authority of a data dir: ``serve`` verifies what ``token`` issues."""
    return TokenAuthority(load_secret(settings.data_dir), settings.jwt_algorithm)


def create_server(settings: Settings) -> HubServer:
    """A hub server with no hubs yet: mount yours, then ``serve`` it."""
    return HubServer(settings, token_authority(settings))
