"""A fake OpenAI-compatible chat-completions endpoint, over real HTTP on 127.0.0.1.

An ASGI app served by hypercorn's trio worker inside the test: it records each
request (``Endpoint.requests``: method, path, headers, JSON body, so a test can
check the ``messages`` and ``tools`` it was sent) and streams ``data: {chunk}``
Server-Sent Events as the real API does: ``choices[0].delta.content`` pieces, or
``choices[0].delta.tool_calls`` fragments (``tool_calls``: per call, its
``index``, ``id`` and ``function.name`` first, then ``function.arguments`` in
pieces, then ``finish_reason: "tool_calls"``), a ``usage`` chunk, ``data: [DONE]``.
``in_turn`` answers successive requests (an agent's successive steps) differently.
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

    def bodies(self) -> list[Any]:
        """The JSON body of each request received, in order."""
        return [request.body for request in self.requests]

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


def in_turn(*answers: Answer) -> Answer:
    """The first request gets the first answer, the second the second...; any
    request after the last gets the last."""
    served = 0

    async def answer(send: Send) -> None:
        nonlocal served
        chosen = answers[min(served, len(answers) - 1)]
        served += 1
        await chosen(send)

    return answer


def content_chunk(piece: str) -> bytes:
    return event({"object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})


def usage_chunk(total_tokens: int) -> bytes:
    return event({"choices": [], "usage": {"total_tokens": total_tokens}})


@attrs.frozen
class CallSpec:
    """A tool call the fake model makes: ``arguments`` is sent as this text (so a
    test may send text that is not JSON), in pieces of ``piece`` characters."""

    call_id: str | None
    name: str | None
    arguments: str
    piece: int = 5


def call_spec(call_id: str, name: str, arguments: dict[str, Any], piece: int = 5) -> CallSpec:
    return CallSpec(call_id, name, json.dumps(arguments), piece)


def tool_call_fragments(index: int, call: CallSpec) -> list[dict[str, Any]]:
    """One call as the API streams it: the id and the name with empty arguments,
    then the arguments text in pieces."""
    first: dict[str, Any] = {"index": index, "type": "function",
                             "function": {"arguments": ""}}
    if call.call_id is not None:
        first["id"] = call.call_id
    if call.name is not None:
        first["function"]["name"] = call.name
    text = call.arguments
    pieces = [text[i:i + call.piece] for i in range(0, len(text), call.piece)]
    return [first] + [{"index": index, "function": {"arguments": p}} for p in pieces]


def tool_call_chunk(*fragments: Any) -> bytes:
    """A chunk whose ``delta.tool_calls`` is ``fragments`` (as given: a test may
    send malformed ones)."""
    return event({"object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {"tool_calls": list(fragments)},
                               "finish_reason": None}]})


def finish_chunk(reason: str) -> bytes:
    return event({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})


def tool_calls_answer(*calls: CallSpec, text: tuple[str, ...] = (), total_tokens: int = 11,
                      interleave: bool = False) -> Answer:
    """``text`` pieces (if any), then ``calls`` as fragments, one per chunk (call after
    call, or, with ``interleave``, round robin across the calls), then
    ``finish_reason: "tool_calls"``, usage and [DONE]."""
    per_call = [tool_call_fragments(index, call) for index, call in enumerate(calls)]
    if interleave:
        order = [f for row in _round_robin(per_call) for f in row]
    else:
        order = [f for fragments in per_call for f in fragments]
    parts = [content_chunk(piece) for piece in text]
    parts += [tool_call_chunk(fragment) for fragment in order]
    parts += [finish_chunk("tool_calls"), usage_chunk(total_tokens), event("[DONE]")]
    return streaming(*parts)


def _round_robin(rows: list[list[Any]]) -> list[list[Any]]:
    longest = max(len(row) for row in rows)
    return [[row[i] for row in rows if i < len(row)] for i in range(longest)]


def reply_answer(*pieces: str, total_tokens: int = 7) -> Answer:
    """A plain reply: ``pieces`` as content deltas, ``finish_reason: "stop"``, usage, [DONE]."""
    parts = [content_chunk(piece) for piece in pieces]
    return streaming(*parts, finish_chunk("stop"), usage_chunk(total_tokens), event("[DONE]"))


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
