"""Reminders over REST (docs/rest.md, "Reminders").

- ``GET /reminders``: the caller's pending reminders, soonest first, with their
  times in UTC (``dueAt``) and in the caller's zone (``dueLocal``, from the
  token's ``zoneinfo`` claim);
- ``DELETE /reminders/{id}``: cancel one (204). Another user's reminder, an
  unknown one and one no longer pending (actioned or cancelled) all answer 404,
  with the same message, so that ids cannot be probed.

The same as the agent tools ``list_reminders`` and ``cancel_reminder``, for a
client's own reminder list.
"""

from __future__ import annotations

from typing import Any

from ...agents.reminder_times import zone_named
from ...agents.reminder_tools import reminder_data
from ...clock import Clock, SystemClock
from ...server.routes import RestRequest, Route
from ...storage.base import Owner, ReminderStore


class RemindersRest:
    def __init__(self, store: ReminderStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/reminders", self.list_reminders),
            Route.of("DELETE", "/reminders/{reminder_id}", self.cancel_reminder),
        ]

    async def list_reminders(self, request: RestRequest) -> tuple[int, Any]:
        zone = zone_named(request.principal.zone)
        reminders = await self._store.list_reminders(_owner(request))
        return 200, [reminder_data(reminder, zone) for reminder in reminders]

    async def cancel_reminder(self, request: RestRequest) -> tuple[int, Any]:
        reminder_id = request.params["reminder_id"]
        cancelled = await self._store.cancel_reminder(
            _owner(request), self._clock.now(), reminder_id=reminder_id
        )
        if cancelled is None:
            return 404, {"error": f"Reminder '{reminder_id}' does not exist or is not pending."}
        return 204, None


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
