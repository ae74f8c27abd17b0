"""A hand-driven client of the Voisnap hubs for the hostile suite
(docs/hubs/voisnap.md): a raw connect query (so that it may be malformed,
duplicated or percent-encoded at will), the events by name, streams by hand,
and the proof that the server still serves a well-behaved Voisnap client.

Nothing here sleeps: every wait is on the server, bounded by the caller with
``trio.fail_after``.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import trio
import trio_websocket

from tests.hostile.helpers import (
    MESSAGEPACK_HANDSHAKE,
    TIMEOUT,
    MessagePackClient,
    StrictHubClient,
    make_token,
)
from tests.support.server import ServerProcess
from tests.support.ws_client import (
    CLOSE,
    COMPLETION,
    INVOCATION,
    MAX_WEBSOCKET_MESSAGE,
    RECEIVE_SIZE,
)

CHAT = "/voisnap/hubs/chat"
VOICE = "/voisnap/hubs/voice"
STREAM_ITEM = 2
STREAM_INVOCATION = 4
CANCEL_INVOCATION = 5

_unique = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_unique)}"


def query_string(pairs: Mapping[str, str] | list[tuple[str, str]] | None = None,
                 raw: str | None = None) -> str:
    """``pairs`` percent-encoded (every reserved character escaped), then ``raw`` as given."""
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs or [])
    parts = [f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in items]
    if raw:
        parts.append(raw)
    return "&".join(parts)


class Closed(Exception):
    """The server sent a Close (``close`` is it) or ended the WebSocket."""

    def __init__(self, close: dict[str, Any] | None) -> None:
        super().__init__(f"closed: {close}")
        self.close = close


class VoisnapClient(StrictHubClient):
    """A JSON hub client that records every event (``events``) and finds them by name."""

    def __init__(self, websocket: Any) -> None:
        super().__init__(websocket)
        self.events: list[tuple[str, Any]] = []
        self.completions: dict[str, dict[str, Any]] = {}
        self.stream_items: dict[str, list[Any]] = {}
        self.close: dict[str, Any] | None = None
        self.ended = False
        self._ids = itertools.count(1)
        self._read = 0  # how many of ``events`` ``next_event`` has looked at

    def new_id(self) -> str:
        return f"v{next(self._ids)}"

    async def pump(self) -> None:
        """Read one message and file it; ``Closed`` at a Close or the end of the socket."""
        if self.close is not None or self.ended:
            raise Closed(self.close)
        try:
            message = await self.receive_message()
        except trio_websocket.ConnectionClosed:
            self.ended = True
            raise Closed(None) from None
        kind = message.get("type")
        if kind == INVOCATION:
            arguments = message.get("arguments") or [None]
            self.events.append((message.get("target"), arguments[0]))
        elif kind == COMPLETION:
            self.completions[message["invocationId"]] = message
        elif kind == STREAM_ITEM:
            self.stream_items.setdefault(message["invocationId"], []).append(message.get("item"))
        elif kind == CLOSE:
            self.close = message
            raise Closed(message)

    def named(self, name: str) -> list[Any]:
        return [payload for event, payload in self.events if event == name]

    async def next_event(self, *names: str) -> tuple[str, Any]:
        """The next event (after the last one returned) named one of ``names``."""
        while True:
            while self._read < len(self.events):
                event = self.events[self._read]
                self._read += 1
                if event[0] in names:
                    return event
            await self.pump()

    async def event(self, name: str) -> Any:
        return (await self.next_event(name))[1]

    async def completion(self, invocation_id: str) -> dict[str, Any]:
        while invocation_id not in self.completions:
            await self.pump()
        return self.completions[invocation_id]

    async def wait_close(self) -> dict[str, Any] | None:
        """Everything until the server's Close (returned), or the socket's end (None)."""
        while True:
            try:
                await self.pump()
            except Closed as closed:
                return closed.close

    async def invoke_id(self, target: str, *arguments: Any,
                        stream_ids: list[str] | None = None) -> str:
        invocation_id = self.new_id()
        message: dict[str, Any] = {"type": INVOCATION, "invocationId": invocation_id,
                                   "target": target, "arguments": list(arguments)}
        if stream_ids is not None:
            message["streamIds"] = stream_ids
        await self.send_record(message)
        return invocation_id

    async def invoke_voisnap(self, target: str, *arguments: Any) -> dict[str, Any]:
        return await self.completion(await self.invoke_id(target, *arguments))

    async def send_message(self, content: Any = "hello", **more: Any) -> dict[str, Any]:
        return await self.invoke_voisnap("SendMessageAsync", {"content": content, **more})

    async def reply(self) -> dict[str, Any]:
        """The next final ``MessageReceived``."""
        while True:
            message = await self.event("MessageReceived")
            if message["isFinal"]:
                return message

    async def error(self) -> dict[str, Any]:
        return await self.event("Error")

    # -- streams (HubProtocol.md, "Streaming") --

    async def start_upload(self, target: str = "SendAudio", *, blocking: bool = True) -> tuple[
            str | None, str]:
        """An Invocation with one client-to-server stream: (invocation id, stream id)."""
        stream_id = self.new_id()
        invocation_id = self.new_id() if blocking else None
        message: dict[str, Any] = {"type": INVOCATION, "target": target, "arguments": [],
                                   "streamIds": [stream_id]}
        if invocation_id is not None:
            message["invocationId"] = invocation_id
        await self.send_record(message)
        return invocation_id, stream_id

    async def stream_item(self, stream_id: str, item: Any) -> None:
        await self.send_record({"type": STREAM_ITEM, "invocationId": stream_id, "item": item})

    async def end_upload(self, stream_id: str, error: str | None = None) -> None:
        message: dict[str, Any] = {"type": COMPLETION, "invocationId": stream_id}
        if error is not None:
            message["error"] = error
        await self.send_record(message)

    async def start_download(self, target: str = "ReceiveAudio") -> str:
        invocation_id = self.new_id()
        await self.send_record({"type": STREAM_INVOCATION, "invocationId": invocation_id,
                                "target": target, "arguments": []})
        return invocation_id

    async def cancel_download(self, invocation_id: str) -> None:
        await self.send_record({"type": CANCEL_INVOCATION, "invocationId": invocation_id})


def hub_target(hub: str, query: str) -> str:
    return f"{hub}?{query}" if query else hub


@asynccontextmanager
async def open_voisnap(server: ServerProcess, hub: str = CHAT, *, token: str | None = None,
                       query: Mapping[str, str] | list[tuple[str, str]] | None = None,
                       raw: str | None = None) -> AsyncIterator[VoisnapClient]:
    """A ``VoisnapClient`` on a new WebSocket to ``hub`` after the JSON handshake.

    ``query`` defaults to ``agentId=sophon``; ``raw`` is appended as given. The
    token goes in ``access_token`` (percent-encoded like every other value)."""
    if query is None:
        query = {"agentId": "sophon"}
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    pairs.append(("access_token", token or make_token(unique("user"), unique("tenant"))))
    url = f"{server.ws_url}{hub_target(hub, query_string(pairs, raw))}"
    async with trio_websocket.open_websocket_url(
        url, max_message_size=MAX_WEBSOCKET_MESSAGE, receive_buffer_size=RECEIVE_SIZE,
        message_queue_size=64, connect_timeout=TIMEOUT, disconnect_timeout=2,
    ) as websocket:
        client = VoisnapClient(websocket)
        with trio.fail_after(TIMEOUT):
            await client.handshake()
        yield client


@asynccontextmanager
async def open_voisnap_msgpack(server: ServerProcess, hub: str, token: str,
                               query: Mapping[str, str] | None = None) -> AsyncIterator[
                                   MessagePackClient]:
    pairs = [*(query or {"agentId": "sophon"}).items(), ("access_token", token)]
    url = f"{server.ws_url}{hub_target(hub, query_string(pairs))}"
    async with trio_websocket.open_websocket_url(
        url, max_message_size=MAX_WEBSOCKET_MESSAGE, connect_timeout=TIMEOUT,
        disconnect_timeout=2,
    ) as websocket:
        client = MessagePackClient(websocket)
        with trio.fail_after(TIMEOUT):
            assert MESSAGEPACK_HANDSHAKE
            await client.handshake()
        yield client


def silence_chunk(milliseconds: int = 100, encoding: str = "linear16") -> str:
    """Base64 of ``milliseconds`` of silence in ``encoding``."""
    if encoding == "mulaw":
        return base64.b64encode(b"\xff" * (8 * milliseconds)).decode()
    return base64.b64encode(b"\x00\x00" * (16 * milliseconds)).decode()


# -- the proof that the server still serves -----------------------------------------------------


def assert_alive(server: ServerProcess) -> None:
    assert server.process is not None
    code = server.process.poll()
    assert code is None, f"the server exited with {code}:\n" + "".join(server.stderr_lines[-60:])


async def assert_healthy(server: ServerProcess) -> None:
    """The process runs, ``/healthz`` and ``/stats`` answer, and a fresh ChatHub
    client (its own tenant) gets ``SessionStarted`` and a whole reply; a fresh
    VoiceHub client gets ``SessionStarted``."""
    assert_alive(server)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
            assert (await http.get(f"{server.url}/healthz")).status_code == 200
            stats = await http.get(f"{server.url}/stats")
            assert stats.status_code == 200, stats.text
        async with open_voisnap(server) as client:
            started = await client.event("SessionStarted")
            assert started["agentId"] == "sophon" and started["resumed"] is False
            assert "error" not in await client.send_message("health check: what is 2 + 3?")
            await client.reply()
        async with open_voisnap(server, VOICE) as call:
            await call.event("SessionStarted")
    assert_alive(server)
