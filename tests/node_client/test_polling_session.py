"""The node over HTTP polling (docs/hubs/node.md, "Polling"), against an
``httpx.MockTransport`` playing the gateway's ``/api/nodes/me/...`` routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from voisnap.node_client.config import NodeConfig
from voisnap.node_client.node import ReferenceNode

from .helpers import node_token

TOKEN = node_token("nod_1")
BASE = "http://gateway.test"


class FakePollingGateway:
    """Polls are answered from ``polls`` (a channel the test fills); every request is kept."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.send_poll, self._polls = trio.open_memory_channel[httpx.Response](10)
        self.send_result, self.results = trio.open_memory_channel[httpx.Request](10)
        self.heartbeats = trio.Event()
        self.result_status = 200

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/nodes/me/heartbeat":
            self.heartbeats.set()
            return httpx.Response(200, json={"intervalSeconds": 30})
        if path == "/api/nodes/me/commands":
            return await self._polls.receive()
        if path.endswith("/result"):
            status = self.result_status  # as it was when the request came
            await self.send_result.send(request)
            return httpx.Response(status, json={"status": "succeeded"})
        return httpx.Response(404)

    async def poll_answer(self, *commands: dict[str, Any], scopes: list[str] | None = None) -> None:
        body = {"commands": list(commands), "scopes": scopes or ["echo", "read_file"]}
        await self.send_poll.send(httpx.Response(200, json=body))


@asynccontextmanager
async def polling_node(gateway: FakePollingGateway, root: Path) -> AsyncIterator[ReferenceNode]:
    config = NodeConfig(
        url=BASE, token=TOKEN, transport="polling", root=root, backoff_delays=(0.0,)
    )
    node = ReferenceNode(config, http_transport=httpx.MockTransport(gateway.handle))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.run)
            yield node
            nursery.cancel_scope.cancel()


def command(command_id: str, name: str, params: Any = None) -> dict[str, Any]:
    return {"commandId": command_id, "command": name, "params": params}


async def test_polling_heartbeats_first_with_the_token(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    async with polling_node(gateway, tmp_path):
        await gateway.heartbeats.wait()
    heartbeat = gateway.requests[0]
    assert heartbeat.method == "POST"
    assert heartbeat.url == f"{BASE}/api/nodes/me/heartbeat"
    assert heartbeat.headers["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(heartbeat.content)
    assert body["status"] == "ready"
    assert 0 <= body["uptime"] < 10


async def test_polling_runs_commands_and_posts_results(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    async with polling_node(gateway, tmp_path):
        await gateway.poll_answer(command("cmd_1", "echo", {"text": "hi"}))
        posted = await gateway.results.receive()
    assert posted.method == "POST"
    assert posted.url.path == "/api/nodes/me/commands/cmd_1/result"
    assert json.loads(posted.content) == {"ok": True, "result": {"text": "hi"}}
    poll = next(r for r in gateway.requests if r.url.path == "/api/nodes/me/commands")
    assert poll.method == "GET"
    assert poll.url.params["wait"] == "25"


async def test_polling_adopts_the_scopes_of_each_poll(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    async with polling_node(gateway, tmp_path) as node:
        await gateway.poll_answer(command("cmd_1", "echo", 1), scopes=["read_file"])
        posted = await gateway.results.receive()
    assert node.scopes.current == frozenset({"read_file"})
    assert json.loads(posted.content) == {
        "ok": False,
        "error": "The scope 'echo' was not granted to this node.",
    }


async def test_polling_repeated_command_runs_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first")
    gateway = FakePollingGateway()
    async with polling_node(gateway, tmp_path):
        await gateway.poll_answer(command("cmd_1", "read_file", {"path": "a.txt"}))
        first = await gateway.results.receive()
        (tmp_path / "a.txt").write_text("second")
        await gateway.poll_answer(command("cmd_1", "read_file", {"path": "a.txt"}))
        again = await gateway.results.receive()
    assert json.loads(first.content) == json.loads(again.content)
    assert json.loads(again.content)["result"]["content"] == "first"


async def test_polling_answered_already_is_not_an_error(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    gateway.result_status = 409
    async with polling_node(gateway, tmp_path) as node:
        await gateway.poll_answer(command("cmd_1", "echo", 1))
        await gateway.results.receive()
        await gateway.poll_answer(command("cmd_2", "echo", 2))
        await gateway.results.receive()
        assert node.connections == 1


async def test_polling_refused_poll_stops_the_node(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    config = NodeConfig(url=BASE, token=TOKEN, transport="polling", root=tmp_path)
    node = ReferenceNode(config, http_transport=httpx.MockTransport(gateway.handle))
    await gateway.send_poll.send(httpx.Response(401, text="This node's access has been revoked."))
    with trio.fail_after(10):
        status = await node.run()
    assert status == 3
    assert node.stop_reason == (
        "the server refused the token (401): This node's access has been revoked."
    )


async def test_polling_network_error_reconnects(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    async with polling_node(gateway, tmp_path) as node:
        await gateway.send_poll.send(httpx.Response(503))
        await node.wait_connected(2)
        await gateway.poll_answer(command("cmd_1", "echo", "back"))
        posted = await gateway.results.receive()
    assert json.loads(posted.content) == {"ok": True, "result": "back"}


async def test_polling_unsent_result_is_posted_by_the_next_session(tmp_path: Path) -> None:
    gateway = FakePollingGateway()
    async with polling_node(gateway, tmp_path) as node:
        gateway.result_status = 500  # the post fails: the session ends, the outcome waits
        await gateway.poll_answer(command("cmd_1", "echo", "late"))
        await gateway.results.receive()
        gateway.result_status = 200
        await node.wait_connected(2)
        posted = await gateway.results.receive()
    assert posted.url.path == "/api/nodes/me/commands/cmd_1/result"
    assert json.loads(posted.content) == {"ok": True, "result": "late"}


async def test_polling_backoff_then_reset_after_a_connection(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Delays 0, 2, 10, 30, 30 s between failed attempts; a connection that worked
    resets them, so the next failure is retried at once, and the one after in 2 s
    (docs/hubs/node.md)."""
    attempts: list[float] = []
    answers = [503, 503, 503, 503, 503, 200, 503, 200]

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/nodes/me/heartbeat":
            attempts.append(trio.current_time())
            return httpx.Response(answers.pop(0))
        if not answers:  # the last heartbeat worked: stay connected
            await trio.sleep_forever()
        return httpx.Response(503)  # the poll after the first good heartbeat fails

    config = NodeConfig(url=BASE, token=TOKEN, transport="polling", root=tmp_path)
    node = ReferenceNode(config, http_transport=httpx.MockTransport(handle))
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(node.run)
        await node.wait_connected(2)
        nursery.cancel_scope.cancel()
    assert [round(at - start) for at in attempts] == [0, 2, 12, 42, 72, 102, 102, 104]


async def test_run_reference_node_hands_back_the_node(tmp_path: Path) -> None:
    from voisnap.node_client import run_reference_node

    # Nothing listens there; the node is stopped before it tries anyway.
    config = NodeConfig(url="http://127.0.0.1:9", token=TOKEN, transport="polling", root=tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_reference_node, config)
            assert isinstance(node, ReferenceNode)
            assert node.identity.node_id == "nod_1"
            nursery.cancel_scope.cancel()
