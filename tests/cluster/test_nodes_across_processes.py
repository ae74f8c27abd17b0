"""Nodes across processes (issue 15): the node on one process, its owner on the other.

Two ``voisnap serve`` processes on one Redis and one store (the shared SQLite file of their
data dir, or one PostgreSQL database), each reached on its own port. The node (a hand-driven
hub client, ``tests/nodes/support.py``) connects to process 0; every REST call of its owner
goes to process 1. What crosses: the command (delivered by process 0, which holds the node's
connection, after process 1 stored it), the result (recorded on 0, answered on 1), a long
poll waiting on 0 woken by a command posted on 1, the scope change and the revocation
(posted on 1, told to the node on 0), and presence: a node that stops heartbeating is
marked offline by one process's sweep, one conditional update, so ``NodeOffline`` is
stored and sent once, though both processes sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from tests.cluster.conftest import StartCluster
from tests.nodes.support import (
    dispatch_soon,
    hand_node,
    http,
    register,
    wait_for_polls,
    wait_for_status,
)
from tests.support.cluster import Cluster
from tests.support.server import ServerProcess
from tests.support.ws_client import CLOSE, open_hub_client

INTERVAL = 0.5
TIMEOUT = 30


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, start_cluster: StartCluster) -> Cluster:
    settings = {"node_heartbeat_interval": str(INTERVAL), "client_result_timeout": "30"}
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_server")
        postgres.start()
        settings["database_url"] = postgres.new_database("nodes")
    return start_cluster(settings=settings)


@pytest.fixture
def sides(cluster: Cluster) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(the node's process, the owner's process)."""
    yield cluster.nodes[0], cluster.nodes[1]


async def test_nodes_across_processes_dispatch_scopes_poll_and_revoke(
    cluster: Cluster, sides: tuple[ServerProcess, ServerProcess]
) -> None:
    near, far = sides
    user = cluster.token("ada")
    node_id, token = await register(far, user, "laptop", ["echo"])
    poller_id, poller_token = await register(far, user, "poller", ["echo"])
    with trio.fail_after(TIMEOUT):
        async with hand_node(near, token) as node, trio.open_nursery() as nursery:
            await wait_for_status(far, user, node_id, "online")
            pending = dispatch_soon(nursery, far, user, node_id, {"command": "echo", "params": 7})
            invocation = await node.next_invocation("ExecuteCommand")
            await node.answer(invocation, {"ok": True, "result": 7})
            answered = await pending.result()

            later = dispatch_soon(nursery, far, user, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            await node.answer(invocation, {"accepted": True})
            command_id = invocation["arguments"][0]["commandId"]
            await node.client.call("CommandResult", {"commandId": command_id, "ok": True})
            answered_later = await later.result()

            patched = await http("PATCH", far, f"/api/nodes/{node_id}", user, {"scopes": ["x"]})
            refresh = await node.next_invocation("RefreshScopes")

            # A long poll on the near process, woken by a command posted on the far one.
            await http("POST", near, "/api/nodes/me/heartbeat", poller_token, {})
            polls: list[dict[str, Any]] = []

            async def poll() -> None:
                polls.append(
                    (await http("GET", near, "/api/nodes/me/commands", poller_token)).json()
                )

            nursery.start_soon(poll)
            await wait_for_polls(near)  # the poll is waiting: the command must wake it
            polled = dispatch_soon(nursery, far, user, poller_id, {"command": "echo"})
            while not polls:
                await trio.sleep(0.02)
            [delivery] = polls[0]["commands"]
            path = f"/api/nodes/me/commands/{delivery['commandId']}/result"
            await http("POST", far, path, poller_token, {"ok": True, "result": "polled"})
            answered_by_poll = await polled.result()

            deleted = await http("DELETE", far, f"/api/nodes/{node_id}", user)
            revoke = await node.next_invocation("RevokeAccess")
            close = await node.client.receive_message()
    assert answered.status_code == 200 and answered.json()["result"] == 7, answered.text
    assert answered_later.status_code == 200, answered_later.text
    assert patched.status_code == 200 and refresh["arguments"] == [{"scopes": ["x"]}]
    assert answered_by_poll.status_code == 200 and answered_by_poll.json()["result"] == "polled"
    assert deleted.status_code == 204 and revoke["arguments"] == [{}]
    assert close["type"] == CLOSE and "revoked" in close["error"]
    refused = await http("POST", near, "/hubs/node/negotiate?negotiateVersion=1", token)
    assert refused.status_code == 401


async def test_nodes_across_processes_offline_is_announced_once(
    cluster: Cluster, sides: tuple[ServerProcess, ServerProcess]
) -> None:
    """Both processes sweep every quarter second; the node's presence lapses for both."""
    near, far = sides
    user = cluster.token("bea")
    quiet_id, quiet_token = await register(far, user, "quiet", ["echo"])
    later_id, later_token = await register(far, user, "sentinel", ["echo"])
    events: list[tuple[str, str]] = []
    with trio.fail_after(TIMEOUT):
        feed_url = f"{far.ws_url}/hubs/notifications"
        async with open_hub_client(feed_url, token=user) as feed, hand_node(near, quiet_token):
            await wait_for_status(far, user, quiet_id, "online")
            # It stays connected and says nothing more: offline after 2.5 intervals.
            await wait_for_status(far, user, quiet_id, "offline")
            # The sentinel goes online, then quiet too: when its NodeOffline comes,
            # each process has swept many times since the first one lapsed.
            await http("POST", near, "/api/nodes/me/heartbeat", later_token, {})
            while ("NodeOffline", later_id) not in events:
                message = await feed.receive_message()
                if message.get("target") in ("NodeOnline", "NodeOffline"):
                    events.append((message["target"], message["arguments"][0]["nodeId"]))
    assert events.count(("NodeOffline", quiet_id)) == 1, events
    assert events.count(("NodeOnline", quiet_id)) == 1, events
    stored = (await http("GET", far, "/notifications", user)).json()
    offline = [n for n in stored if n["event"] == "NodeOffline"]
    assert sorted(n["payload"]["nodeId"] for n in offline) == sorted([quiet_id, later_id])


async def test_nodes_across_processes_a_dead_process_leaves_its_node_offline_and_commands_settled(
    cluster: Cluster, sides: tuple[ServerProcess, ServerProcess]
) -> None:
    """The process that holds the node's connection is killed outright (SIGKILL): nobody
    hears the node any more, so its presence lapses and the other process marks it offline
    (``NodeOffline`` once); the command it was running fails ("node disconnected"), and the
    queued one waits for the node's next connection, where it is delivered again."""
    near, far = sides
    user = cluster.token("cy")
    node_id, token = await register(far, user, "orphan", ["echo"])
    with trio.fail_after(TIMEOUT):
        async with (
            open_hub_client(f"{far.ws_url}/hubs/notifications", token=user) as feed,
            trio.open_nursery() as nursery,
        ):
            async with hand_node(near, token) as node:
                await wait_for_status(far, user, node_id, "online")
                plain = dispatch_soon(nursery, far, user, node_id, {"command": "echo"})
                await node.next_invocation("ExecuteCommand")
                queued = dispatch_soon(
                    nursery, far, user, node_id, {"command": "echo", "queue": True}
                )
                second = await node.next_invocation("ExecuteCommand")
                await trio.to_thread.run_sync(near.kill)
            failed = await plain.result()
            while True:
                message = await feed.receive_message()
                if message.get("target") == "NodeOffline":
                    break
            async with hand_node(far, token) as node:
                again = await node.next_invocation("ExecuteCommand")
                await node.answer(again, {"ok": True, "result": "after the crash"})
                delivered = await queued.result()
    assert failed.status_code == 502 and failed.json()["error"] == "node disconnected"
    assert message["arguments"][0]["nodeId"] == node_id
    assert again["arguments"][0]["commandId"] == second["arguments"][0]["commandId"]
    assert delivered.status_code == 200 and delivered.json()["result"] == "after the crash"
