"""Schedules over REST (docs/rest.md, "Schedules"; docs/schedules.md).

- ``POST /schedules`` ``{cron, timezone?, agentId, prompt, sessionId?}``: 201
  and the schedule;
- ``GET /schedules``: the caller's schedules, oldest first;
- ``GET /schedules/{id}``: one of them;
- ``PATCH /schedules/{id}`` ``{paused?, cron?, timezone?, agentId?, prompt?,
  sessionId?}``: pause, resume or change it; 200 and the schedule;
- ``DELETE /schedules/{id}``: 204;
- ``GET /schedules/{id}/runs?limit=``: its workflow runs, newest slot first.

400 for a body that cannot be used (a bad expression, zone, agent or session),
404 for an id that is not the caller's (as for an unknown one), 409 for a
change to a schedule of the schedules file; each ``{"error": ...}``.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...server.routes import RestRequest, Route
from ...storage.base import Owner
from ..chat.rest import MAX_LIMIT, page_limit
from .orders import RefusedSchedule
from .service import OwnedByFile, ScheduleNotFound, Schedules


class SchedulesRest:
    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/schedules", self.create),
            Route.of("GET", "/schedules", self.list),
            Route.of("GET", "/schedules/{schedule_id}", self.get),
            Route.of("PATCH", "/schedules/{schedule_id}", self.change),
            Route.of("DELETE", "/schedules/{schedule_id}", self.delete),
            Route.of("GET", "/schedules/{schedule_id}/runs", self.runs),
        ]

    async def create(self, request: RestRequest) -> tuple[int, Any]:
        try:
            view = await self._schedules.create(_owner(request), request.json())
        except RefusedSchedule as error:
            return 400, {"error": str(error)}
        return 201, unstructure(view)

    async def list(self, request: RestRequest) -> tuple[int, Any]:
        views = await self._schedules.list(_owner(request))
        return 200, [unstructure(view) for view in views]

    async def get(self, request: RestRequest) -> tuple[int, Any]:
        try:
            view = await self._schedules.get(_owner(request), request.params["schedule_id"])
        except ScheduleNotFound as error:
            return 404, {"error": str(error)}
        return 200, unstructure(view)

    async def change(self, request: RestRequest) -> tuple[int, Any]:
        schedule_id = request.params["schedule_id"]
        try:
            view = await self._schedules.change(_owner(request), schedule_id, request.json())
        except ScheduleNotFound as error:
            return 404, {"error": str(error)}
        except OwnedByFile as error:
            return 409, {"error": str(error)}
        except RefusedSchedule as error:
            return 400, {"error": str(error)}
        return 200, unstructure(view)

    async def delete(self, request: RestRequest) -> tuple[int, Any]:
        try:
            await self._schedules.delete(_owner(request), request.params["schedule_id"])
        except ScheduleNotFound as error:
            return 404, {"error": str(error)}
        except OwnedByFile as error:
            return 409, {"error": str(error)}
        return 204, None

    async def runs(self, request: RestRequest) -> tuple[int, Any]:
        limit = page_limit(request.query.get("limit"))
        if limit is None:
            return 400, {"error": f"'limit' must be an integer from 1 to {MAX_LIMIT}."}
        try:
            views = await self._schedules.runs(
                _owner(request), request.params["schedule_id"], limit
            )
        except ScheduleNotFound as error:
            return 404, {"error": str(error)}
        return 200, [unstructure(view) for view in views]


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
