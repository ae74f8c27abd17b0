"""Discussion runs over REST (docs/rest.md, "Discussions"; docs/hubs/discussion.md).

- ``POST /discussions`` with ``{topic, panelists: [agentId...], judge, rounds,
  sessionId?}``: 201 and the run (with its ``runId``); 400 and the reason for a
  request that cannot start one; 503 (with ``Retry-After``) when too many tasks
  wait;
- ``GET /discussions?limit=``: the caller's runs, newest first, without their
  turns;
- ``GET /discussions/{runId}``: the run, every turn's text and the verdict; 404
  for another user's run, as for an unknown one.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...server.routes import RestRequest, Route
from ...storage.base import Owner
from .runs import RefusedRun, RunNotFound, Runs, parse_order

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class DiscussionRest:
    def __init__(self, runs: Runs) -> None:
        self._runs = runs

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/discussions", self.start),
            Route.of("GET", "/discussions", self.list),
            Route.of("GET", "/discussions/{run_id}", self.run),
        ]

    async def start(self, request: RestRequest) -> tuple[int, Any]:
        try:
            order = parse_order(request.json())
            view = await self._runs.start(_owner(request), order)
        except RefusedRun as error:
            return 400, {"error": str(error)}
        return 201, unstructure(view)

    async def list(self, request: RestRequest) -> tuple[int, Any]:
        limit = _limit(request.query.get("limit"))
        if limit is None:
            return 400, {"error": f"'limit' must be an integer from 1 to {MAX_LIMIT}."}
        views = await self._runs.list(_owner(request), limit)
        return 200, [unstructure(view) for view in views]

    async def run(self, request: RestRequest) -> tuple[int, Any]:
        try:
            view = await self._runs.view(_owner(request), request.params["run_id"])
        except RunNotFound as error:
            return 404, {"error": str(error)}
        return 200, unstructure(view)


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)


def _limit(raw: str | None) -> int | None:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        return None
    return limit if 1 <= limit <= MAX_LIMIT else None
