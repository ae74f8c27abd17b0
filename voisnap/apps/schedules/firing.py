"""What firing a due slot of a schedule does (docs/schedules.md, "Firing").

The process that claimed the slot (``scheduler``) hands it here, and:

1. ``CronFired{scheduleId, at}`` goes to the schedule's user (``at``: the slot);
2. the schedule's agent must be available and the task queue not full, else
   ``CronFailed{scheduleId, error, at}`` says why, and the run has failed;
3. the prompt is stored as the user's message in the schedule's session (a new
   one, titled ``Scheduled: <prompt>``, at the first fire of a schedule that
   names none, kept for the next fires), and its task, of kind ``workflow``, is
   queued: what the chat hub does for ``SendMessage`` (the same store call,
   the same announcements), so the session's devices see the task's events
   and the reply like any other.

From there the task runtime runs it with the chat job; the ``WorkflowFace``
(``notifier``) turns its start and end into the ``WorkflowRun*`` events.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from ...agents.registry import AgentRegistry, UnknownAgent
from ...agents.runtime import WORKFLOW, RuntimeBusy, TaskRuntime
from ...clock import Clock
from ...storage.base import (
    USER,
    Audience,
    Message,
    RunState,
    Schedule,
    ScheduleStore,
    Session,
    Store,
    StoreError,
    StoreUnavailable,
    Task,
    TaskState,
    WorkflowRun,
)
from ..notifications.events import CronFailed, CronFired
from ..notifications.publisher import Notifications

log = logging.getLogger(__name__)

TITLE_LENGTH = 60


class ScheduledStore(Store, ScheduleStore, Protocol):
    """A store with schedules (``SqlStore`` is one)."""


def title_of(prompt: str) -> str:
    title = "Scheduled: " + " ".join(prompt.split())
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Firing:
    def __init__(
        self,
        store: ScheduledStore,
        agents: AgentRegistry,
        runtime: TaskRuntime,
        events: Any,
        notifications: Notifications,
        clock: Clock,
    ) -> None:
        """``events``: the apps' faces (``TaskQueued``, ``SessionUpdated``, as
        for a chat message)."""
        self._store = store
        self._agents = agents
        self._runtime = runtime
        self._events = events
        self._notifications = notifications
        self._clock = clock

    async def fire(self, schedule: Schedule, run: WorkflowRun) -> Task | None:
        """This process claimed ``run``: announce it, then queue its task (returned)
        or say why it cannot run (None)."""
        await self._tell(schedule, "CronFired", CronFired(schedule.schedule_id, run.slot))
        try:
            self._agents.entry(schedule.agent_id)
            await self._runtime.check_capacity()
            task = await self._queue(schedule, run)
        except StoreUnavailable:
            raise  # the database is down: nothing can be recorded, the caller logs it
        except (UnknownAgent, RuntimeBusy, StoreError) as error:
            # StoreError: the session named is someone else's now.
            await self._fail(schedule, run, str(error))
            return None
        return task

    async def _queue(self, schedule: Schedule, run: WorkflowRun) -> Task:
        now = self._clock.now()
        owner = schedule.owner
        session_id = schedule.session_id or new_id("sess")
        session = Session(session_id, owner, title_of(schedule.prompt), now, now)
        message = Message(new_id("msg"), session_id, owner, "user", schedule.prompt, now)
        task = self._runtime.reserve(
            Task(
                task_id=new_id("task"),
                session_id=session_id,
                owner=owner,
                agent_id=schedule.agent_id,
                message_id=message.message_id,
                state=TaskState.QUEUED,
                created_at=now,
                kind=WORKFLOW,
            )
        )
        accepted = await self._store.start_workflow_run(
            run.run_id, session=session, message=message, task=task
        )
        queued = accepted.task
        await self._events.queued(queued)
        await self._runtime.submit(queued)
        touched = await self._store.update_session(
            owner, queued.session_id, updated_at=now, title=None
        )
        if touched is not None:
            await self._events.session_updated(touched)
        return queued

    async def _fail(self, schedule: Schedule, run: WorkflowRun, error: str) -> None:
        log.info("schedule %s could not fire: %s", schedule.schedule_id, error)
        await self._store.update_workflow_run(
            run.run_id, RunState.FAILED, error=error, finished_at=self._clock.now()
        )
        payload = CronFailed(schedule.schedule_id, error, run.slot)
        await self._tell(schedule, "CronFailed", payload)

    async def _tell(self, schedule: Schedule, event: str, payload: Any) -> None:
        owner = schedule.owner
        await self._notifications.publish(
            owner.tenant_id, Audience(USER, owner.user_id), event, payload
        )
