"""Issuing and reading API tokens (docs/api-tokens.md).

A token is ``rc_`` and 43 characters of a random 256-bit secret (URL-safe
base64). The store keeps its SHA-256 and who it speaks for, never the secret:
the secret is shown once, when it is issued. A secret of that strength needs
no slow hash (there is nothing to guess from), and a fast one lets every
request be checked with one indexed lookup.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid
from collections.abc import Iterable

from ...clock import Clock
from ...errors import AuthenticationError
from ...principal import Principal
from ...server.hub_server import API_TOKEN_PREFIX
from ...storage.base import ApiToken, Owner, Store

TOKEN_CLAIM = "api_token"
"""The claim that marks a Principal proven by an API token (its id)."""
MAX_NAME = 100
MAX_TTL = 10 * 365 * 24 * 3600.0


class TokenRefused(Exception):
    """A request for a token that cannot be granted (a client-safe reason)."""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def proven_by_api_token(principal: Principal) -> bool:
    return TOKEN_CLAIM in principal.claims


class ApiTokens:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def issue(
        self, owner: Owner, name: str, roles: Iterable[str] = (), ttl: float | None = None
    ) -> tuple[ApiToken, str]:
        """A new token and its secret (shown once)."""
        if not name or len(name) > MAX_NAME:
            raise TokenRefused(f"'name' must be 1 to {MAX_NAME} characters.")
        if ttl is not None and not 60 <= ttl <= MAX_TTL:
            raise TokenRefused(f"'ttlSeconds' must be between 60 and {int(MAX_TTL)}.")
        now = self._clock.now()
        expires = None if ttl is None else now + datetime.timedelta(seconds=ttl)
        token = ApiToken(
            f"tok_{uuid.uuid4().hex}", owner, name, tuple(sorted(set(roles))), now, expires
        )
        secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._store.add_api_token(token, secret_hash(secret))
        return token, secret

    async def principal_of(self, secret: str) -> Principal:
        """Who ``secret`` speaks for; AuthenticationError if nobody (now)."""
        token = await self._store.find_api_token(secret_hash(secret))
        if token is None:
            raise AuthenticationError("The API token is invalid.")
        if token.revoked_at is not None:
            raise AuthenticationError("The API token has been revoked.")
        now = self._clock.now()
        if token.expires_at is not None and token.expires_at <= now:
            raise AuthenticationError("The API token has expired.")
        return Principal(
            user_id=token.owner.user_id,
            tenant_id=token.owner.tenant_id,
            roles=frozenset(token.roles),
            expires_at=None if token.expires_at is None else token.expires_at.timestamp(),
            claims={TOKEN_CLAIM: token.token_id},
        )
