"""``sophon``, the built-in agent: no network, no model, real tools, a streamed reply.

It reads the user's message for one of a few intents (arithmetic, the time,
"remember ...", "my notes"), runs the matching tool for real, and streams its
answer a word at a time, ``token_delay`` apart, the pace of a model writing.
Anything else gets a short reply saying what it can do. It is the agent every
voisnap has, so that the chat hub works on a fresh machine with no keys.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import trio

from ..storage.base import Note, Owner, Store
from .base import (
    AgentContext,
    AgentEvent,
    AgentRequest,
    Final,
    Status,
    Token,
    ToolCompleted,
    ToolStarted,
)
from .tools import ToolError, add_note, calculate, current_time, list_notes

TOKENS = re.compile(r"\S+\s*|\s+")
ARITHMETIC = re.compile(r"[-+(]*\d[\d.\s]*(?:[-+*/%^]+\s*[-+(]*\s*[\d.]+[\d.\s)]*)+")
REMEMBER = re.compile(
    r"^\s*(?:please\s+)?(?:remember|note)\b(?:\s+that)?\s*:?\s*(?P<text>.+)$", re.I | re.S
)
ASKS_NOTES = re.compile(r"\b(?:notes?|calendar|remind\w*|agenda)\b|\bremember\s*\?", re.I)
ASKS_TIME = re.compile(r"\b(time|date|today|what day)\b", re.I)
EXCERPT = 200


def tokens_of(text: str) -> list[str]:
    """Words with their trailing spaces: joined, they give ``text`` back exactly."""
    return TOKENS.findall(text)


@attrs.frozen
class Plan:
    """What to do for a message: maybe a tool, then a reply built from its result."""

    tool: str | None
    arguments: dict[str, Any]
    reply: Callable[[Any], str]


class BuiltinAgent:
    def __init__(self, agent_id: str, store: Store, token_delay: float) -> None:
        self.agent_id = agent_id
        self._store = store
        self._delay = token_delay

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        await trio.sleep(self._delay)
        plan = self._plan(request.content)
        result: Any = None
        ok = True
        tool_calls: tuple[dict[str, Any], ...] = ()
        if plan.tool is not None:
            yield Status("calling_tool", plan.tool)
            yield ToolStarted(plan.tool, plan.arguments)
            started = trio.current_time()
            try:
                result, ok = await self._tool(plan.tool)(request.owner, **plan.arguments), True
            except ToolError as error:
                result, ok = str(error), False
            duration_ms = int((trio.current_time() - started) * 1000)
            yield ToolCompleted(plan.tool, ok, duration_ms, result)
            tool_calls = ({"toolName": plan.tool, "arguments": plan.arguments, "ok": ok},)
        # A tool that failed says why; the reply must not read like a result.
        reply = plan.reply(result) if ok else f"Sorry, I could not do that: {result}"
        for token in tokens_of(reply):
            yield Token(token)
            await trio.sleep(self._delay)
        used = len(tokens_of(request.content)) + len(tokens_of(reply))
        yield Final(reply, tokens_used=used, tool_calls=tool_calls)

    # -- intents ------------------------------------------------------------------------------

    def _plan(self, content: str) -> Plan:
        remember = REMEMBER.match(content)
        if remember:
            text = remember.group("text").strip()
            return Plan("add_note", {"text": text}, lambda note: f"Noted: “{note.text}”.")
        arithmetic = ARITHMETIC.search(content)
        if arithmetic:
            expression = arithmetic.group().strip()
            return Plan(
                "calculator", {"expression": expression}, lambda value: f"{expression} = {value}."
            )
        if ASKS_NOTES.search(content):
            return Plan("list_notes", {}, describe_notes)
        if ASKS_TIME.search(content):
            return Plan("current_time", {}, lambda now: f"It is {now}.")
        return Plan(None, {}, lambda _: self._introduction(content))

    def _introduction(self, content: str) -> str:
        said = content.strip()[:EXCERPT]
        return (
            f"Hello, I am {self.agent_id}, the built-in agent. I can tell you the time, "
            "do arithmetic (try “what is 12 * 7”), and keep notes for you "
            f"(“remember to call Ana”). You said: “{said}”."
        )

    def _tool(self, name: str) -> Callable[..., Awaitable[Any]]:
        store = self._store

        async def call_add_note(owner: Owner, text: str) -> Any:
            return await add_note(store, owner, text)

        async def call_list_notes(owner: Owner) -> Any:
            return await list_notes(store, owner)

        async def call_calculator(owner: Owner, expression: str) -> Any:
            return calculate(expression)

        async def call_current_time(owner: Owner) -> Any:
            return current_time()

        return {
            "add_note": call_add_note,
            "list_notes": call_list_notes,
            "calculator": call_calculator,
            "current_time": call_current_time,
        }[name]


def describe_notes(notes: list[Note]) -> str:
    if not notes:
        return "You have no notes yet. Say “remember …” and I will keep it."
    lines = "\n".join(f"- {note.text}" for note in notes)
    return f"Here is what you asked me to remember:\n{lines}"
