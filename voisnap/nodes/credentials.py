"""Who is a node, and what it may be called and granted (docs/hubs/node.md).

A node token is a user's JWT with the role ``node`` and the node's id in the
claim ``nid``; ``sub`` and ``tid`` name the owning user and tenant. The token
alone does not make a node: the node must be registered and not revoked, which
the store says (``NodeGate``), so that revoking takes effect at once, for every
token the node was ever given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

NODE_ROLE = "node"
NODE_CLAIM = "nid"
SCOPES_CLAIM = "scopes"
DEFAULT_TOKEN_TTL = 90 * 24 * 3600.0
MAX_TOKEN_TTL = 5 * 365 * 24 * 3600.0
SCOPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_SCOPES = 100
MAX_NAME = 100


class NodeError(Exception):
    """A node request that cannot be done: ``status`` is its HTTP status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Claimed(Protocol):
    """A token's principal, or a hub caller's context."""

    roles: frozenset[str]
    claims: Mapping[str, Any]


def node_id_of(principal: Claimed) -> str | None:
    """The node a token speaks for; None for a user's token."""
    node_id = principal.claims.get(NODE_CLAIM)
    if NODE_ROLE in principal.roles and isinstance(node_id, str) and node_id:
        return node_id
    return None


def checked_scopes(value: Any) -> tuple[str, ...]:
    """``value`` as a node's scopes (unique, in order), or NodeError 400."""
    if not isinstance(value, list) or not all(isinstance(scope, str) for scope in value):
        raise NodeError(400, "'scopes' must be a list of command names.")
    if not 1 <= len(value) <= MAX_SCOPES:
        raise NodeError(400, f"'scopes' must name 1 to {MAX_SCOPES} commands.")
    bad = [scope for scope in value if SCOPE.fullmatch(scope) is None]
    if bad:
        raise NodeError(
            400, f"A scope is 1 to 64 of the characters A-Z a-z 0-9 _ . : - (not {bad[0]!r})."
        )
    return tuple(dict.fromkeys(value))


def checked_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise NodeError(400, f"'name' must be a string of 1 to {MAX_NAME} characters.")
    return value.strip()


def checked_ttl(value: Any) -> float:
    if value is None:
        return DEFAULT_TOKEN_TTL
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NodeError(400, "'ttlSeconds' must be a number.")
    if not 60 <= value <= MAX_TOKEN_TTL:
        raise NodeError(400, f"'ttlSeconds' must be between 60 and {int(MAX_TOKEN_TTL)}.")
    return float(value)
