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

import os

from ..config import Settings
from .auth import Claims, JwksAuthority, TokenAuthority
from .hub_server import HubServer
from .secrets import SECRET_ENV, load_secret

Authority = TokenAuthority | JwksAuthority


def token_authority(settings: Settings) -> Authority:
    """The one JWT authority of a data dir: ``serve`` verifies what ``token``
    issues; or, with ``--jwt-jwks-url``, an identity provider's keys (docs/auth.md)."""
    claims = Claims(
        user=settings.jwt_user_claim,
        tenant=settings.jwt_tenant_claim,
        roles=settings.jwt_roles_claim,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    if settings.jwt_jwks_url is None:
        return TokenAuthority(load_secret(settings.data_dir), settings.jwt_algorithm, claims)
    if os.environ.get(SECRET_ENV):
        raise ValueError(
            f"an HS256 secret ({SECRET_ENV}) and --jwt-jwks-url cannot both be set: "
            "tokens come either from the identity provider's keys or from the secret"
        )
    if settings.jwt_algorithm != "HS256":
        raise ValueError(
            "--jwt-algorithm is for an HMAC secret; with --jwt-jwks-url the algorithm "
            "is the key's (RS256 or ES256): unset it"
        )
    return JwksAuthority(settings.jwt_jwks_url, claims)


def create_server(settings: Settings) -> HubServer:
    """A hub server with no hubs yet: mount yours, then ``serve`` it."""
    return HubServer(settings, token_authority(settings))
