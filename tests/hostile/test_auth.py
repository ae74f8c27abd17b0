"""Forged, expired and borrowed credentials (issue 8, case 7).

An access token that is unsigned (``alg: none``), signed with another key,
expired or without ``sub`` is refused with 401 on negotiate and on the
WebSocket upgrade; a connection token negotiated by alice and presented with
bob's access token is refused with 403 (TransportProtocols.md, "POST
[endpoint-base]/negotiate": the token is bound to the user who negotiated it).
"""

from __future__ import annotations

import pytest
import trio
import trio_websocket

from tests.hostile.helpers import (
    OTHER_SECRET,
    TIMEOUT,
    make_token,
    open_client,
    unsigned_token,
)
from tests.support.ws_client import negotiate

BAD_TOKENS = {
    "alg-none": lambda: unsigned_token("alice"),
    "wrong-key": lambda: make_token("alice", secret=OTHER_SECRET),
    "expired": lambda: make_token("alice", ttl=-60),
    "missing-sub": lambda: make_token("alice", drop=["sub"]),
    "empty-sub": lambda: make_token(""),
    "missing-tenant": lambda: make_token("alice", drop=["tid"]),
    "missing-exp": lambda: make_token("alice", drop=["exp"]),
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
async def test_bad_access_token_is_refused_401_on_negotiate(server, neighbour, name):
    with trio.fail_after(TIMEOUT):
        response = await negotiate(server.hub_url(), BAD_TOKENS[name]())
    assert response.status_code == 401, (response.status_code, response.text)
    await neighbour.check()


@pytest.mark.parametrize("name", list(BAD_TOKENS))
async def test_bad_access_token_is_refused_401_on_websocket(server, neighbour, name):
    with trio.fail_after(TIMEOUT):
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with open_client(server, BAD_TOKENS[name](), handshake=False):
                pass
    assert refused.value.status_code == 401, refused.value
    await neighbour.check()


async def test_connection_token_of_another_user_is_refused_403(server, neighbour):
    with trio.fail_after(TIMEOUT):
        negotiated = await negotiate(server.hub_url(), make_token("alice"))
        assert negotiated.status_code == 200, negotiated.text
        alices = negotiated.json()["connectionToken"]
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with open_client(server, make_token("bob"), handshake=False,
                                   connection_token=alices):
                pass
        assert refused.value.status_code == 403, refused.value
        # alice may still use her own connection token.
        async with open_client(server, make_token("alice"), connection_token=alices) as client:
            assert await client.call("Echo", "mine") == "mine"
    await neighbour.check()
