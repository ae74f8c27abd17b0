"""What the node tests share: registering nodes, dispatching, and a node by hand.

A node by hand (``HandNode``) is the test's own hub client on ``/hubs/node``:
it sees exactly what the gateway sends (``ExecuteCommand`` as an Invocation
with an id, ``RefreshScopes``, ``RevokeAccess``, Close) and answers however
the test likes, garbage included. The reference node (``voisnap node``) is
tested as a user runs it, as a process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from tests.support.server import ServerProcess
from tests.support.ws_client import (
    COMPLETION,
    INVOCATION,
    HubClient,
    open_hub_client,
    wait_for_stats,
)

HTTP_TIMEOUT = 60.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def http(
    method: str, server: ServerProcess, path: str, token: str, body: Any = None, **query: Any
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as client:
        return await client.request(
            method, server.url + path, json=body, headers=bearer(token), params=query or None
        )


async def register(
    server: ServerProcess, user_token: str, name: str, scopes: list[str]
) -> tuple[str, str]:
    """A new node of the token's user: its id and its token."""
    response = await http(
        "POST", server, "/api/nodes", user_token, {"name": name, "scopes": scopes}
    )
    assert response.status_code == 201, response.text
    document = response.json()
    return document["nodeId"], document["token"]


async def node_status(server: ServerProcess, user_token: str, node_id: str) -> dict[str, Any]:
    response = await http("GET", server, f"/api/nodes/{node_id}", user_token)
    assert response.status_code == 200, response.text
    return response.json()


async def wait_for_status(
    server: ServerProcess, user_token: str, node_id: str, status: str, timeout: float = 20
) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while (found := await node_status(server, user_token, node_id))["status"] != status:
            await trio.sleep(0.05)
    return found


async def wait_for_polls(server: ServerProcess, count: int = 1) -> None:
    """Until ``count`` node polls wait in the server (``GET /stats``: ``nodes.polls_waiting``)."""
    await wait_for_stats(server.url, lambda stats: stats["nodes"]["polls_waiting"] >= count)


class Dispatch:
    """``POST /api/nodes/{id}/commands`` in the background: it answers when the command ends."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.done = trio.Event()

    async def run(self, server: ServerProcess, token: str, node_id: str, body: Any) -> None:
        self.response = await http("POST", server, f"/api/nodes/{node_id}/commands", token, body)
        self.done.set()

    async def result(self, timeout: float = 30) -> httpx.Response:
        with trio.fail_after(timeout):
            await self.done.wait()
        assert self.response is not None
        return self.response


def dispatch_soon(
    nursery: trio.Nursery, server: ServerProcess, token: str, node_id: str, body: Any
) -> Dispatch:
    dispatch = Dispatch()
    nursery.start_soon(dispatch.run, server, token, node_id, body)
    return dispatch


class HandNode:
    """A node driven by the test, over a raw hub connection."""

    def __init__(self, client: HubClient) -> None:
        self.client = client

    async def next_invocation(self, target: str | None = None) -> dict[str, Any]:
        """The next Invocation from the gateway (of ``target``, if given)."""
        while True:
            message = await self.client.receive_message()
            if message.get("type") == INVOCATION and target in (None, message.get("target")):
                return message

    async def answer(self, invocation: dict[str, Any], result: Any) -> None:
        await self.client.send_record(
            {"type": COMPLETION, "invocationId": invocation["invocationId"], "result": result}
        )

    async def fail(self, invocation: dict[str, Any], error: str) -> None:
        await self.client.send_record(
            {"type": COMPLETION, "invocationId": invocation["invocationId"], "error": error}
        )


@asynccontextmanager
async def hand_node(server: ServerProcess, node_token: str) -> AsyncIterator[HandNode]:
    async with open_hub_client(f"{server.ws_url}/hubs/node", token=node_token) as client:
        yield HandNode(client)
