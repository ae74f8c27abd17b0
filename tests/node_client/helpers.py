"""Shared by the node client's tests: node tokens, built as the server builds them."""

from __future__ import annotations

from typing import Any

import jwt


def node_token(node_id: str | None = "nod_test", **claims: Any) -> str:
    """A JWT with the claims of a node token, signed with a secret the node never needs."""
    payload: dict[str, Any] = {"sub": "u1", "tid": "t1", "roles": ["node"], **claims}
    if node_id is not None:
        payload["nid"] = node_id
    return jwt.encode(payload, "a-secret-the-node-does-not-know-0123456789", algorithm="HS256")
