"""A stand-in for the gateway's side of ``/hubs/node``: just enough SignalR to drive
the node, so these tests need no voisnap server.

Negotiate is answered by an ``httpx.MockTransport``; the WebSocket is a real
trio-websocket server on 127.0.0.1, port 0. Each accepted connection does the
handshake and is handed to the test as a ``GatewayConnection``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import trio
import trio_websocket

HANDSHAKE = '{"protocol":"json","version":1}\x1e'


class GatewayConnection:
    """One node connection, seen from the gateway: hub messages as dicts."""

    def __init__(self, websocket: trio_websocket.WebSocketConnection, query: dict) -> None:
        self.websocket = websocket
        self.query = query
        self.finished = trio.Event()
        self._pending: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        while not self._pending:
            text = await self.websocket.get_message()
            self._pending += [json.loads(record) for record in text.split("\x1e") if record]
        return self._pending.pop(0)

    async def receive_invocation(self, target: str) -> dict[str, Any]:
        """The next Invocation of ``target``, answering each blocking one with null."""
        while True:
            message = await self.receive()
            if message["type"] == 1 and "invocationId" in message:
                await self.send(
                    {"type": 3, "invocationId": message["invocationId"], "result": None}
                )
            if message["type"] == 1 and message["target"] == target:
                return message

    async def receive_completion(self, invocation_id: str) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message["type"] == 3 and message["invocationId"] == invocation_id:
                return message

    async def send(self, *messages: dict[str, Any]) -> None:
        await self.websocket.send_message("".join(json.dumps(m) + "\x1e" for m in messages))

    async def execute(self, invocation_id: str, command_id: str, command: str, params: Any = None):
        await self.send(
            {
                "type": 1,
                "invocationId": invocation_id,
                "target": "ExecuteCommand",
                "arguments": [{"commandId": command_id, "command": command, "params": params}],
            }
        )
        return (await self.receive_completion(invocation_id))["result"]


class FakeGateway:
    """``await nursery.start(gateway.serve)``; then ``await gateway.next_connection()``."""

    def __init__(self, negotiate_status: int = 200, negotiate_body: str = "") -> None:
        self.port = 0
        self.negotiations: list[httpx.Request] = []
        self.negotiate_status = negotiate_status
        self.negotiate_body = negotiate_body
        self._send, self._connections = trio.open_memory_channel[GatewayConnection](10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._negotiate)

    def _negotiate(self, request: httpx.Request) -> httpx.Response:
        self.negotiations.append(request)
        if self.negotiate_status != 200:
            return httpx.Response(self.negotiate_status, text=self.negotiate_body)
        token = f"ct{len(self.negotiations)}"
        return httpx.Response(200, json={"connectionToken": token, "negotiateVersion": 1})

    async def serve(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                trio_websocket.serve_websocket, self._handle, "127.0.0.1", 0, None
            )
            self.port = server.port
            task_status.started()

    async def next_connection(self) -> GatewayConnection:
        return await self._connections.receive()

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        websocket = await request.accept()
        query = parse_qs(urlsplit(request.path).query)
        assert await websocket.get_message() == HANDSHAKE
        await websocket.send_message("{}\x1e")
        connection = GatewayConnection(websocket, query)
        await self._send.send(connection)
        try:
            await connection.finished.wait()
        finally:
            await websocket.aclose()
