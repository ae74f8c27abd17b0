"""Who a connection belongs to, as proven by its access token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class Principal:
    """The claims voisnap uses: ``sub`` (user), ``tid`` (tenant), ``roles``, ``exp``."""

    user_id: str
    tenant_id: str
    roles: frozenset[str] = frozenset()
    expires_at: float | None = None
    """Unix time at which the token expires; the connection is closed then."""
    claims: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    def has_role(self, role: str) -> bool:
        return role in self.roles
