"""Registering a node and giving it its token: for ``POST /api/nodes`` and for
``voisnap token --node`` (which has a store, not a running server)."""

from __future__ import annotations

import datetime
import uuid

from ..server.auth import JwksAuthority, TokenAuthority
from ..storage.base import Node, NodeStore, Owner, StoreError
from .credentials import NODE_CLAIM, NODE_ROLE, SCOPES_CLAIM, NodeError


async def register_node(
    store: NodeStore,
    authority: TokenAuthority | JwksAuthority,
    owner: Owner,
    name: str,
    scopes: tuple[str, ...],
    *,
    ttl: float,
    now: datetime.datetime,
) -> tuple[Node, str]:
    """A new node of ``owner``'s and its token; NodeError 409 for a name in use,
    501 when the server issues no tokens (``--jwt-jwks-url``)."""
    if not authority.issues_tokens:
        raise NodeError(
            501,
            "This server verifies tokens from an identity provider (--jwt-jwks-url) and "
            "issues none, so it cannot give a node its token.",
        )
    node = Node("nod_" + uuid.uuid4().hex, owner, name, scopes, now)
    try:
        await store.add_node(node)
    except StoreError as error:
        raise NodeError(409, str(error)) from None
    return node, node_token(authority, node, ttl)


def node_token(authority: TokenAuthority | JwksAuthority, node: Node, ttl: float) -> str:
    """The node's JWT: its owner's ``sub`` and ``tid``, the role ``node``, its id
    in ``nid`` and, for the node's information, the scopes it was given."""
    extra = {NODE_CLAIM: node.node_id, SCOPES_CLAIM: list(node.scopes)}
    return authority.issue(node.owner.user_id, node.owner.tenant_id, (NODE_ROLE,), ttl, extra)
