"""The agent tasks in the metrics (docs/operations.md, "Metrics"): a face of the
runtime (``apps.faces``) that counts each task's states, once each, in the
process that reports them, and the durations of completed ones."""

from __future__ import annotations

from ..metrics import TASK_SECONDS, TASKS
from ..storage.base import Request, Task


class MetricsFace:
    async def queued(self, task: Task) -> None:
        TASKS.labels(task.kind, "queued").inc()

    async def started(self, task: Task) -> None:
        TASKS.labels(task.kind, "started").inc()

    async def waiting(self, task: Task, request: Request) -> None:
        TASKS.labels(task.kind, "waiting").inc()

    async def completed(self, task: Task) -> None:
        TASKS.labels(task.kind, "completed").inc()
        if task.duration_ms is not None:
            TASK_SECONDS.labels(task.kind).observe(task.duration_ms / 1000)

    async def failed(self, task: Task, error: str) -> None:
        TASKS.labels(task.kind, "failed").inc()

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        TASKS.labels(task.kind, "cancelled").inc()
