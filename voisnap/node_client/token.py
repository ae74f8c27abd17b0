"""What a node learns from its own token: its node id and, maybe, its scopes.

docs/hubs/node.md, "Nodes and their credentials": a node token is a JWT whose
``nid`` claim is the node id. The node reads the claims without verifying the
signature: it holds no secret, and the gateway verifies every use of the token
anyway. A JWT is three base64url parts joined by dots; the middle one is the
claims, a JSON object (RFC 7519, section 3).

The ``scopes`` claim is optional: when it is absent the node does not know its
scopes until the gateway tells it (``RefreshScopes``, or a poll's ``scopes``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import attrs


@attrs.frozen
class NodeIdentity:
    """``scopes`` is None when the token does not say."""

    node_id: str
    scopes: frozenset[str] | None


def read_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified. Raises ValueError naming the problem."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("The token is not a JWT: it must have three parts separated by dots.")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (UnicodeError, binascii.Error, ValueError):
        raise ValueError("The token's claims are not base64url-encoded JSON.") from None
    if not isinstance(claims, dict):
        raise ValueError("The token's claims are not a JSON object.")
    return claims


def read_node_identity(token: str) -> NodeIdentity:
    """The node id (``nid``) and scopes (``scopes``, if present) of a node token."""
    claims = read_claims(token)
    node_id = claims.get("nid")
    if not isinstance(node_id, str) or not node_id:
        raise ValueError("The token has no 'nid' claim: is it a node token?")
    return NodeIdentity(node_id=node_id, scopes=_scopes_of(claims.get("scopes")))


def _scopes_of(claim: Any) -> frozenset[str] | None:
    # Accept a list of names, or one space-separated string as OAuth's "scope" is.
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list) and all(isinstance(name, str) for name in claim):
        return frozenset(claim)
    return None
