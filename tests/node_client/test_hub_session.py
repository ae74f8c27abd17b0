"""The node over ``/hubs/node`` (docs/hubs/node.md, "The hub"), against a fake
gateway (``fake_gateway.py``): negotiate, handshake, heartbeats, ExecuteCommand,
RefreshScopes, RevokeAccess, Close, and reconnection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from voisnap.node_client.config import NodeConfig
from voisnap.node_client.node import ReferenceNode

from .fake_gateway import FakeGateway, GatewayConnection
from .helpers import node_token

TOKEN = node_token("nod_1")


def make_config(gateway: FakeGateway, root: Path, **changes: Any) -> NodeConfig:
    config = NodeConfig(url=gateway.url, token=TOKEN, root=root, backoff_delays=(0.0,))
    return attrs.evolve(config, **changes)


@asynccontextmanager
async def running_node(
    gateway: FakeGateway, root: Path, **changes: Any
) -> AsyncIterator[tuple[ReferenceNode, trio.Nursery]]:
    """The gateway and a node, both cancelled when the block ends."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.serve)
            node = ReferenceNode(
                make_config(gateway, root, **changes), http_transport=gateway.http_transport()
            )
            nursery.start_soon(node.run)
            yield node, nursery
            nursery.cancel_scope.cancel()


async def first_connection(gateway: FakeGateway) -> GatewayConnection:
    connection = await gateway.next_connection()
    await connection.receive_invocation("Heartbeat")
    return connection


async def test_hub_negotiates_with_the_token_then_opens_the_websocket(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path):
        connection = await gateway.next_connection()
    (negotiate,) = gateway.negotiations
    assert negotiate.method == "POST"
    assert negotiate.url.path == "/hubs/node/negotiate"
    assert negotiate.url.params["negotiateVersion"] == "1"
    assert negotiate.headers["Authorization"] == f"Bearer {TOKEN}"
    assert connection.query == {"id": ["ct1"], "access_token": [TOKEN]}


async def test_hub_heartbeat_at_once(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path):
        connection = await gateway.next_connection()
        heartbeat = await connection.receive_invocation("Heartbeat")
    (payload,) = heartbeat["arguments"]
    assert payload["nodeId"] == "nod_1"
    assert payload["status"] == "ready"
    assert 0 <= payload["uptime"] < 10
    assert isinstance(heartbeat["invocationId"], str)


async def test_hub_heartbeats_every_interval(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path, heartbeat_interval=0.05):
        connection = await first_connection(gateway)
        second = await connection.receive_invocation("Heartbeat")
    assert second["arguments"][0]["uptime"] >= 0.05


async def test_hub_pings(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path, ping_interval=0.05):
        connection = await first_connection(gateway)
        while (await connection.receive())["type"] != 6:
            pass


async def test_hub_execute_command_answers_with_a_completion(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path):
        connection = await first_connection(gateway)
        result = await connection.execute("s1", "cmd_1", "echo", {"text": "hi"})
        failure = await connection.execute("s2", "cmd_2", "nope", {})
    assert result == {"ok": True, "result": {"text": "hi"}}
    assert failure == {"ok": False, "error": "This node has no command 'nope'."}


async def test_hub_repeated_command_id_runs_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first")
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path):
        connection = await first_connection(gateway)
        first = await connection.execute("s1", "cmd_1", "read_file", {"path": "a.txt"})
        (tmp_path / "a.txt").write_text("second")
        again = await connection.execute("s2", "cmd_1", "read_file", {"path": "a.txt"})
        other = await connection.execute("s3", "cmd_2", "read_file", {"path": "a.txt"})
    assert (
        first == again == {"ok": True, "result": {"path": "a.txt", "size": 5, "content": "first"}}
    )
    assert other["result"]["content"] == "second"


async def test_hub_slow_command_blocks_nothing(tmp_path: Path) -> None:
    """Each ExecuteCommand has a task of its own."""
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path, allow_shell=True):
        connection = await first_connection(gateway)
        await connection.send(
            {
                "type": 1,
                "invocationId": "s1",
                "target": "ExecuteCommand",
                "arguments": [
                    {"commandId": "slow", "command": "shell", "params": {"command": "sleep 30"}}
                ],
            }
        )
        assert await connection.execute("s2", "fast", "echo", 1) == {"ok": True, "result": 1}


async def test_hub_non_blocking_execute_command_answers_by_command_result(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path):
        connection = await first_connection(gateway)
        await connection.send(
            {
                "type": 1,
                "target": "ExecuteCommand",
                "arguments": [{"commandId": "cmd_9", "command": "echo", "params": "x"}],
            }
        )
        message = await connection.receive_invocation("CommandResult")
    assert message["arguments"] == [{"commandId": "cmd_9", "ok": True, "result": "x"}]


async def test_hub_refresh_scopes_is_adopted_and_acknowledged(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path) as (node, _):
        connection = await first_connection(gateway)
        await connection.send(
            {
                "type": 1,
                "target": "RefreshScopes",
                "arguments": [{"scopes": ["read_file", "list_dir"]}],
            }
        )
        changed = await connection.receive_invocation("ScopeChanged")
        refused = await connection.execute("s1", "cmd_1", "echo", {})
    assert changed["arguments"] == [{"scopes": ["list_dir", "read_file"]}]
    assert node.scopes.current == frozenset({"read_file", "list_dir"})
    assert refused == {"ok": False, "error": "The scope 'echo' was not granted to this node."}


async def test_hub_scopes_from_the_token_are_enforced(tmp_path: Path) -> None:
    gateway = FakeGateway()
    token = node_token("nod_1", scopes=["list_dir"])
    async with running_node(gateway, tmp_path, token=token):
        connection = await first_connection(gateway)
        refused = await connection.execute("s1", "cmd_1", "echo", {})
    assert refused["error"] == "The scope 'echo' was not granted to this node."


async def run_until_stopped(
    gateway: FakeGateway, root: Path, act: Callable[[FakeGateway], Awaitable[None]]
) -> tuple[ReferenceNode, int]:
    """Run a node while ``act`` plays the gateway; the node and its exit status."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.serve)
            node = ReferenceNode(
                make_config(gateway, root), http_transport=gateway.http_transport()
            )
            acted = trio.Event()

            async def play() -> None:
                await act(gateway)
                acted.set()

            nursery.start_soon(play)
            status = await node.run()
            await acted.wait()  # the gateway's side has seen all it expected
            nursery.cancel_scope.cancel()
    return node, status


async def test_hub_revoke_access_stops_the_node_with_status_3(tmp_path: Path) -> None:
    async def revoke(gateway: FakeGateway) -> None:
        connection = await first_connection(gateway)
        await connection.send({"type": 1, "target": "RevokeAccess", "arguments": [{}]})

    node, status = await run_until_stopped(FakeGateway(), tmp_path, revoke)
    assert status == 3
    assert node.stop_reason == "access revoked"


async def test_hub_revoke_access_as_a_client_result_is_answered_first(tmp_path: Path) -> None:
    completions = []

    async def revoke(gateway: FakeGateway) -> None:
        connection = await first_connection(gateway)
        await connection.send(
            {"type": 1, "invocationId": "s9", "target": "RevokeAccess", "arguments": [{}]}
        )
        completions.append(await connection.receive_completion("s9"))

    _, status = await run_until_stopped(FakeGateway(), tmp_path, revoke)
    assert status == 3
    assert completions == [{"type": 3, "invocationId": "s9"}]


async def test_hub_close_for_revocation_stops_the_node(tmp_path: Path) -> None:
    async def close(gateway: FakeGateway) -> None:
        connection = await first_connection(gateway)
        await connection.send({"type": 7, "error": "This node's access has been revoked."})

    node, status = await run_until_stopped(FakeGateway(), tmp_path, close)
    assert node.stop_reason == "access revoked"
    assert status == 3


@pytest.mark.parametrize("http_status", [401, 403])
async def test_hub_refused_token_stops_the_node_with_the_server_s_words(
    tmp_path: Path, http_status: int
) -> None:
    async def nothing(gateway: FakeGateway) -> None:
        pass

    gateway = FakeGateway(
        negotiate_status=http_status, negotiate_body="This node's access has been revoked."
    )
    node, exit_status = await run_until_stopped(gateway, tmp_path, nothing)
    assert exit_status == 3
    assert node.stop_reason == (
        f"the server refused the token ({http_status}): This node's access has been revoked."
    )
    assert len(gateway.negotiations) == 1  # not retried


async def test_hub_close_without_revocation_reconnects(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path) as (node, _):
        connection = await first_connection(gateway)
        await connection.send(
            {"type": 7, "error": "Server is shutting down.", "allowReconnect": True}
        )
        second = await first_connection(gateway)
        await node.wait_connected(2)
        assert await second.execute("s1", "cmd_1", "echo", 2) == {"ok": True, "result": 2}
    assert len(gateway.negotiations) == 2


async def test_hub_silent_server_means_a_dead_connection(tmp_path: Path) -> None:
    gateway = FakeGateway()
    async with running_node(gateway, tmp_path, server_timeout=0.2) as (node, _):
        await first_connection(gateway)  # then it says nothing more
        await first_connection(gateway)
    assert node.connections == 2


async def test_hub_result_of_a_lost_connection_is_sent_on_the_next(tmp_path: Path) -> None:
    """A command still running when its connection drops keeps running; its outcome
    goes to the gateway as CommandResult once the node is back."""
    gateway = FakeGateway()
    gate = tmp_path / "gate"
    async with running_node(gateway, tmp_path, allow_shell=True):
        connection = await first_connection(gateway)
        command = {"command": f"while [ ! -e {gate} ]; do sleep 0.01; done; echo done"}
        await connection.send(
            {
                "type": 1,
                "invocationId": "s1",
                "target": "ExecuteCommand",
                "arguments": [{"commandId": "cmd_1", "command": "shell", "params": command}],
            }
        )
        await connection.send({"type": 7, "error": "bye", "allowReconnect": True})
        second = await first_connection(gateway)
        gate.touch()
        message = await second.receive_invocation("CommandResult")
    assert message["arguments"] == [
        {
            "commandId": "cmd_1",
            "ok": True,
            "result": {"exitCode": 0, "stdout": "done\n", "stderr": ""},
        }
    ]
