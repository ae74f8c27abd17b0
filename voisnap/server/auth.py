"""Access tokens: JWT (HS256 by default) carrying user, tenant and roles.

docs/auth.md, "Where the token goes": the same JWT bearer as REST, in the
``Authorization: Bearer`` header or in the ``access_token`` query parameter
(browsers cannot set headers on WebSocket or EventSource requests).

Claims: ``sub`` is the user id, ``tid`` the tenant id, ``roles`` a list of
strings, ``exp`` the expiry (required), ``zoneinfo`` the user's time zone
(optional, an IANA name: the OIDC standard claim). Anything missing, malformed, badly
signed, expired, or signed with another algorithm (``alg: none`` included: the
accepted algorithm is fixed, never read from the token) is refused.
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from ..errors import AuthenticationError
from ..principal import ZONE_CLAIM, Principal

ALGORITHMS = ("HS256", "HS384", "HS512")


class TokenAuthority:
    def __init__(self, secret: bytes, algorithm: str = "HS256") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}; use one of {ALGORITHMS}")
        self._secret = secret
        self._algorithm = algorithm

    def issue(
        self,
        user_id: str,
        tenant_id: str,
        roles: Iterable[str] = (),
        ttl: float = 3600,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token; ``extra`` claims beside the standard ones (a node's ``nid``)."""
        claims = {
            **(extra or {}),
            "sub": user_id,
            "tid": tenant_id,
            "roles": list(roles),
            "iat": int(time.time()),
            "exp": int(time.time() + ttl),
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require": ["exp", "sub", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("The access token has expired.") from None
        except jwt.InvalidTokenError as error:
            raise AuthenticationError(f"The access token is invalid: {error}") from None
        return _principal(claims)


def _principal(claims: Mapping[str, Any]) -> Principal:
    user_id, tenant_id, roles = claims["sub"], claims["tid"], claims.get("roles", [])
    if not isinstance(user_id, str) or not user_id:
        raise AuthenticationError("The access token's 'sub' claim must be a non-empty string.")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise AuthenticationError("The access token's 'tid' claim must be a non-empty string.")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise AuthenticationError("The access token's 'roles' claim must be a list of strings.")
    if ZONE_CLAIM in claims and not _is_zone(claims[ZONE_CLAIM]):
        raise AuthenticationError(
            f"The access token's '{ZONE_CLAIM}' claim must be an IANA time zone name, "
            "such as 'Europe/Lisbon'."
        )
    return Principal(
        user_id=user_id,
        tenant_id=tenant_id,
        roles=frozenset(roles),
        expires_at=float(claims["exp"]),
        claims=dict(claims),
    )


def _is_zone(name: Any) -> bool:
    """Whether ``name`` is a time zone this machine knows (the OIDC ``zoneinfo`` claim)."""
    if not isinstance(name, str) or not name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The bearer token of a request: header first, then ``access_token``.

    ``headers`` has lower-case names."""
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("access_token") or None
