"""REST catch-up (docs/rest.md): what a client missed while away.

- ``GET /sessions``: the caller's sessions, most recently active first;
- ``GET /sessions/{sessionId}/messages?limit=50&before=<messageId>``: a
  session's messages, oldest first (``before`` pages back in time);
- ``GET /tasks?status=&limit=&before=``: the task ledger, every session,
  newest first (``before``: a task id);
- ``GET /tasks/{taskId}``: a task and its state.

Field names are the hub events' (camelCase). Another user's or tenant's ids
answer 404, like unknown ones.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from ...hubs.binder import unstructure
from ...server.routes import RestRequest, Route
from ...storage.base import Message, Owner, Session, Store, Task, TaskState

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@attrs.frozen
class SessionView:
    session_id: str
    title: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


@attrs.frozen
class MessageView:
    message_id: str
    session_id: str
    role: str
    content: str
    created_at: datetime.datetime
    task_id: str | None
    tool_calls: list[dict[str, Any]] | None
    spoken: bool


@attrs.frozen
class TaskView:
    task_id: str
    session_id: str
    agent_id: str
    message_id: str
    state: str
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    duration_ms: int | None
    tokens_used: int | None
    error: str | None
    cancelled_by: str | None
    result_message_id: str | None


def session_view(session: Session) -> SessionView:
    return SessionView(session.session_id, session.title, session.created_at, session.updated_at)


def message_view(message: Message) -> MessageView:
    tool_calls = None if message.tool_calls is None else list(message.tool_calls)
    return MessageView(
        message.message_id,
        message.session_id,
        message.role,
        message.content,
        message.created_at,
        message.task_id,
        tool_calls,
        message.spoken,
    )


def task_view(task: Task) -> TaskView:
    return TaskView(
        task.task_id,
        task.session_id,
        task.agent_id,
        task.message_id,
        task.state.value,
        task.created_at,
        task.started_at,
        task.finished_at,
        task.duration_ms,
        task.tokens_used,
        task.error,
        task.cancelled_by,
        task.result_message_id,
    )


class ChatRest:
    def __init__(self, store: Store) -> None:
        self._store = store

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/sessions", self.sessions),
            Route.of("GET", "/sessions/{session_id}/messages", self.messages),
            Route.of("GET", "/tasks", self.tasks),
            Route.of("GET", "/tasks/{task_id}", self.task),
        ]

    async def sessions(self, request: RestRequest) -> tuple[int, Any]:
        sessions = await self._store.list_sessions(_owner(request))
        return 200, [unstructure(session_view(s)) for s in sessions]

    async def messages(self, request: RestRequest) -> tuple[int, Any]:
        owner = _owner(request)
        session_id = request.params["session_id"]
        if await self._store.get_session(owner, session_id) is None:
            return 404, {"error": f"Session '{session_id}' does not exist."}
        limit = page_limit(request.query.get("limit"))
        if limit is None:
            return 400, {"error": f"'limit' must be an integer from 1 to {MAX_LIMIT}."}
        before = request.query.get("before") or None
        messages = await self._store.list_messages(owner, session_id, limit=limit, before=before)
        return 200, [unstructure(message_view(m)) for m in messages]

    async def tasks(self, request: RestRequest) -> tuple[int, Any]:
        """The task ledger: the caller's tasks of every session, newest first."""
        status = request.query.get("status")
        states: tuple[TaskState, ...] = ()
        if status is not None:
            try:
                states = (TaskState(status),)
            except ValueError:
                known = ", ".join(state.value for state in TaskState)
                return 400, {"error": f"'status' must be one of {known}."}
        limit = page_limit(request.query.get("limit"))
        if limit is None:
            return 400, {"error": f"'limit' must be an integer from 1 to {MAX_LIMIT}."}
        before = request.query.get("before") or None
        tasks = await self._store.list_tasks(
            _owner(request), states=states, limit=limit, before=before
        )
        return 200, [unstructure(task_view(task)) for task in tasks]

    async def task(self, request: RestRequest) -> tuple[int, Any]:
        task_id = request.params["task_id"]
        task = await self._store.get_task(_owner(request), task_id)
        if task is None:
            return 404, {"error": f"Task '{task_id}' does not exist."}
        return 200, unstructure(task_view(task))


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)


def page_limit(raw: str | None) -> int | None:
    """A page's ``?limit=``: ``DEFAULT_LIMIT`` when absent; None unless an integer
    from 1 to ``MAX_LIMIT`` (the route answers 400)."""
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        return None
    return limit if 1 <= limit <= MAX_LIMIT else None
