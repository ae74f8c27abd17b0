"""The reminder tools through the toolbox, as an agent's task runs them (docs/reminders.md).

A reminder belongs to the task's owner and the task's session; times are read in the owner's
zone (what the chat hub remembered from their token) and shown both in UTC and in that zone.
Bad input fails the call with a reason, as every tool's does.
"""

from __future__ import annotations

import re

import pytest

from voisnap.agents.reminder_times import UserZones
from voisnap.agents.tools import SPECS, TOOL_NAMES, Toolbox, ToolError
from voisnap.storage.sqlite import SqliteStore

from .conftest import ADA, BOB, SESSION


async def test_tools_set_reminder_in_the_users_zone_stores_it_in_the_session(
    toolbox: Toolbox, store: SqliteStore, zones: UserZones
) -> None:
    zones.remember(ADA, "Asia/Tokyo")  # 19:00 there: 18:00 is tomorrow
    result = await toolbox.run(
        ADA, "set_reminder", {"text": " call  Ana ", "at": "18:00"}, session_id=SESSION
    )
    assert result["text"] == "call Ana"
    assert result["dueAt"] == "2026-12-08T09:00:00+00:00"
    assert result["dueLocal"] == "18:00 on Tuesday 08 December (Asia/Tokyo)"
    assert result["timeZone"] == "Asia/Tokyo" and result["sessionId"] == SESSION
    assert result["status"] == "pending" and result["reminderId"].startswith("rem_")
    [stored] = await store.list_reminders(ADA)
    assert (stored.reminder_id, stored.session_id, stored.owner) == (
        result["reminderId"],
        SESSION,
        ADA,
    )


async def test_tools_list_reminders_is_the_owners_pending_soonest_first(toolbox: Toolbox) -> None:
    for owner, arguments in (
        (ADA, {"text": "later", "inMinutes": 30}),
        (ADA, {"text": "sooner", "inSeconds": 30}),
        (BOB, {"text": "bob's", "inSeconds": 1}),
    ):
        await toolbox.run(owner, "set_reminder", arguments, session_id=SESSION)
    listed = await toolbox.run(ADA, "list_reminders", {})
    assert [r["text"] for r in listed] == ["sooner", "later"]
    assert listed[0]["dueLocal"] == "10:00:30 on Monday 07 December (UTC)"


async def test_tools_cancel_reminder_by_id_or_text_and_only_the_owners(toolbox: Toolbox) -> None:
    first = await toolbox.run(
        ADA, "set_reminder", {"text": "Stretch", "inMinutes": 10}, session_id=SESSION
    )
    await toolbox.run(ADA, "set_reminder", {"text": "call Ana", "at": "15:30"}, session_id=SESSION)
    with pytest.raises(ToolError, match=re.escape("No pending reminder of yours has that id.")):
        await toolbox.run(BOB, "cancel_reminder", {"reminderId": first["reminderId"]})
    cancelled = await toolbox.run(ADA, "cancel_reminder", {"reminderId": first["reminderId"]})
    assert (cancelled["text"], cancelled["status"]) == ("Stretch", "cancelled")
    with pytest.raises(ToolError, match=re.escape("No pending reminder of yours has that id.")):
        await toolbox.run(ADA, "cancel_reminder", {"reminderId": first["reminderId"]})
    by_text = await toolbox.run(ADA, "cancel_reminder", {"text": "CALL ANA"})
    assert by_text["text"] == "call Ana"
    with pytest.raises(ToolError, match=re.escape("No pending reminder of yours has that text.")):
        await toolbox.run(ADA, "cancel_reminder", {"text": "call Ana"})
    assert await toolbox.run(ADA, "list_reminders", {}) == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"text": "x"}, "Invalid parameters for 'set_reminder'"),
        ({"text": "x", "at": "15:30", "inMinutes": 5}, "Invalid parameters for 'set_reminder'"),
        ({"text": "x", "inSeconds": 0}, "Invalid parameters for 'set_reminder'"),
        ({"text": "", "inSeconds": 5}, "Invalid parameters for 'set_reminder'"),
        ({"text": "   ", "inSeconds": 5}, "A reminder needs some text."),
        ({"text": "x", "at": "half past"}, "'half past' is not a time"),
        ({"text": "x", "at": "2026-12-07T09:00"}, "has passed already"),
    ],
)
async def test_tools_set_reminder_refuses_bad_input_with_a_reason(
    toolbox: Toolbox, arguments: dict[str, object], error: str
) -> None:
    with pytest.raises(ToolError, match=error):
        await toolbox.run(ADA, "set_reminder", arguments, session_id=SESSION)


async def test_tools_set_reminder_needs_the_session_it_was_asked_in(toolbox: Toolbox) -> None:
    with pytest.raises(ToolError, match="Reminders are set from a chat session"):
        await toolbox.run(ADA, "set_reminder", {"text": "x", "inSeconds": 5})


def test_tools_reminder_tools_are_every_agents_by_default() -> None:
    for name in ("set_reminder", "list_reminders", "cancel_reminder"):
        assert name in TOOL_NAMES and SPECS[name].parameters["type"] == "object"
