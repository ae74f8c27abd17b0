"""The reference node, ``voisnap node``, run as a user runs it, against a real server (issue 15).

Over WebSockets and over polling: commands round trip; the node's root holds
(``..``, absolute paths, a symbolic link out of the root); scopes hold on both
sides; ``RefreshScopes`` is acknowledged; a revoked node stops with status 3 and
its token is refused. Then the agent's ``run_on_node`` tool: approval asked,
approved, run on the node, the result in the agent's reply.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.server import ServerProcess
from tests.support.ws_client import open_hub_client
from voisnap.node_client import NodeConfig, ReferenceNode

from .conftest import NODE_SETTINGS
from .support import http, node_status, register, wait_for_status

TIMEOUT = 30
TRANSPORTS = ["websockets", "polling"]


class NodeProcess:
    """``voisnap node`` in a process of its own, stopped by the PID it was started with."""

    def __init__(self, server: ServerProcess, token: str, transport: str, root: Path, *args: str):
        command = [
            sys.executable, "-m", "voisnap", "node", "--url", server.url, "--token", token,
            "--transport", transport, "--root", str(root), "--heartbeat-interval", "1", *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.process.wait(timeout)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "hello.txt").write_text("hello from the node\n")
    (tmp_path / "secret.txt").write_text("TOP SECRET\n")
    os.symlink(tmp_path / "secret.txt", root / "docs" / "escape.txt")
    os.symlink(tmp_path, root / "up")
    return root


async def run(hub: ServerProcess, user: str, node_id: str, command: str, params: Any = None):
    body = {"command": command, "params": params or {}, "timeoutSeconds": 15}
    return await http("POST", hub, f"/api/nodes/{node_id}/commands", user, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reference_node_runs_commands_within_its_root_and_scopes(
    hub: ServerProcess, root: Path, transport: str
) -> None:
    user = hub.token(f"user-{transport}")
    scopes = ["echo", "system_info", "list_dir", "read_file", "shell"]
    node_id, token = await register(hub, user, "laptop", scopes)
    node = NodeProcess(hub, token, transport, root)  # no --allow-shell
    try:
        with trio.fail_after(TIMEOUT):
            online = await wait_for_status(hub, user, node_id, "online")
            echo = await run(hub, user, node_id, "echo", {"text": "hi"})
            info = await run(hub, user, node_id, "system_info")
            listed = await run(hub, user, node_id, "list_dir", {"path": "docs"})
            read = await run(hub, user, node_id, "read_file", {"path": "docs/hello.txt"})
            refusals = [
                await run(hub, user, node_id, "read_file", {"path": path})
                for path in ("../secret.txt", str(root / "docs" / "hello.txt"),
                             "docs/escape.txt", "up/secret.txt")
            ]  # fmt: skip
            outside = await run(hub, user, node_id, "list_dir", {"path": "up"})
            shell = await run(hub, user, node_id, "shell", {"command": "echo no"})
            unscoped = await run(hub, user, node_id, "reboot")
    finally:
        log = node.stop()
    assert online["transport"] == transport
    assert echo.status_code == 200, (echo.text, log)
    assert echo.json()["result"] == {"text": "hi"}
    assert info.status_code == 200 and {"hostname", "platform"} <= set(info.json()["result"])
    names = {entry["name"] for entry in listed.json()["result"]["entries"]}
    assert names == {"hello.txt", "escape.txt"}
    assert read.json()["result"]["content"] == "hello from the node\n"
    for refused in [*refusals, outside]:
        assert refused.status_code == 502, refused.text
        assert "TOP SECRET" not in refused.text
    assert shell.status_code == 502 and "shell" in shell.json()["error"]
    assert unscoped.status_code == 403  # the gateway refuses before sending


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reference_node_refresh_scopes_and_revocation(
    hub: ServerProcess, root: Path, transport: str
) -> None:
    user = hub.token(f"revoker-{transport}")
    node_id, token = await register(hub, user, "box", ["echo", "shell"])
    node = NodeProcess(hub, token, transport, root, "--allow-shell")
    try:
        with trio.fail_after(TIMEOUT):
            await wait_for_status(hub, user, node_id, "online")
            shell = await run(hub, user, node_id, "shell", {"command": "echo shelled"})
            patched = await http("PATCH", hub, f"/api/nodes/{node_id}", user, {"scopes": ["echo"]})
            if transport == "websockets":  # a polling node learns its scopes at its next poll
                while (await node_status(hub, user, node_id))["acknowledgedScopes"] != ["echo"]:
                    await trio.sleep(0.05)
            echo = await run(hub, user, node_id, "echo", {"n": 1})
            deleted = await http("DELETE", hub, f"/api/nodes/{node_id}", user)
            status = await trio.to_thread.run_sync(node.wait)
    finally:
        log = node.stop()
    assert shell.status_code == 200, (shell.text, log)
    assert shell.json()["result"]["stdout"] == "shelled\n"
    assert patched.status_code == 200
    assert echo.status_code == 200
    assert deleted.status_code == 204
    assert status == 3, log
    assert "revoked" in log.lower()
    again = NodeProcess(hub, token, transport, root)
    try:
        assert await trio.to_thread.run_sync(again.wait) == 3
    finally:
        again.stop()


async def test_reference_node_run_on_node_tool_with_approval(
    hub: ServerProcess, root: Path
) -> None:
    user = hub.token("agent-user")
    node_id, token = await register(hub, user, "laptop", ["echo"])
    node = NodeProcess(hub, token, "websockets", root)
    try:
        with trio.fail_after(TIMEOUT):
            await wait_for_status(hub, user, node_id, "online")
            async with (
                open_hub_client(f"{hub.ws_url}/hubs/chat", token=user) as chat,
                open_hub_client(f"{hub.ws_url}/hubs/approvals", token=user) as approvals,
            ):
                sent = await chat.call(
                    "SendMessage",
                    {
                        "sessionId": None,
                        "agentId": "sophon",
                        "content": 'run echo on node laptop with {"text": "from the agent"}',
                        "channelId": "webchat",
                        "attachments": [],
                        "isStreaming": True,
                    },
                )
                requested = await next_target(approvals, "ApprovalRequested")
                history_before = (
                    await http("GET", hub, f"/api/nodes/{node_id}/commands", user)
                ).json()
                decided = await http(
                    "POST",
                    hub,
                    f"/approvals/{requested['id']}/decision",
                    user,
                    {"outcome": "approved"},
                )
                reply = await next_target(chat, "ReceiveMessage")
    finally:
        node.stop()
    assert requested["toolName"] == "run_on_node" and requested["taskId"] == sent["taskId"]
    assert requested["params"] == {
        "node": "laptop",
        "command": "echo",
        "params": {"text": "from the agent"},
    }
    assert history_before == []  # nothing ran before the approval
    assert decided.status_code == 200
    assert "ran echo" in reply["content"] and "from the agent" in reply["content"]
    history = (await http("GET", hub, f"/api/nodes/{node_id}/commands", user)).json()
    assert [(c["command"], c["status"]) for c in history] == [("echo", "succeeded")]


async def next_target(client: Any, target: str) -> dict[str, Any]:
    while True:
        message = await client.receive_message()
        if message.get("target") == target:
            return message["arguments"][0]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reference_node_reconnects_when_the_server_comes_back(
    tmp_path: Path, root: Path, transport: str
) -> None:
    """The server stops and starts again (same port, same data): the node, backing off,
    connects again by itself, and commands reach it."""
    first = ServerProcess(tmp_path / "data", NODE_SETTINGS).start()
    port = first.port
    user = first.token("returning")
    node_id, token = await register(first, user, "laptop", ["echo"])
    config = NodeConfig(
        url=first.url, token=token, transport=transport, root=root, heartbeat_interval=1,
        backoff_delays=(0.0, 0.2), request_timeout=5, poll_wait=1,
    )  # fmt: skip
    second: ServerProcess | None = None
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                node: ReferenceNode = await nursery.start(ReferenceNode(config).run)
                await node.wait_connected(1)
                await trio.to_thread.run_sync(first.stop)
                second = ServerProcess(tmp_path / "data", NODE_SETTINGS, port=port).start()
                await node.wait_connected(2)
                await wait_for_status(second, user, node_id, "online")
                echo = await run(second, user, node_id, "echo", {"back": True})
                nursery.cancel_scope.cancel()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert echo.status_code == 200 and echo.json()["result"] == {"back": True}
