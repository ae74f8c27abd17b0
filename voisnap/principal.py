"""Who a connection belongs to, as proven by its access token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

ZONE_CLAIM = "zoneinfo"
"""The OIDC standard claim naming the user's time zone (an IANA name, ``Europe/Lisbon``)."""
DEFAULT_ZONE = "UTC"


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

    @property
    def zone(self) -> str:
        """The user's time zone: the token's ``zoneinfo`` claim, else UTC."""
        return zone_of(self.claims)


def zone_of(claims: Mapping[str, Any]) -> str:
    """The time zone ``claims`` name (checked when the token was read), else UTC."""
    zone = claims.get(ZONE_CLAIM)
    return zone if isinstance(zone, str) and zone else DEFAULT_ZONE
