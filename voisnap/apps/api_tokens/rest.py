"""API tokens over REST (docs/api-tokens.md): a user's own, made with a JWT.

- ``POST /api/tokens`` ``{name, roles?, ttlSeconds?}``: 201, the token with its
  secret (``token``), shown this once;
- ``GET /api/tokens``: the caller's tokens that are not revoked, without secrets;
- ``DELETE /api/tokens/{id}``: revoke (204; 404 if the caller has no such token).

Only a user's JWT may make tokens: a token proven by an API token (or a node's)
may not make more of itself, so a leaked one cannot outlive its revocation.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...nodes import node_id_of
from ...server.routes import RestRequest, Route
from ...storage.base import ApiToken, Owner, Store
from .tokens import ApiTokens, TokenRefused, proven_by_api_token


class ApiTokensRest:
    def __init__(self, tokens: ApiTokens, store: Store, clock: Any) -> None:
        self._tokens = tokens
        self._store = store
        self._clock = clock

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/api/tokens", self.create),
            Route.of("GET", "/api/tokens", self.list),
            Route.of("DELETE", "/api/tokens/{token_id}", self.revoke),
        ]

    async def create(self, request: RestRequest) -> tuple[int, Any]:
        principal = request.principal
        if proven_by_api_token(principal) or node_id_of(principal) is not None:
            return 403, {"error": "API tokens are made with a user's JWT access token."}
        body = request.json()
        if not isinstance(body, dict):
            return 400, {"error": "The body must be a JSON object: {name, roles?, ttlSeconds?}."}
        name, roles, ttl = body.get("name"), body.get("roles", []), body.get("ttlSeconds")
        if not isinstance(name, str):
            return 400, {"error": "'name' must be a string."}
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            return 400, {"error": "'roles' must be a list of strings."}
        if not set(roles) <= principal.roles:
            return 403, {"error": "A token may carry only roles its maker has."}
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            return 400, {"error": "'ttlSeconds' must be a number."}
        try:
            token, secret = await self._tokens.issue(_owner(request), name, roles, ttl)
        except TokenRefused as error:
            return 400, {"error": str(error)}
        return 201, {**token_view(token), "token": secret}

    async def list(self, request: RestRequest) -> tuple[int, Any]:
        if node_id_of(request.principal) is not None:
            return 403, {"error": "A node's token has no API tokens."}
        return 200, [token_view(token) for token in await self._store.list_api_tokens(
            _owner(request))]

    async def revoke(self, request: RestRequest) -> tuple[int, Any]:
        if node_id_of(request.principal) is not None:
            return 403, {"error": "A node's token has no API tokens."}
        token_id = request.params["token_id"]
        revoked = await self._store.revoke_api_token(_owner(request), token_id, self._clock.now())
        if revoked is None:
            return 404, {"error": f"API token '{token_id}' does not exist."}
        return 204, None


def token_view(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.token_id,
        "name": token.name,
        "roles": list(token.roles),
        "createdAt": _time(token.created_at),
        "expiresAt": _time(token.expires_at),
    }


def _time(moment: Any) -> str | None:
    return None if moment is None else unstructure(moment)


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
