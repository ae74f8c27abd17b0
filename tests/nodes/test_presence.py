"""A node's presence reaches its owner's notifications (issue 15, docs/hubs/node.md "Presence").

The heartbeat interval is shrunk to half a second, so that "missed two
heartbeats" takes about 1.25 s; every wait is on the event itself, with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from tests.nodes.conftest import NODE_SETTINGS
from tests.support.server import ServerProcess
from tests.support.ws_client import HubClient, open_hub_client

from .support import hand_node, http, register, wait_for_status

TIMEOUT = 20
INTERVAL = 0.5


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("node-presence") / "data"
    settings = {**NODE_SETTINGS, "node_heartbeat_interval": str(INTERVAL)}
    with ServerProcess(data, settings) as server:
        yield server


async def next_event(feed: HubClient, *names: str) -> dict[str, Any]:
    while True:
        message = await feed.receive_message()
        if message.get("target") in names:
            return {"event": message["target"], **message["arguments"][0]}


async def test_presence_online_on_connect_offline_when_heartbeats_stop(hub: ServerProcess) -> None:
    user = hub.token("ada")
    node_id, token = await register(hub, user, "laptop", ["echo"])
    with trio.fail_after(TIMEOUT):
        feed_url = f"{hub.ws_url}/hubs/notifications"
        async with open_hub_client(feed_url, token=user) as feed, hand_node(hub, token) as node:
            online = await next_event(feed, "NodeOnline", "NodeOffline")
            # Heartbeats keep it online past two intervals (a heartbeat every
            # half interval: the pace of the test, not a wait for an event)...
            for _ in range(6):
                await node.client.call("Heartbeat", {"nodeId": node_id, "uptime": 1})
                await trio.sleep(INTERVAL / 2)
            assert (await wait_for_status(hub, user, node_id, "online"))["uptime"] == 1
            # ...and without them it goes offline, though still connected.
            offline = await next_event(feed, "NodeOnline", "NodeOffline")
    assert (online["event"], online["nodeId"], online["name"]) == ("NodeOnline", node_id, "laptop")
    assert (offline["event"], offline["nodeId"]) == ("NodeOffline", node_id)
    assert set(offline) == {"event", "nodeId", "name", "at"}
    stored = (await http("GET", hub, "/notifications", user)).json()
    assert [n["event"] for n in stored] == ["NodeOffline", "NodeOnline"]  # newest first


async def test_presence_disconnect_and_revocation_are_announced_once(hub: ServerProcess) -> None:
    user = hub.token("bea")
    node_id, token = await register(hub, user, "desktop", ["echo"])
    other_id, other_token = await register(hub, user, "phone", ["echo"])
    events: list[dict[str, Any]] = []
    with trio.fail_after(TIMEOUT):
        async with open_hub_client(f"{hub.ws_url}/hubs/notifications", token=user) as feed:
            async with hand_node(hub, token):
                events.append(await next_event(feed, "NodeOnline", "NodeOffline"))
            events.append(await next_event(feed, "NodeOnline", "NodeOffline"))
            beat = await http("POST", hub, "/api/nodes/me/heartbeat", other_token, {"uptime": 5})
            events.append(await next_event(feed, "NodeOnline", "NodeOffline"))
            await http("DELETE", hub, f"/api/nodes/{other_id}", user)
            events.append(await next_event(feed, "NodeOnline", "NodeOffline"))
            # Nothing more comes for either node: a sentinel from the same feed arrives first.
            await http("POST", hub, "/api/nodes/me/heartbeat", token, {})
            events.append(await next_event(feed, "NodeOnline", "NodeOffline"))
    assert beat.status_code == 200
    assert [(e["event"], e["nodeId"]) for e in events] == [
        ("NodeOnline", node_id),
        ("NodeOffline", node_id),
        ("NodeOnline", other_id),
        ("NodeOffline", other_id),
        ("NodeOnline", node_id),
    ]
