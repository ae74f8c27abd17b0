"""The reminder tools ``set_reminder``, ``list_reminders``, ``cancel_reminder`` (docs/reminders.md).

A reminder belongs to the task's owner and to the task's session: the session
where the user asked is where the heartbeat posts it (``apps.reminders``).
Times are read and shown in the user's zone (``reminder_times``); the clock is
injectable, so tests set reminders at a moment of their choosing.
"""

from __future__ import annotations

import uuid
import zoneinfo
from typing import Any

from ..clock import Clock, SystemClock
from ..storage.base import MAX_REMINDER_TEXT, Owner, Reminder, ReminderStore
from .base import ToolSpec
from .reminder_times import ReminderError, UserZones, due_at, local_text

YEAR_SECONDS = 366 * 24 * 3600
NO_SESSION = "Reminders are set from a chat session: this task has none."

REMINDER_SPECS = (
    ToolSpec(
        "set_reminder",
        "Remind the user of something later, in this chat session. Give exactly one of "
        "'at' (HH:MM, 24-hour, in the user's time zone: the next such time; or an ISO date "
        "and time), 'inSeconds' or 'inMinutes'.",
        {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_REMINDER_TEXT},
                "at": {"type": "string", "minLength": 1, "maxLength": 40},
                "inSeconds": {"type": "integer", "minimum": 1, "maximum": YEAR_SECONDS},
                "inMinutes": {"type": "integer", "minimum": 1, "maximum": YEAR_SECONDS // 60},
            },
            "required": ["text"],
            "oneOf": [
                {"required": ["at"]},
                {"required": ["inSeconds"]},
                {"required": ["inMinutes"]},
            ],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "list_reminders",
        "The user's pending reminders, soonest first.",
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
    ToolSpec(
        "cancel_reminder",
        "Cancel one of the user's pending reminders, by its id or its text.",
        {
            "type": "object",
            "properties": {
                "reminderId": {"type": "string", "minLength": 1},
                "text": {"type": "string", "minLength": 1},
            },
            "oneOf": [{"required": ["reminderId"]}, {"required": ["text"]}],
            "additionalProperties": False,
        },
    ),
)


class ReminderTools:
    """Runs the reminder tools for a task's owner in a task's session. A tool that
    cannot do it raises ``ReminderError`` with the text its failure shows."""

    def __init__(
        self, store: ReminderStore, zones: UserZones | None = None, clock: Clock | None = None
    ) -> None:
        self._store = store
        self._zones = zones or UserZones()
        self._clock = clock or SystemClock()

    async def set_reminder(
        self,
        owner: Owner,
        session_id: str | None,
        text: str,
        at: str | None = None,
        inSeconds: int | None = None,
        inMinutes: int | None = None,
    ) -> dict[str, Any]:
        if session_id is None:
            raise ReminderError(NO_SESSION)
        if not text.strip():
            raise ReminderError("A reminder needs some text.")
        now = self._clock.now()
        zone = self._zones.zone_of(owner)
        due = due_at(now, zone, at=at, in_seconds=inSeconds, in_minutes=inMinutes)
        reminder = Reminder(
            reminder_id=f"rem_{uuid.uuid4().hex}",
            owner=owner,
            session_id=session_id,
            text=" ".join(text.split()),
            due_at=due,
            created_at=now,
        )
        await self._store.add_reminder(reminder)
        return self.data(reminder)

    async def list_reminders(self, owner: Owner) -> list[dict[str, Any]]:
        return [self.data(reminder) for reminder in await self._store.list_reminders(owner)]

    async def cancel_reminder(
        self, owner: Owner, reminderId: str | None = None, text: str | None = None
    ) -> dict[str, Any]:
        cancelled = await self._store.cancel_reminder(
            owner, self._clock.now(), reminder_id=reminderId, text=text
        )
        if cancelled is None:
            raise ReminderError(
                "No pending reminder of yours has that id."
                if reminderId is not None
                else "No pending reminder of yours has that text."
            )
        return self.data(cancelled)

    def data(self, reminder: Reminder) -> dict[str, Any]:
        return reminder_data(reminder, self._zones.zone_of(reminder.owner))


def reminder_data(reminder: Reminder, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """A reminder as a tool result (and over REST): its due time both in UTC and
    as the user reads it."""
    return {
        "reminderId": reminder.reminder_id,
        "text": reminder.text,
        "sessionId": reminder.session_id,
        "dueAt": reminder.due_at.isoformat(),
        "dueLocal": local_text(reminder.due_at, zone),
        "timeZone": zone.key,
        "status": reminder.status,
    }
