"""A plain WebSocket client of ``/v1/stream`` (trio-websocket), and seed 004's
invariants, checked on what a client received.

``open_stream(server, token)`` connects with the subprotocol ``Bearer.<token>``
(``via="query"``: ``?token=``); ``StreamClient`` sends JSON frames and records
every event it receives, in order (``log``); ``until`` reads until an event
matches (with a timeout: never a fixed sleep).

``check_invariants(log)`` asserts, per session and from its last
``session.replay_start`` on (a client that resumes replaces what it showed):

- every ``task:token`` of a task arrives before its ``turn.done``;
- every ``task:tool_use`` is followed by exactly one matching
  ``task:tool_result``, or by the task's ``task:failed``;
- nothing of a task comes after its ``task:done`` or ``task:failed``;
- a completed turn's tokens add up to its ``turn.done.result_text`` exactly
  (each token once: no gap, no duplicate);
- ``session.replay_start``/``session.replay_end`` pair up, and everything in
  between belongs to the session replayed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import trio
import trio_websocket

TIMEOUT = 15.0
Event = dict[str, Any]


class StreamClient:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.log: list[Event] = []

    async def send(self, frame: Event) -> None:
        await self.ws.send_message(json.dumps(frame))

    async def next(self, timeout: float = TIMEOUT) -> Event:
        with trio.fail_after(timeout):
            message = await self.ws.get_message()
        event = json.loads(message)
        self.log.append(event)
        return event

    async def until(self, matches: Callable[[Event], bool], timeout: float = TIMEOUT) -> Event:
        """Read until an event ``matches``; that event."""
        with trio.fail_after(timeout):
            while True:
                event = await self.next(timeout)
                if matches(event):
                    return event

    async def until_type(self, kind: str, timeout: float = TIMEOUT, **fields: Any) -> Event:
        return await self.until(
            lambda e: e["type"] == kind and all(e.get(k) == v for k, v in fields.items()),
            timeout,
        )

    async def closed_with(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; its close code."""
        with trio.fail_after(timeout):
            try:
                while True:
                    self.log.append(json.loads(await self.ws.get_message()))
            except trio_websocket.ConnectionClosed as closed:
                return closed.reason.code

    def of_type(self, kind: str) -> list[Event]:
        return [event for event in self.log if event["type"] == kind]

    def text_of(self, task_id: str) -> str:
        """The task's tokens, since the last replay of its session."""
        view = _views(self.log)
        return "".join(
            e["text"] for events in view.values() for e in events
            if e.get("task_id") == task_id and e["type"] == "task:token"
        )


@asynccontextmanager
async def open_stream(
    server: Any, token: str | None, *, via: str = "subprotocol", path: str = "/v1/stream",
    subprotocols: list[str] | None = None, ssl_context: Any = None,
) -> AsyncIterator[StreamClient]:
    url = server.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path
    protocols = subprotocols
    if token is not None and via == "query":
        url += "?token=" + quote(token, safe="")
    elif token is not None and protocols is None:
        protocols = [f"Bearer.{token}"]
    async with trio_websocket.open_websocket_url(
        url, subprotocols=protocols, ssl_context=ssl_context, connect_timeout=TIMEOUT,
        disconnect_timeout=TIMEOUT,
    ) as ws:
        yield StreamClient(ws)


# -- the seed's invariants ------------------------------------------------------------------------


def _views(log: list[Event]) -> dict[str, list[Event]]:
    """Per session, the events since its last replay began (markers left out)."""
    views: dict[str, list[Event]] = defaultdict(list)
    for event in log:
        session = event.get("session_id")
        if session is None:
            continue
        if event["type"] == "session.replay_start":
            views[session] = []
        elif event["type"] != "session.replay_end":
            views[session].append(event)
    return views


def check_invariants(log: list[Event]) -> None:
    _check_replay_framing(log)
    for session, events in _views(log).items():
        by_task: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            assert event["session_id"] == session
            if "task_id" in event:
                by_task[event["task_id"]].append(event)
        for task_id, task_events in by_task.items():
            _check_task(task_id, task_events)


def _check_replay_framing(log: list[Event]) -> None:
    replaying: str | None = None
    for event in log:
        kind = event["type"]
        if kind == "session.replay_start":
            assert replaying is None, f"a replay began inside another: {event}"
            replaying = event["session_id"]
        elif kind == "session.replay_end":
            assert replaying == event["session_id"], f"a replay ended unbegun: {event}"
            replaying = None
        elif replaying is not None and "session_id" in event:
            assert event["session_id"] == replaying, f"another session's event in a replay: {event}"
    assert replaying is None, "a replay never ended"


def _check_task(task_id: str, events: list[Event]) -> None:
    done = None
    open_calls: list[str] = []
    tokens: list[str] = []
    turn_done = None
    for event in events:
        kind = event["type"]
        assert done is None, f"{kind} of {task_id} after its end ({done['type']})"
        if kind == "task:token":
            assert turn_done is None, f"a token of {task_id} after its turn.done"
            tokens.append(event["text"])
        elif kind == "task:tool_use":
            open_calls.append(event["tool"])
        elif kind == "task:tool_result":
            assert open_calls, f"a tool_result of {task_id} without its tool_use: {event}"
            assert open_calls.pop(0) == event["tool"], f"tool_result for another tool: {event}"
        elif kind == "turn.done":
            assert turn_done is None, f"two turn.done for {task_id}"
            turn_done = event
        elif kind in ("task:done", "task:failed"):
            done = event
    if done is not None and done["type"] == "task:done":
        assert not open_calls, f"{task_id} ended with tool calls unanswered: {open_calls}"
    if turn_done is not None:
        assert "".join(tokens) == turn_done["result_text"], (
            f"{task_id}: the tokens do not add up to the reply exactly once"
        )
