"""A relay listener outlives its connection by a moment (the backplane
unsubscribes later, in the background); in that moment it must answer as
if the connection were gone, or a request for an ended connection is
accepted (a stateful client's WebSocket got 101 and was then cut)."""

from __future__ import annotations

from voisnap.config import Settings
from voisnap.principal import Principal
from voisnap.server import relay_commands as commands
from voisnap.server.auth import TokenAuthority
from voisnap.server.hub_server import HubServer
from voisnap.server.relayed import TransportListener
from voisnap.transports.base import TransportType

HUB = "/hubs/x"


async def probe(listener: TransportListener) -> commands.Answer:
    reply = await listener.request(
        commands.encode(commands.Probe(commands.Asker(HUB, "alice", "acme")))
    )
    answer = commands.decode(reply)
    assert isinstance(answer, commands.Answer)
    return answer


async def test_a_listener_whose_connection_ended_answers_404() -> None:
    server = HubServer(Settings(), TokenAuthority(b"k" * 32))
    alice = Principal(user_id="alice", tenant_id="acme")
    negotiated = server.registry.negotiate(HUB, alice, 1)
    token = negotiated.connection_token
    server.registry.claim(token, HUB, alice, TransportType.LONG_POLLING)
    negotiated.transport = object()  # type: ignore[assignment]  # any transport: Probe only asks
    listener = TransportListener(server, negotiated)
    assert (await probe(listener)).status == 200
    server.registry.release(token)
    assert (await probe(listener)).status == 404
