"""Negotiated connection tokens nobody claims are purged by the heartbeat (issue 8).

A client may negotiate and never connect. Before, such tokens were dropped only
when the next negotiate came along, so a flood of negotiations followed by
silence held memory until someone negotiated again.
"""

from __future__ import annotations

import trio
import trio.testing

from voisnap.config import Settings
from voisnap.principal import Principal
from voisnap.server.auth import TokenAuthority
from voisnap.server.hub_server import HubServer


async def test_heartbeat_purges_negotiations_no_transport_claimed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = HubServer(Settings(disconnect_timeout=2), TokenAuthority(b"k" * 32))
    alice = Principal(user_id="alice", tenant_id="acme")
    for _ in range(100):
        server.registry.negotiate("/hubs/x", alice, 1)
    assert server.registry.pending == 100
    with trio.move_on_after(4):
        await server.run_heartbeat()
    assert server.registry.pending == 0
