"""``sophon`` and reminders: each phrasing becomes its tool call, and the tool's result its
reply (docs/reminders.md, "What sophon understands"), one step at a time as the runtime
drives it. The steps are test_builtin_agent.py's helpers, under the autojump clock.
"""

from __future__ import annotations

from trio.testing import MockClock

from tests.agents.test_builtin_agent import called, ran, reply, step
from voisnap.agents.base import ToolCall
from voisnap.agents.builtin import BuiltinAgent
from voisnap.agents.reminder_intents import HOW

REMINDER = {
    "reminderId": "rem_1",
    "text": "stretch",
    "sessionId": "sess_1",
    "dueAt": "2026-12-07T10:10:00+00:00",
    "dueLocal": "19:10 on Monday 07 December (Asia/Tokyo)",
    "timeZone": "Asia/Tokyo",
    "status": "pending",
}


async def test_builtin_sets_a_reminder_and_confirms_in_the_users_zone(
    autojump_clock: MockClock,
) -> None:
    call = called(await step("remind me in 10 minutes to stretch"))
    assert call == ToolCall("call_1", "set_reminder", {"text": "stretch", "inMinutes": 10})
    answer = reply(await step("remind me in 10 minutes to stretch", ran(call, REMINDER)))
    assert answer == "Reminder set for 19:10 on Monday 07 December (Asia/Tokyo): “stretch”."


async def test_builtin_a_failed_reminder_says_why(autojump_clock: MockClock) -> None:
    call = called(await step("remind me at 15:30 to call Ana"))
    assert call.arguments == {"text": "call Ana", "at": "15:30"}
    failed = ran(call, "Reminders are set from a chat session: this task has none.", ok=False)
    answer = reply(await step("remind me at 15:30 to call Ana", failed))
    assert answer == (
        "Sorry, I could not do that: Reminders are set from a chat session: this task has none."
    )


async def test_builtin_a_reminder_without_a_time_asks_for_one(autojump_clock: MockClock) -> None:
    quick = BuiltinAgent("sophon", token_delay=0.01)  # a long reply: within the ceiling
    assert reply(await step("remind me to call Ana", agent=quick)) == HOW


async def test_builtin_lists_reminders_not_notes(autojump_clock: MockClock) -> None:
    call = called(await step("what are my reminders?"))
    assert (call.name, call.arguments) == ("list_reminders", {})
    answer = reply(await step("what are my reminders?", ran(call, [REMINDER])))
    assert answer == (
        "Your reminders, soonest first:\n"
        "- 19:10 on Monday 07 December (Asia/Tokyo): “stretch” (rem_1)"
    )


async def test_builtin_cancels_a_reminder_by_text_before_any_note_intent(
    autojump_clock: MockClock,
) -> None:
    call = called(await step("delete my reminder to stretch"))
    assert (call.name, call.arguments) == ("cancel_reminder", {"text": "stretch"})
    cancelled = {**REMINDER, "status": "cancelled"}
    answer = reply(await step("delete my reminder to stretch", ran(call, cancelled)))
    assert answer == (
        "Cancelled the reminder “stretch” (19:10 on Monday 07 December (Asia/Tokyo))."
    )


async def test_builtin_other_intents_are_unchanged(autojump_clock: MockClock) -> None:
    assert called(await step("remember to call Ana")).name == "add_note"
    assert called(await step("what are my notes?")).name == "list_notes"
