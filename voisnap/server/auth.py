"""Access tokens: JWT (HS256 by default) carrying user, tenant and roles.

docs/auth.md, "Where the token goes": the same JWT bearer as REST, in the
``Authorization: Bearer`` header or in the ``access_token`` query parameter
(browsers cannot set headers on WebSocket or EventSource requests).

Claims: ``sub`` is the user id, ``tid`` the tenant id, ``roles`` a list of
strings, ``exp`` the expiry (required), ``zoneinfo`` the user's time zone
(optional, an IANA name: the OIDC standard claim). Anything missing, malformed, badly
signed, expired, or signed with another algorithm (``alg: none`` included: the
accepted algorithm is fixed, never read from the token) is refused.

Two authorities, one interface (``verify_async``, what the server awaits):

- ``TokenAuthority``: a shared HMAC secret; it issues tokens (``voisnap token``,
  node tokens) and verifies them, synchronously;
- ``JwksAuthority``: tokens from an identity provider, verified with the RS256
  or ES256 public keys of its JWKS endpoint (``--jwt-jwks-url``). The keys are
  fetched with httpx (under trio, never blocking the loop), with a timeout, and
  cached; a token naming a key id the cache lacks makes one refetch, at most
  once every ``REFETCH_INTERVAL`` seconds, so forged key ids cannot hammer the
  provider. ``verify`` (sync) uses the cached keys only. The algorithm comes
  from the key, never from the token: HS256 with the public key as the secret
  (the algorithm-confusion attack) is refused.

Both check ``iss`` and ``aud`` when an issuer or an audience is set, and read
the user, tenant and roles from configurable claims (``Claims``).
"""

from __future__ import annotations

import json
import logging
import time
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import attrs
import httpx
import jwt
import trio

from ..errors import AuthenticationError
from ..principal import ZONE_CLAIM, Principal

ALGORITHMS = ("HS256", "HS384", "HS512")
JWKS_ALGORITHMS = {"RSA": "RS256", "EC": "ES256"}
"""The one algorithm accepted for each JWKS key type (an EC key must be on P-256)."""
JWKS_TIMEOUT = 5.0
REFETCH_INTERVAL = 10.0
MAX_JWKS_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


@attrs.frozen
class Claims:
    """Which claims name the user, the tenant and the roles; and, when set,
    the issuer and the audience a token must have."""

    user: str = "sub"
    tenant: str = "tid"
    roles: str = "roles"
    issuer: str | None = None
    audience: str | None = None

    def decode_options(self) -> dict[str, Any]:
        required = ["exp", self.user, self.tenant]
        checked = (("iss", self.issuer), ("aud", self.audience))
        required += [name for name, value in checked if value]
        return {"options": {"require": required}, "issuer": self.issuer,
                "audience": self.audience}


class TokenAuthority:
    issues_tokens = True

    def __init__(
        self, secret: bytes, algorithm: str = "HS256", claims: Claims | None = None
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}; use one of {ALGORITHMS}")
        self._secret = secret
        self._algorithm = algorithm
        self.claims = claims or Claims()

    def issue(
        self,
        user_id: str,
        tenant_id: str,
        roles: Iterable[str] = (),
        ttl: float = 3600,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token; ``extra`` claims beside the standard ones (a node's ``nid``)."""
        names = self.claims
        claims: dict[str, Any] = {
            **(extra or {}),
            names.user: user_id,
            names.tenant: tenant_id,
            names.roles: list(roles),
            "iat": int(time.time()),
            "exp": int(time.time() + ttl),
        }
        if names.issuer:
            claims["iss"] = names.issuer
        if names.audience:
            claims["aud"] = names.audience
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def verify(self, token: str) -> Principal:
        with _refusals():
            claims = jwt.decode(
                token, self._secret, algorithms=[self._algorithm], **self.claims.decode_options()
            )
        return _principal(claims, self.claims)

    async def verify_async(self, token: str) -> Principal:
        return self.verify(token)


class JwksAuthority:
    """Verifies identity-provider tokens with the keys of a JWKS endpoint; issues none."""

    issues_tokens = False

    def __init__(
        self,
        url: str,
        claims: Claims | None = None,
        *,
        timeout: float = JWKS_TIMEOUT,
        refetch_interval: float = REFETCH_INTERVAL,
    ) -> None:
        self.url = url
        self.claims = claims or Claims()
        self.timeout = timeout
        self.refetch_interval = refetch_interval
        self.keys: dict[str | None, tuple[Any, str]] = {}
        """Key id -> (public key, its one algorithm), as last fetched."""
        self.fetches = 0
        self._fetched_at: float | None = None
        self._lock = trio.Lock()

    def issue(self, *args: Any, **kwargs: Any) -> str:
        raise AuthenticationError(
            "This server verifies tokens from an identity provider (--jwt-jwks-url); "
            "it issues none."
        )

    def verify(self, token: str) -> Principal:
        """With the cached keys only: a token naming an unknown key id is refused."""
        key, algorithm = self._key_for(_key_id(token))
        with _refusals():
            claims = jwt.decode(token, key, algorithms=[algorithm], **self.claims.decode_options())
        return _principal(claims, self.claims)

    async def verify_async(self, token: str) -> Principal:
        """Refetches the JWKS first if the token names a key id it does not know."""
        kid = _key_id(token)
        if not self._knows(kid):
            await self._refetch(kid)
        return self.verify(token)

    def _knows(self, kid: str | None) -> bool:
        return kid in self.keys or (kid is None and len(self.keys) == 1)

    def _key_for(self, kid: str | None) -> tuple[Any, str]:
        if kid in self.keys:
            return self.keys[kid]
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        named = "no key id" if kid is None else f"key id {kid!r}"
        raise AuthenticationError(
            f"The access token is invalid: the identity provider has no key for {named}."
        )

    async def _refetch(self, kid: str | None) -> None:
        async with self._lock:  # concurrent requests share one fetch
            if self._knows(kid):
                return
            now = trio.current_time()
            if self._fetched_at is not None and now - self._fetched_at < self.refetch_interval:
                return  # fetched lately: the key is not there
            self._fetched_at = now
            self.fetches += 1
            self.keys = await self._fetch()

    async def _fetch(self) -> dict[str | None, tuple[Any, str]]:
        try:
            with trio.fail_after(self.timeout):
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError("the key set is too large")
            document = json.loads(response.content)
        except trio.TooSlowError:
            reason = f"it did not answer within {self.timeout:g} seconds"
            return self._unavailable(reason)
        except (httpx.HTTPError, ValueError) as error:
            return self._unavailable(str(error) or type(error).__name__)
        return _parse_jwks(document)

    def _unavailable(self, reason: str) -> NoReturn:
        log.warning("The identity provider's keys (%s) could not be fetched: %s", self.url, reason)
        raise AuthenticationError(
            f"The identity provider's keys could not be fetched: {reason}."
        )


def _parse_jwks(document: Any) -> dict[str | None, tuple[Any, str]]:
    """The RS256 and ES256 (P-256) keys of a JWKS; others are skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AuthenticationError(
            "The identity provider's keys could not be fetched: the JWKS has no 'keys' list."
        )
    keys: dict[str | None, tuple[Any, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        algorithm = JWKS_ALGORITHMS.get(entry.get("kty", ""))
        if algorithm is None or entry.get("alg", algorithm) != algorithm:
            continue
        if algorithm == "ES256" and entry.get("crv") != "P-256":
            continue
        try:
            key = jwt.PyJWK(entry, algorithm)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = (key.key, algorithm)
    return keys


def _key_id(token: str) -> str | None:
    with _refusals():
        kid = jwt.get_unverified_header(token).get("kid")
    return kid if isinstance(kid, str) else None


@contextmanager
def _refusals() -> Iterator[None]:
    """PyJWT's errors as AuthenticationError, with the texts of docs/auth.md."""
    try:
        yield
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("The access token has expired.") from None
    except jwt.InvalidTokenError as error:
        raise AuthenticationError(f"The access token is invalid: {error}") from None


def _principal(claims: Mapping[str, Any], names: Claims | None = None) -> Principal:
    names = names or Claims()
    user_id, tenant_id = claims[names.user], claims[names.tenant]
    roles = claims.get(names.roles, [])
    if isinstance(roles, str):
        roles = roles.split()  # a space-separated string, as OAuth's "scope"
    if not isinstance(user_id, str) or not user_id:
        raise AuthenticationError(
            f"The access token's '{names.user}' claim must be a non-empty string."
        )
    if not isinstance(tenant_id, str) or not tenant_id:
        raise AuthenticationError(
            f"The access token's '{names.tenant}' claim must be a non-empty string."
        )
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise AuthenticationError(
            f"The access token's '{names.roles}' claim must be a list of strings."
        )
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
