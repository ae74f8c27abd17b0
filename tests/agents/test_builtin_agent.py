"""``sophon``, the built-in agent: a deterministic planner, driven one step at a time.

The agent no longer runs tools: each ``step`` reads the user's message and the
transcript (the calls so far and their results) and ends with ``CallTools`` (one
call, ``call_<n>`` for the n-th call of the task) or a ``Final`` whose content is
exactly its streamed tokens joined. Here no runtime is involved: the tests give it
transcripts, as the runtime would after running its tools (or after a person
approved, rejected, edited or answered), and check each intent's whole sequence of
steps as builtin.py's docstring lists them. Everything runs under the autojump
clock, so ``token_delay`` costs no real time and the pacing can be measured exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from voisnap.agents.base import (
    AgentEvent,
    AgentRequest,
    CallTools,
    Final,
    Status,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
)
from voisnap.agents.builtin import WHAT_TO_REMEMBER, WHICH_NOTE, BuiltinAgent, tokens_of
from voisnap.agents.driver import APPROVAL_TIMED_OUT, NOT_ANSWERED, REJECTED
from voisnap.agents.tools import calculate
from voisnap.storage.base import Owner

CEILING = 10
ADA = Owner("acme", "ada")
DELAY = 0.5

def request(content: str, transcript: Transcript = ()) -> AgentRequest:
    return AgentRequest("task_1", "sess_1", ADA, content, transcript=transcript)


async def step(content: str, transcript: Transcript = (), *,
               agent: BuiltinAgent | None = None) -> list[AgentEvent]:
    agent = agent or BuiltinAgent("sophon", token_delay=DELAY)
    with trio.fail_after(CEILING):
        return [event async for event in agent.step(request(content, transcript))]


def called(events: list[AgentEvent]) -> ToolCall:
    """The step asked for exactly one tool call, and streamed nothing."""
    assert events[0] == Status("thinking")
    assert isinstance(events[-1], CallTools)
    assert not [e for e in events if isinstance(e, Token | Final)]
    [call] = events[-1].calls
    return call


def reply(events: list[AgentEvent]) -> str:
    """The step's one Final, last; the streamed tokens add up to it."""
    assert events[0] == Status("thinking")
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and events[-1] is finals[0]
    assert not [e for e in events if isinstance(e, CallTools)]
    tokens = [e.delta for e in events if isinstance(e, Token)]
    assert tokens, "the reply was not streamed"
    assert "".join(tokens) == finals[0].content
    return finals[0].content


def ran(call: ToolCall, content: Any, ok: bool = True) -> Transcript:
    """The call and its result, as the runtime appends them to the transcript."""
    return (call, ToolResult(call.call_id, call.name, ok, content))


def note(text: str, n: int = 1) -> dict[str, Any]:
    return {"noteId": f"note_{n}", "text": text, "createdAt": "2024-05-01T12:00:00+00:00"}


# -- arithmetic, time, introduction ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expression"),
    [
        ("what is 12 * 7", "12 * 7"),
        ("What is 2^10?", "2^10"),
        ("compute (2 + 3) * 4 please", "(2 + 3) * 4"),
        ("and 7 / 2?", "7 / 2"),
    ],
)
async def test_builtin_arithmetic_calls_the_calculator_then_replies(
    autojump_clock: MockClock, content: str, expression: str
) -> None:
    call = called(await step(content))
    assert call == ToolCall("call_1", "calculator", {"expression": expression})
    value = calculate(expression)
    assert reply(await step(content, ran(call, value))) == f"{expression} = {value}."


async def test_builtin_calculator_failure_reply_does_not_claim_a_result(
    autojump_clock: MockClock
) -> None:
    call = called(await step("what is 1/0"))
    text = reply(await step("what is 1/0", ran(call, "Division by zero.", ok=False)))
    assert text == "Sorry, I could not do that: Division by zero."
    assert not text.startswith("1/0 = ") and ".." not in text


async def test_builtin_a_result_too_large_is_a_refusal_with_a_reply(
    autojump_clock: MockClock
) -> None:
    """(10**99)**50 has more digits than Python prints; the calculator refuses it, and
    the agent still replies."""
    call = called(await step("what is (10**99)**50"))
    assert call.arguments == {"expression": "(10**99)**50"}
    try:
        calculate(call.arguments["expression"])
    except Exception as error:
        failure = str(error)
    else:
        raise AssertionError("the calculator computed a number too large to print")
    assert failure == "That number is too large."
    assert reply(await step("what is (10**99)**50", ran(call, failure, ok=False))).endswith(
        "That number is too large."
    )


@pytest.mark.parametrize("content", ["What time is it?", "what is the date today"])
async def test_builtin_time_calls_current_time(autojump_clock: MockClock, content: str) -> None:
    call = called(await step(content))
    assert call == ToolCall("call_1", "current_time", {})
    now = "Wednesday 01 May 2024, 12:00 UTC"
    assert reply(await step(content, ran(call, now))) == f"It is {now}."


async def test_builtin_anything_else_gets_an_introduction_without_tools(
    autojump_clock: MockClock
) -> None:
    agent = BuiltinAgent("helper", token_delay=0.01)
    events = await step("  hello   there  ", agent=agent)
    text = reply(events)
    assert [e for e in events if isinstance(e, Status)] == [Status("thinking")]
    assert text.startswith("Hello, I am helper, the built-in agent.")
    assert text.endswith("You said: “hello   there”.")


async def test_builtin_streams_a_word_every_token_delay(autojump_clock: MockClock) -> None:
    """``token_delay`` after ``thinking`` and after every token: the pace of a model."""
    agent = BuiltinAgent("sophon", token_delay=DELAY)
    call = ToolCall("call_1", "calculator", {"expression": "6 * 7"})
    arrivals: list[float] = []
    with trio.fail_after(CEILING):
        start = trio.current_time()
        async for event in agent.step(request("what is 6 * 7", ran(call, 42))):
            if isinstance(event, Token):
                arrivals.append(trio.current_time() - start)
        elapsed = trio.current_time() - start
    assert [e.strip() for e in tokens_of("6 * 7 = 42.")] == ["6", "*", "7", "=", "42."]
    assert arrivals == [DELAY * n for n in range(1, 6)]
    assert elapsed == DELAY * 6


async def test_builtin_tokens_used_counts_the_words_of_the_message_and_the_reply(
    autojump_clock: MockClock
) -> None:
    content = "what is 6 * 7"
    calls = (await step(content))[-1]
    assert isinstance(calls, CallTools)
    assert calls.tokens_used == len(tokens_of(content))
    call = calls.calls[0]
    final = (await step(content, ran(call, 42)))[-1]
    assert isinstance(final, Final)
    assert final.tokens_used == len(tokens_of(content)) + len(tokens_of(final.content))
    assert final.tool_calls == ()  # the runtime records the calls, not the agent


async def test_builtin_the_same_transcript_gives_the_same_step(autojump_clock: MockClock) -> None:
    """Everything comes from the message and the transcript: a resumed task (another
    process, another agent object) takes the same step."""
    call = ToolCall("call_1", "list_notes", {})
    transcript = ran(call, [note("a"), note("b", 2)])
    first = await step("delete a note", transcript)
    again = await step("delete a note", transcript, agent=BuiltinAgent("sophon", 0))
    assert called(first) == called(again)


# -- remember --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("remember to call Ana", "to call Ana"),
        ("Please remember that: the code is 42", "the code is 42"),
        ("Note: buy milk", "buy milk"),
        ("Remember something important", "something important"),
    ],
)
async def test_builtin_remember_adds_a_note(
    autojump_clock: MockClock, content: str, text: str
) -> None:
    call = called(await step(content))
    assert call == ToolCall("call_1", "add_note", {"text": text})
    assert reply(await step(content, ran(call, note(text)))) == f"Noted: “{text}”."


async def test_builtin_remember_failure_is_reported(autojump_clock: MockClock) -> None:
    call = called(await step("remember x"))
    text = reply(await step("remember x", ran(call, "The store is down.", ok=False)))
    assert text == "Sorry, I could not do that: The store is down."


@pytest.mark.parametrize("content", ["remember something", "Please remember something."])
async def test_builtin_remember_something_asks_what_then_adds_the_answer(
    autojump_clock: MockClock, content: str
) -> None:
    ask = called(await step(content))
    assert ask == ToolCall("call_1", "ask_user", {"question": WHAT_TO_REMEMBER, "options": None})
    assert WHAT_TO_REMEMBER == "What should I remember?"

    transcript = ran(ask, "buy bread")
    add = called(await step(content, transcript))
    assert add == ToolCall("call_2", "add_note", {"text": "buy bread"})

    transcript += ran(add, note("buy bread"))
    assert reply(await step(content, transcript)) == "Noted: “buy bread”."


async def test_builtin_remember_something_unanswered_notes_nothing(
    autojump_clock: MockClock
) -> None:
    ask = called(await step("remember something"))
    text = reply(await step("remember something", ran(ask, NOT_ANSWERED, ok=False)))
    assert text == f"I did not note anything: {NOT_ANSWERED}"


async def test_builtin_remember_something_whose_note_fails_says_so(
    autojump_clock: MockClock
) -> None:
    ask = called(await step("remember something"))
    transcript = ran(ask, "x")
    add = called(await step("remember something", transcript))
    transcript += ran(add, "No room.", ok=False)
    assert reply(await step("remember something", transcript)) == "Sorry: No room."


# -- forget X --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("forget to call Ana", "to call Ana"),
        ("Delete the note “buy milk”", "buy milk"),
        ('delete note "buy milk".', "buy milk"),
        ("remove my note about the dentist", "the dentist"),
        ("Please forget that I like tea", "I like tea"),
    ],
)
async def test_builtin_forget_deletes_the_note_by_its_text(
    autojump_clock: MockClock, content: str, text: str
) -> None:
    call = called(await step(content))
    assert call == ToolCall("call_1", "delete_note", {"text": text})
    deleted = reply(await step(content, ran(call, note(text))))
    assert deleted == f"Deleted the note “{text}”."


async def test_builtin_forget_after_an_edited_approval_names_the_note_deleted(
    autojump_clock: MockClock
) -> None:
    """An edited approval ran the tool with other parameters: the reply names the note
    the tool really deleted (its result), not the one first asked for."""
    call = called(await step("forget to call Ana"))
    assert reply(await step("forget to call Ana", ran(call, note("buy milk")))) == (
        "Deleted the note “buy milk”."
    )


@pytest.mark.parametrize(
    "why",
    [
        f"{REJECTED}: not now",
        f"{REJECTED}: no reason given",
        APPROVAL_TIMED_OUT,
        "No note has that text.",
    ],
    ids=["rejected", "rejected-without-reason", "timed-out", "failed"],
)
async def test_builtin_forget_not_done_says_why(autojump_clock: MockClock, why: str) -> None:
    call = called(await step("forget to call Ana"))
    text = reply(await step("forget to call Ana", ran(call, why, ok=False)))
    assert text == f"I did not delete it: {why}"
    assert "Deleted" not in text


# -- delete a note (which one?) --------------------------------------------------------------------


@pytest.mark.parametrize("content", ["delete a note", "Forget one of my notes.",
                                     "remove a note"])
async def test_builtin_delete_a_note_lists_asks_which_then_deletes_it(
    autojump_clock: MockClock, content: str
) -> None:
    listing = called(await step(content))
    assert listing == ToolCall("call_1", "list_notes", {})

    transcript = ran(listing, [note("call Ana"), note("buy milk", 2)])
    ask = called(await step(content, transcript))
    assert ask == ToolCall(
        "call_2", "ask_user", {"question": WHICH_NOTE, "options": ["call Ana", "buy milk"]}
    )
    assert WHICH_NOTE == "Which note should I delete?"

    transcript += ran(ask, "buy milk")
    delete = called(await step(content, transcript))
    assert delete == ToolCall("call_3", "delete_note", {"text": "buy milk"})

    transcript += ran(delete, note("buy milk", 2))
    assert reply(await step(content, transcript)) == "Deleted the note “buy milk”."


async def test_builtin_delete_a_note_without_notes_just_says_so(autojump_clock: MockClock) -> None:
    listing = called(await step("delete a note"))
    assert reply(await step("delete a note", ran(listing, []))) == "You have no notes to delete."


async def test_builtin_delete_a_note_unanswered_deletes_nothing(autojump_clock: MockClock) -> None:
    listing = called(await step("delete a note"))
    transcript = ran(listing, [note("call Ana")])
    ask = called(await step("delete a note", transcript))
    transcript += ran(ask, NOT_ANSWERED, ok=False)
    text = reply(await step("delete a note", transcript))
    assert text == f"I did not delete anything: {NOT_ANSWERED}"


async def test_builtin_delete_a_note_rejected_says_why(autojump_clock: MockClock) -> None:
    listing = called(await step("delete a note"))
    transcript = ran(listing, [note("call Ana")])
    ask = called(await step("delete a note", transcript))
    transcript += ran(ask, "call Ana")
    delete = called(await step("delete a note", transcript))
    transcript += ran(delete, f"{REJECTED}: keep it", ok=False)
    text = reply(await step("delete a note", transcript))
    assert text == f"I did not delete it: {REJECTED}: keep it"


# -- notes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["show my notes", "What's on my calendar today?", "What did I ask you to remember?",
     "Notes?", "Notes please"],
)
async def test_builtin_questions_about_notes_list_them(
    autojump_clock: MockClock, content: str
) -> None:
    """Asking for one's notes lists them; it never adds a note ("Notes..." is not
    "note" + "s...")."""
    call = called(await step(content))
    assert call == ToolCall("call_1", "list_notes", {})
    text = reply(await step(content, ran(call, [note("to call Ana"), note("the milk", 2)])))
    assert text == "Here is what you asked me to remember:\n- to call Ana\n- the milk"


async def test_builtin_lists_no_notes_yet(autojump_clock: MockClock) -> None:
    call = called(await step("my notes?"))
    text = reply(await step("my notes?", ran(call, [])))
    assert text == "You have no notes yet. Say “remember …” and I will keep it."


# -- insight cards (issue 13) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "title", "body"),
    [
        ("add an insight card: Q3 revenue up 12%", "Q3 revenue up 12%",
         "Added by sophon from your chat."),
        ("Insight: Churn is down\nFewer cancellations since May.", "Churn is down",
         "Fewer cancellations since May."),
        ("please add insight card: Ship it", "Ship it", "Added by sophon from your chat."),
    ],
)
async def test_builtin_insight_adds_a_card(
    autojump_clock: MockClock, content: str, title: str, body: str
) -> None:
    """Tried before arithmetic: a title with numbers is still a card."""
    call = called(await step(content))
    assert call == ToolCall("call_1", "add_insight", {"title": title, "body": body})
    card = {"id": "ins_1", "title": title, "body": body}
    assert reply(await step(content, ran(call, card))) == f"Added the insight card “{title}”."


async def test_builtin_insight_without_a_title_is_not_a_card(autojump_clock: MockClock) -> None:
    quick = BuiltinAgent("sophon", token_delay=0.01)
    assert "the built-in agent" in reply(await step("insight:", agent=quick))
