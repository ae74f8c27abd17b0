"""The REST twin of ``task.submit`` (seed 004: "Same shape as POST /v1/tasks").

- ``POST /v1/tasks`` ``{mode, prompt, profile_id?, session_id?}``: 201
  ``{task_id, session_id}``; the task's events flow to the session's
  subscribers (the chat hub's session group);
- ``GET /v1/tasks/{id}``: the task (404 if it is not the caller's).

Errors answer ``{"type": "error", "code", "message"}`` with the status of the code.
"""

from __future__ import annotations

from typing import Any

from ...hubs.binder import unstructure
from ...server.routes import RestRequest, Route
from ...storage.base import Owner, Task
from ..chat.hub import ChatServices
from .submission import BAD_REQUEST, NOT_FOUND, RATE_LIMITED, Refused, Submission, submit

STATUS = {BAD_REQUEST: 400, NOT_FOUND: 404, RATE_LIMITED: 429}


class V1TasksRest:
    def __init__(self, services: ChatServices) -> None:
        self._services = services

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/v1/tasks", self.create),
            Route.of("GET", "/v1/tasks/{task_id}", self.read),
        ]

    async def create(self, request: RestRequest) -> tuple[int, Any]:
        try:
            task = await submit(self._services, _owner(request), Submission.of(request.json()))
        except Refused as refusal:
            return STATUS[refusal.code], error(refusal.code, str(refusal))
        return 201, {"task_id": task.task_id, "session_id": task.session_id}

    async def read(self, request: RestRequest) -> tuple[int, Any]:
        task_id = request.params["task_id"]
        task = await self._services.store.get_task(_owner(request), task_id)
        if task is None:
            return 404, error(NOT_FOUND, f"Task '{task_id}' does not exist.")
        return 200, task_document(task)


def task_document(task: Task) -> dict[str, Any]:
    """A task as ``/v1`` shows it (snake_case, as the seed's events are)."""
    return {
        "task_id": task.task_id,
        "session_id": task.session_id,
        "profile_id": task.agent_id,
        "status": task.state.value,
        "created_at": unstructure(task.created_at),
        "started_at": _time(task.started_at),
        "finished_at": _time(task.finished_at),
        "error": task.error,
        "cancelled_by": task.cancelled_by,
        "result_message_id": task.result_message_id,
    }


def error(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}


def _time(moment: Any) -> str | None:
    return None if moment is None else unstructure(moment)


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
