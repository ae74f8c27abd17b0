"""The workflow runs' rendering of the runtime's domain events (docs/schedules.md).

A face among the others (``apps.faces``): it shows only tasks of kind
``workflow``, the tasks a schedule's firing queued (``firing``), to the
schedule's user, through the notifications path (stored in the feed, then
sent): ``WorkflowRunStarted{runId, scheduleId, taskId, at}`` when the task
starts, ``WorkflowRunCompleted{runId, durationMs}`` when it completes,
``WorkflowRunFailed{runId, error}`` when it fails (an agent's error, or
``interrupted`` when its process died) or is cancelled; and keeps the run's
state in the store. The chat face shows the same task to the session as usual.

The runtime reports an event to every face in turn; a store that cannot be
reached here must not fail the task, so each event is contained.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...agents.runtime import WORKFLOW
from ...failures import error_boundary
from ...storage.base import (
    USER,
    Audience,
    RunState,
    ScheduleStore,
    StoreError,
    Task,
    WorkflowRun,
    utc_now,
)
from ..notifications.events import WorkflowRunCompleted, WorkflowRunFailed, WorkflowRunStarted
from ..notifications.publisher import Notifications

log = logging.getLogger(__name__)


class WorkflowFace:
    def __init__(self, store: ScheduleStore, notifications: Notifications) -> None:
        self._store = store
        self._notifications = notifications

    async def started(self, task: Task) -> None:
        with contained(task):
            run = await self._run_of(task)
            if run is not None:
                await self._store.update_workflow_run(run.run_id, RunState.RUNNING)
                at = task.started_at or utc_now()
                payload = WorkflowRunStarted(run.run_id, run.schedule_id, task.task_id, at)
                await self._tell(task, "WorkflowRunStarted", payload)

    async def completed(self, task: Task) -> None:
        with contained(task):
            run = await self._run_of(task)
            if run is not None:
                finished_at = task.finished_at or utc_now()
                await self._store.update_workflow_run(
                    run.run_id, RunState.COMPLETED, finished_at=finished_at
                )
                payload = WorkflowRunCompleted(run.run_id, task.duration_ms or 0)
                await self._tell(task, "WorkflowRunCompleted", payload)

    async def failed(self, task: Task, error: str) -> None:
        with contained(task):
            await self._end(task, error)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        with contained(task):
            await self._end(task, f"The run was cancelled by {cancelled_by}.")

    async def _end(self, task: Task, error: str) -> None:
        run = await self._run_of(task)
        if run is not None:
            await self._store.update_workflow_run(
                run.run_id, RunState.FAILED, error=error, finished_at=utc_now()
            )
            await self._tell(task, "WorkflowRunFailed", WorkflowRunFailed(run.run_id, error))

    async def _run_of(self, task: Task) -> WorkflowRun | None:
        """The workflow run ``task`` belongs to; None for tasks of other kinds."""
        if task.kind != WORKFLOW:
            return None
        return await self._store.workflow_run_of_task(task.task_id)

    async def _tell(self, task: Task, event: str, payload: Any) -> None:
        owner = task.owner
        await self._notifications.publish(
            owner.tenant_id, Audience(USER, owner.user_id), event, payload
        )


@contextmanager
def contained(task: Task) -> Iterator[None]:
    """A failure here stays here: the task's other faces and its end go on. The
    database being down is not a bug, and is logged as what it is."""
    with error_boundary(log, f"the workflow events of task {task.task_id}"):
        try:
            yield
        except StoreError as error:
            log.warning("no workflow event for task %s: %s", task.task_id, error)
