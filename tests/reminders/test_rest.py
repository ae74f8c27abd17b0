"""``GET /reminders`` and ``DELETE /reminders/{id}`` (docs/rest.md, "Reminders"), called as
the ASGI app calls a route: the caller's pending reminders in the zone of their token; a
cancel answers 204 once, then 404 like another user's or an unknown id."""

from __future__ import annotations

import json
from typing import Any

from tests.notifications.conftest import SteppedClock
from voisnap.agents.reminder_tools import ReminderTools
from voisnap.apps.reminders import RemindersRest
from voisnap.principal import Principal
from voisnap.server.routes import RestRequest
from voisnap.storage.sqlite import SqliteStore

from .conftest import ADA, SESSION

ADA_IN_TOKYO = Principal("ada", "acme", claims={"zoneinfo": "Asia/Tokyo"})
BOB = Principal("bob", "acme")


async def call(rest: RemindersRest, principal: Principal, method: str, path: str) -> Any:
    for route in rest.routes():
        found = route.pattern.match(path)
        if found and route.method == method:
            status, body = await route.handler(RestRequest(principal, found.groupdict(), {}))
            return status, json.loads(json.dumps(body))
    raise AssertionError(f"no route {method} {path}")


async def test_rest_lists_and_cancels_the_callers_reminders(
    store: SqliteStore, clock: SteppedClock
) -> None:
    tools = ReminderTools(store, clock=clock)
    later = await tools.set_reminder(ADA, SESSION, "call Ana", at="15:30")
    sooner = await tools.set_reminder(ADA, SESSION, "stretch", inMinutes=10)
    rest = RemindersRest(store, clock)
    status, listed = await call(rest, ADA_IN_TOKYO, "GET", "/reminders")
    assert status == 200
    assert [r["reminderId"] for r in listed] == [sooner["reminderId"], later["reminderId"]]
    assert listed[0]["dueLocal"] == "19:10 on Monday 07 December (Asia/Tokyo)"
    assert await call(rest, BOB, "GET", "/reminders") == (200, [])
    path = f"/reminders/{sooner['reminderId']}"
    missing = {"error": f"Reminder '{sooner['reminderId']}' does not exist or is not pending."}
    assert await call(rest, BOB, "DELETE", path) == (404, missing)
    assert await call(rest, ADA_IN_TOKYO, "DELETE", path) == (204, None)
    assert await call(rest, ADA_IN_TOKYO, "DELETE", path) == (404, missing)
    status, listed = await call(rest, ADA_IN_TOKYO, "GET", "/reminders")
    assert [r["reminderId"] for r in listed] == [later["reminderId"]]
