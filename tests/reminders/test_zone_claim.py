"""The user's time zone comes from the token (docs/auth.md, "Claims"): the OIDC ``zoneinfo``
claim, an IANA name; UTC without one; anything else refuses the token with a clear reason."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from voisnap.errors import AuthenticationError
from voisnap.principal import Principal
from voisnap.server.auth import TokenAuthority

SECRET = b"s" * 32
ZONE_ERROR = (
    "The access token's 'zoneinfo' claim must be an IANA time zone name, such as 'Europe/Lisbon'."
)


def verified(**claims: Any) -> Principal:
    base = {"sub": "ada", "tid": "acme", "exp": int(time.time()) + 60}
    return TokenAuthority(SECRET).verify(jwt.encode({**base, **claims}, SECRET, "HS256"))


def test_zone_claim_names_the_users_zone() -> None:
    assert verified(zoneinfo="Asia/Tokyo").zone == "Asia/Tokyo"
    assert verified().zone == "UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", 9, ["UTC"], None])
def test_zone_claim_that_is_not_a_zone_refuses_the_token(zone: Any) -> None:
    with pytest.raises(AuthenticationError) as refused:
        verified(zoneinfo=zone)
    assert str(refused.value) == ZONE_ERROR
