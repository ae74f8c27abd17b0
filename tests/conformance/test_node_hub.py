"""The node hub with the official ``@microsoft/signalr`` client on both sides (issue 15).

The node is the official client with ``connection.on("ExecuteCommand", ...)``
returning a value (a client result), over WebSockets and long polling, JSON and
MessagePack: the hub speaks plain SignalR, nothing a node needs voisnap's own
code for. The user side is the official client on the notifications hub
(``NodeOnline``, ``NodeOffline``) and REST (``fetch``) for dispatch, scopes and
revocation (``node_hub.mjs``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from tests.conftest import FAST_SETTINGS
from tests.nodes.support import register
from tests.support.node import run_scenario
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("node-hub-js") / "data"
    # A long-polling node hears its Close at its next poll: give a loaded machine time
    # for it (the shrunk 2 s of FAST_SETTINGS would be a race with the client's turnaround).
    settings = {**FAST_SETTINGS, "client_result_timeout": "30", "shutdown_timeout": "10"}
    with ServerProcess(data, settings) as server:
        yield server


@pytest.mark.parametrize(
    ("transport", "protocol"),
    [("WebSockets", "json"), ("WebSockets", "messagepack"), ("LongPolling", "json")],
)
def test_node_hub_official_client_as_node_and_as_user(
    hub: ServerProcess, transport: str, protocol: str
) -> None:
    user = hub.token(f"js-{transport}-{protocol}")
    node_id, node_token = trio.run(register, hub, user, "js-node", ["echo", "later"])
    seen = run_scenario(
        "node_hub.mjs",
        timeout=60,
        base=hub.url,
        userToken=user,
        nodeToken=node_token,
        nodeId=node_id,
        transport=transport,
        protocol=protocol,
        keepAliveMs=1000,
    )
    assert (seen["online"]["nodeId"], seen["online"]["name"]) == (node_id, "js-node")
    assert seen["echo"]["status"] == 200
    assert seen["echo"]["body"]["result"] == {"command": "echo", "params": {"text": "hi"}}
    assert seen["answeredLater"]["status"] == 200
    assert seen["answeredLater"]["body"]["result"] == "sent later"
    assert "answered already" in seen["again"]
    assert seen["patched"] == 200
    assert seen["refresh"] == {"scopes": ["echo", "later", "x"]}
    assert seen["acknowledged"] == ["echo", "later", "x"]
    assert (seen["revoked"], seen["revoke"]) == (204, {})
    assert "revoked" in seen["closeError"]
    assert seen["offline"]["nodeId"] == node_id
    assert "401" in seen["restart"]
