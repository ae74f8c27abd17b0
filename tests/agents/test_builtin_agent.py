"""``sophon``, the built-in agent: each intent runs its tool for real and streams a reply.

For every intent the events come in the order the runtime turns into hub events
(seed 000, "Chat hub"): ``thinking``, then for a tool ``calling_tool``,
``ToolStarted`` and ``ToolCompleted``, then the reply a word at a time, then one
``Final`` whose content is exactly the streamed tokens joined. Intents without
I/O run under the autojump clock, so ``token_delay`` costs no real time and the
pacing can be measured exactly; the notes intents use a real ``SqliteStore``
(worker threads), with the real clock and no delay.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from voisnap.agents.base import (
    AgentEvent,
    AgentRequest,
    Decision,
    Final,
    Status,
    Token,
    ToolCompleted,
    ToolStarted,
)
from voisnap.agents.builtin import BuiltinAgent, tokens_of
from voisnap.storage.base import Note, Owner
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
ADA = Owner("acme", "ada")
BOB = Owner("acme", "bob")
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


class NoQuestions:
    """The built-in agent never asks a person anything."""

    async def request_approval(self, action: str, details: dict[str, Any]) -> Decision:
        raise AssertionError("the built-in agent asked for an approval")

    async def ask_user(self, question: str) -> str:
        raise AssertionError("the built-in agent asked the user")


class NoStore:
    """For intents that must not touch the store."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used: {name}")


async def run(agent: BuiltinAgent, content: str, owner: Owner = ADA) -> list[AgentEvent]:
    request = AgentRequest(task_id="task_1", session_id="sess_1", owner=owner, content=content)
    return [event async for event in agent.run(request, NoQuestions())]


def reply_of(events: list[AgentEvent]) -> Final:
    """The one Final, last; checks that the streamed tokens add up to it."""
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and events[-1] is finals[0]
    final = finals[0]
    tokens = [e.delta for e in events if isinstance(e, Token)]
    assert tokens, "the reply was not streamed"
    assert "".join(tokens) == final.content
    assert final.tokens_used > 0
    assert final.tokens_used >= len(tokens)
    return final


def tool_events(events: list[AgentEvent]) -> list[AgentEvent]:
    return [e for e in events if not isinstance(e, Token | Final)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "voisnap.db")
    with trio.fail_after(CEILING):
        await opened.open()
    try:
        yield opened
    finally:
        with trio.fail_after(CEILING):
            await opened.aclose()


# -- calculator ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expression", "value"),
    [
        ("what is 12 * 7", "12 * 7", 84),
        ("What is 2^10?", "2^10", 1024),
        ("compute (2 + 3) * 4 please", "(2 + 3) * 4", 20),
        ("and 7 / 2?", "7 / 2", 3.5),
    ],
)
async def test_builtin_arithmetic_calls_the_calculator(
    autojump_clock: trio.testing.MockClock, content: str, expression: str, value: float
) -> None:
    agent = BuiltinAgent("sophon", NoStore(), token_delay=0.5)  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        events = await run(agent, content)
    arguments = {"expression": expression}
    assert tool_events(events) == [
        Status("thinking"),
        Status("calling_tool", "calculator"),
        ToolStarted("calculator", arguments),
        ToolCompleted("calculator", True, 0, value),
    ]
    final = reply_of(events)
    assert final.content == f"{expression} = {value}."
    assert final.tool_calls == ({"toolName": "calculator", "arguments": arguments, "ok": True},)


async def test_builtin_calculator_failure_is_reported_not_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    agent = BuiltinAgent("sophon", NoStore(), token_delay=0.5)  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        events = await run(agent, "what is 1/0")
    completed = [e for e in events if isinstance(e, ToolCompleted)]
    assert completed == [ToolCompleted("calculator", False, 0, "Division by zero.")]
    final = reply_of(events)
    assert "Division by zero." in final.content
    assert final.tool_calls[0]["ok"] is False


async def test_builtin_calculator_failure_reply_does_not_claim_a_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The reply for a failed calculation is built as ``f"{expression} = {value}."``
    with the error text as the value: "1/0 = Division by zero..". """
    agent = BuiltinAgent("sophon", NoStore(), token_delay=0.5)  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        final = reply_of(await run(agent, "what is 1/0"))
    assert not final.content.startswith("1/0 = "), final.content
    assert ".." not in final.content


async def test_builtin_a_result_too_large_to_print_still_gets_a_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """10^4950 is within the calculator's limits, but has more digits than
    Python's int-to-str limit (4300): formatting the reply raises ValueError."""
    agent = BuiltinAgent("sophon", NoStore(), token_delay=0.5)  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        events = await run(agent, "what is (10**99)**50")
    reply_of(events)


# -- time and introduction -------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["What time is it?", "what is the date today"])
async def test_builtin_time_calls_current_time(
    autojump_clock: trio.testing.MockClock, content: str
) -> None:
    agent = BuiltinAgent("sophon", NoStore(), token_delay=0.5)  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        events = await run(agent, content)
    calls = tool_events(events)
    assert calls[:3] == [
        Status("thinking"),
        Status("calling_tool", "current_time"),
        ToolStarted("current_time", {}),
    ]
    assert isinstance(calls[3], ToolCompleted) and calls[3].ok
    final = reply_of(events)
    assert re.fullmatch(r"It is \w+day \d\d \w+ \d{4}, \d\d:\d\d UTC\.", final.content)
    assert final.content == f"It is {calls[3].result}."


async def test_builtin_anything_else_gets_an_introduction_without_tools(
    autojump_clock: trio.testing.MockClock,
) -> None:
    agent = BuiltinAgent("helper", NoStore(), token_delay=0.01)  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        events = await run(agent, "  hello   there  ")
    assert tool_events(events) == [Status("thinking")]
    final = reply_of(events)
    assert final.content.startswith("Hello, I am helper, the built-in agent.")
    assert final.content.endswith("You said: “hello   there”.")
    assert final.tool_calls == ()


async def test_builtin_streams_a_word_every_token_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``token_delay`` after ``thinking`` and after every token: the pace of a model."""
    agent = BuiltinAgent("sophon", NoStore(), token_delay=0.5)  # type: ignore[arg-type]
    arrivals: list[float] = []
    request = AgentRequest("task_1", "sess_1", ADA, "what is 6 * 7")
    with trio.fail_after(CEILING):
        start = trio.current_time()
        async for event in agent.run(request, NoQuestions()):
            if isinstance(event, Token):
                arrivals.append(trio.current_time() - start)
        elapsed = trio.current_time() - start
    assert [e.strip() for e in tokens_of("6 * 7 = 42.")] == ["6", "*", "7", "=", "42."]
    assert arrivals == [0.5 * n for n in range(1, 6)]
    assert elapsed == 0.5 * 6


# -- notes -----------------------------------------------------------------------------------------


async def test_builtin_remember_adds_a_note_to_the_store(
    store: SqliteStore, tmp_path: Path
) -> None:
    agent = BuiltinAgent("sophon", store, token_delay=0)
    with trio.fail_after(CEILING):
        events = await run(agent, "remember to call Ana")
        notes = await store.list_notes(ADA)
        assert await store.list_notes(BOB) == []
    assert [n.text for n in notes] == ["to call Ana"]
    calls = tool_events(events)
    assert calls[:3] == [
        Status("thinking"),
        Status("calling_tool", "add_note"),
        ToolStarted("add_note", {"text": "to call Ana"}),
    ]
    completed = calls[3]
    assert isinstance(completed, ToolCompleted) and completed.ok
    assert completed.result == notes[0]
    final = reply_of(events)
    assert final.content == "Noted: “to call Ana”."
    assert final.tool_calls == (
        {"toolName": "add_note", "arguments": {"text": "to call Ana"}, "ok": True},
    )


@pytest.mark.parametrize(
    ("content", "text"),
    [("Please remember that: the code is 42", "the code is 42"), ("Note: buy milk", "buy milk")],
)
async def test_builtin_remember_phrasings(store: SqliteStore, content: str, text: str) -> None:
    agent = BuiltinAgent("sophon", store, token_delay=0)
    with trio.fail_after(CEILING):
        reply_of(await run(agent, content))
        assert [n.text for n in await store.list_notes(ADA)] == [text]


async def test_builtin_lists_the_owners_notes(store: SqliteStore) -> None:
    agent = BuiltinAgent("sophon", store, token_delay=0)
    with trio.fail_after(CEILING):
        await run(agent, "remember to call Ana")
        await run(agent, "remember the milk")
        await run(agent, "remember bob's secret", owner=BOB)
        events = await run(agent, "show my notes")
    assert [e for e in events if isinstance(e, ToolStarted)] == [ToolStarted("list_notes", {})]
    final = reply_of(events)
    assert final.content == "Here is what you asked me to remember:\n- to call Ana\n- the milk"


async def test_builtin_lists_no_notes_yet(store: SqliteStore) -> None:
    agent = BuiltinAgent("sophon", store, token_delay=0)
    with trio.fail_after(CEILING):
        final = reply_of(await run(agent, "What's on my calendar today?"))
    assert final.content.startswith("You have no notes yet.")


async def test_builtin_notes_persist_across_a_restart(store: SqliteStore, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        await run(BuiltinAgent("sophon", store, token_delay=0), "remember to call Ana")
        reopened = SqliteStore(tmp_path / "voisnap.db")
        await reopened.open()
        try:
            final = reply_of(await run(BuiltinAgent("sophon", reopened, 0), "my notes?"))
            notes = await reopened.list_notes(ADA)
        finally:
            await reopened.aclose()
    assert [n.text for n in notes] == ["to call Ana"]
    assert final.content.endswith("- to call Ana")


@pytest.mark.parametrize("content", ["What did I ask you to remember?", "Notes?", "Notes please"])
async def test_builtin_questions_about_notes_list_them(store: SqliteStore, content: str) -> None:
    """``ASKS_NOTES`` lists ``remember\\?`` but follows it with ``\\b``, which never
    matches after a final "?"; and ``REMEMBER`` takes "Notes..." for "note" + "s...",
    so asking for one's notes adds a note "s?"."""
    agent = BuiltinAgent("sophon", store, token_delay=0)
    with trio.fail_after(CEILING):
        await store.add_note(Note("n1", ADA, "call Ana", T0))
        events = await run(agent, content)
        notes = await store.list_notes(ADA)
    assert [e for e in events if isinstance(e, ToolStarted)] == [ToolStarted("list_notes", {})]
    assert [n.text for n in notes] == ["call Ana"]
    assert reply_of(events).content.endswith("- call Ana")

