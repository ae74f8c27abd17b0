"""A tenant's places in the Voisnap session limit are never lost to clients that
leave at the worst moment: right after the handshake, while the server is still
starting their session (a review found that such a client kept its place for good).
"""

from __future__ import annotations

import trio

from tests.hostile.voisnap_client import CHAT, TIMEOUT, VOICE, make_token, open_voisnap, unique
from tests.support.server import ServerProcess

LIMIT = 2
SERVER_SETTINGS = {"agent_token_delay": "0.001", "max_sessions_per_tenant": str(LIMIT)}


async def test_clients_gone_right_after_the_handshake_give_their_places_back(
    server: ServerProcess,
) -> None:
    tenant = unique("tenant")
    for attempt in range(12):
        hub = (CHAT, VOICE)[attempt % 2]
        async with open_voisnap(server, hub, token=make_token(unique("user"), tenant)):
            pass  # gone at once: the session may be starting, or just started
    # Every place comes back: at once for most, within a lease for any the
    # server holds until it notices (a renewal lets go of links nobody holds).
    with trio.fail_after(TIMEOUT * 2):
        while True:
            async with open_voisnap(server, CHAT, token=make_token(unique("u"), tenant)) as a, \
                    open_voisnap(server, VOICE, token=make_token(unique("u"), tenant)) as b:
                first = await a.next_event("SessionStarted", "Error")
                second = await b.next_event("SessionStarted", "Error")
                if first[0] == second[0] == "SessionStarted":
                    return
            await trio.sleep(0.2)  # a place is still held: a lease renewal frees it
