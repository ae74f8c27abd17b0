"""A hub sees its connection request's query (``Context.query``, ASP.NET's
``GetHttpContext().Request.Query``) without the transport's own parameters:
the access token never reaches hub code."""

from __future__ import annotations

from voisnap.config import Settings
from voisnap.hubs.hub import Hub
from voisnap.server.auth import TokenAuthority
from voisnap.server.hub_server import HubServer, hub_query
from voisnap.transports.base import TransportType


class QueryHub(Hub):
    async def echo(self) -> None: ...


def test_the_transports_parameters_are_left_out() -> None:
    query = {"access_token": "secret", "id": "token", "agentId": "sophon", "language": "es"}
    assert hub_query(query) == {"agentId": "sophon", "language": "es"}


async def test_an_admitted_websocket_carries_the_hubs_query() -> None:
    authority = TokenAuthority(b"k" * 32)
    server = HubServer(Settings(), authority)
    server.mount("/hubs/q", QueryHub)
    token = authority.issue("alice", "acme")
    query = {"access_token": token, "agentId": "sophon", "metadata": "{}"}
    admission = await server.admit("/hubs/q", {}, query, TransportType.WEB_SOCKETS)
    assert admission.query == {"agentId": "sophon", "metadata": "{}"}
