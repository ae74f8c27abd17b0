"""The tasks hub's rendering of the runtime's domain events: the lifecycle of
every task of a user, to that user's watching connections."""

from __future__ import annotations

from ...hubs.hub import invocation_of
from ...routing.router import Router
from ...storage.base import Task
from ..chat.events import TaskCancelled, TaskCompleted, TaskFailed, TaskQueued, TaskStarted
from .hub import watchers_key


class TasksEvents:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def _send(self, task: Task, target: str, payload: object) -> None:
        key = watchers_key(task.owner.tenant_id, task.owner.user_id)
        await self._router.send_group(key, invocation_of(target, (payload,)))

    async def queued(self, task: Task) -> None:
        await self._send(task, "TaskQueued", TaskQueued(task.task_id, task.session_id))

    async def started(self, task: Task) -> None:
        assert task.started_at is not None
        await self._send(task, "TaskStarted", TaskStarted(task.task_id, task.started_at))

    async def completed(self, task: Task) -> None:
        payload = TaskCompleted(task.task_id, task.duration_ms or 0, task.tokens_used or 0)
        await self._send(task, "TaskCompleted", payload)

    async def failed(self, task: Task, error: str) -> None:
        await self._send(task, "TaskFailed", TaskFailed(task.task_id, error))

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        await self._send(task, "TaskCancelled", TaskCancelled(task.task_id, cancelled_by))
