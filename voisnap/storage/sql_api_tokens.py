"""API tokens (docs/api-tokens.md): one row each, found by the hash of the secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .base import ApiToken, Owner

COLUMNS = "token_id, tenant_id, user_id, name, roles, created_at, expires_at, revoked_at"


class ApiTokenQueries:
    """The API-token part of ``SqlStore`` (it supplies ``_run`` and ``dialect``)."""

    dialect: Any
    _run: Callable[..., Any]

    async def add_api_token(self, token: ApiToken, secret_hash: str) -> None:
        time_in = self.dialect.time_in
        row = (
            token.token_id, token.owner.tenant_id, token.owner.user_id, token.name,
            json.dumps(list(token.roles)), time_in(token.created_at), time_in(token.expires_at),
            time_in(token.revoked_at), secret_hash,
        )  # fmt: skip
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO api_tokens ({COLUMNS}, secret_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def list_api_tokens(self, owner: Owner) -> list[ApiToken]:
        def work(db: Any) -> list[ApiToken]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM api_tokens WHERE tenant_id = ? AND user_id = ? "
                "AND revoked_at IS NULL ORDER BY created_at, token_id",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [self._api_token(row) for row in rows]

        return await self._run(work)

    async def revoke_api_token(self, owner: Owner, token_id: str, now: Any) -> ApiToken | None:
        def work(db: Any) -> ApiToken | None:
            db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND tenant_id = ? "
                "AND user_id = ? AND revoked_at IS NULL",
                (self.dialect.time_in(now), token_id, owner.tenant_id, owner.user_id),
            )
            row = db.execute(
                f"SELECT {COLUMNS} FROM api_tokens WHERE token_id = ? AND tenant_id = ? "
                "AND user_id = ?",
                (token_id, owner.tenant_id, owner.user_id),
            ).fetchone()
            return None if row is None else self._api_token(row)

        return await self._run(work)

    async def find_api_token(self, secret_hash: str) -> ApiToken | None:
        def work(db: Any) -> ApiToken | None:
            row = db.execute(
                f"SELECT {COLUMNS} FROM api_tokens WHERE secret_hash = ?", (secret_hash,)
            ).fetchone()
            return None if row is None else self._api_token(row)

        return await self._run(work)

    def _api_token(self, row: Any) -> ApiToken:
        time_out = self.dialect.time_out
        return ApiToken(
            token_id=row[0],
            owner=Owner(row[1], row[2]),
            name=row[3],
            roles=tuple(json.loads(row[4])),
            created_at=time_out(row[5]),
            expires_at=time_out(row[6]),
            revoked_at=time_out(row[7]),
        )
