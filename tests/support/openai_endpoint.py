"""A fake OpenAI-compatible chat-completions endpoint, over real HTTP on 127.0.0.1.

An ASGI app served by hypercorn's trio worker inside the test: it records each
request and streams ``data: {chunk}`` Server-Sent Events as the real API does
(``choices[0].delta.content`` pieces, a ``usage`` chunk, ``data: [DONE]``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve


@attrs.frozen
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def event(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


Send = Callable[[dict[str, Any]], Awaitable[None]]
Answer = Callable[[Send], Awaitable[None]]


class Endpoint:
    """The ASGI app: records each request, then ``answer`` writes the response."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Recorded] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Recorded(scope["method"], scope["path"], headers, json.loads(body)))
        await self.answer(send)


def streaming(*parts: bytes, status: int = 200,
              content_type: bytes = b"text/event-stream") -> Answer:
    """An answer that writes each of ``parts`` as its own body message."""

    async def answer(send: Send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type)]})
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return answer


def chat_completions(pieces: list[str], total_tokens: int) -> Endpoint:
    """Answers every request with ``pieces`` as deltas, then usage, then [DONE]."""
    deltas = [event({"choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces]
    usage = event({"choices": [], "usage": {"total_tokens": total_tokens}})
    return Endpoint(streaming(*deltas, usage, event("[DONE]")))


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 at a free port; yields the base URL (with /v1)."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.loglevel = "WARNING"
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, mode="asgi"))
        yield binds[0] + "/v1"
        nursery.cancel_scope.cancel()
