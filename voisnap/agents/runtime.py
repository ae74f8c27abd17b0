"""The task runtime: accepted messages become tasks, run by agents in the background.

docs/hubs/chat.md, "Tasks": a task that was streaming when its client
reconnected goes on, and the client sees a possibly-incomplete stream followed
by TaskCompleted once the task finishes. So a task belongs to the server, not to the connection that
asked for it: tasks wait in a queue and run on a fixed number of workers in the
server's nursery, and a client that disconnects does not cancel anything.

The runtime turns an agent's events into stored records and tells a
``TaskEvents`` sink (the chat hub's event router) what happened, in the order
docs/hubs/chat.md ("Task events") gives: started, status checkpoints, stream chunks (the last one
``isFinal``), tool calls, the final message (stored first), then completed,
failed or cancelled.

After a restart, a task that was running is marked failed ("interrupted"),
and queued tasks run.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any, Protocol

import trio

from ..failures import error_boundary, report_unexpected
from ..storage.base import Message, Store, Task, TaskState, utc_now
from .base import (
    AgentError,
    AgentRequest,
    Decision,
    Final,
    Status,
    Token,
    ToolCompleted,
    ToolStarted,
)
from .registry import AgentRegistry, UnknownAgent

log = logging.getLogger(__name__)

INTERRUPTED = "The task was interrupted by a server restart."
UNEXPECTED = "The agent failed unexpectedly."
HISTORY = 50  # earlier messages an agent is given


class RuntimeBusy(Exception):
    """Too many tasks are waiting; the text is safe to show."""


class TaskEvents(Protocol):
    """Where the runtime reports a task's progress (the chat hub's event router)."""

    async def started(self, task: Task) -> None: ...

    async def status(self, task: Task, status: str, detail: str | None) -> None: ...

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None: ...

    async def tool_started(self, task: Task, tool_name: str, arguments: dict[str, Any]) -> None: ...

    async def tool_completed(
        self, task: Task, tool_name: str, duration_ms: int, ok: bool
    ) -> None: ...

    async def message(self, task: Task, message: Message) -> None: ...

    async def completed(self, task: Task) -> None: ...

    async def failed(self, task: Task, error: str) -> None: ...

    async def cancelled(self, task: Task, cancelled_by: str) -> None: ...


class TaskRuntime:
    def __init__(
        self,
        store: Store,
        agents: AgentRegistry,
        events: TaskEvents,
        *,
        workers: int,
        queue_limit: int,
    ) -> None:
        self._store = store
        self._agents = agents
        self._events = events
        self._workers = workers
        self._queue_limit = queue_limit
        self._queue: list[str] = []  # task ids, oldest first
        self._arrived = trio.lowlevel.ParkingLot()
        self._running: dict[str, trio.CancelScope] = {}
        self._cancelled_by: dict[str, str] = {}
        self._questions = PendingQuestions()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover from a restart, then run tasks forever (in the server's nursery)."""
        for task in await self._store.recover_tasks(INTERRUPTED):
            self._queue.append(task.task_id)
        async with trio.open_nursery() as workers:
            for _ in range(self._workers):
                workers.start_soon(self._work)
            task_status.started()

    # -- what the hub asks -------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        if len(self._queue) >= self._queue_limit:
            raise RuntimeBusy("Too many tasks are waiting; try again shortly.")
        self._queue.append(task.task_id)
        self._arrived.unpark()

    def check_capacity(self) -> None:
        """Refuse before storing anything when the queue is full."""
        if len(self._queue) >= self._queue_limit:
            raise RuntimeBusy("Too many tasks are waiting; try again shortly.")

    async def cancel(self, task: Task, cancelled_by: str) -> None:
        """Cancel a queued or running task; a finished one is left alone."""
        if task.task_id in self._queue:
            self._queue.remove(task.task_id)
            finished = await self._store.finish_task(
                task.task_id, TaskState.CANCELLED, cancelled_by=cancelled_by
            )
            if finished is not None:
                await self._events.cancelled(finished, cancelled_by)
        elif task.task_id in self._running:
            self._cancelled_by.setdefault(task.task_id, cancelled_by)
            self._running[task.task_id].cancel()

    @property
    def questions(self) -> PendingQuestions:
        """Approvals and user answers the agents are waiting for."""
        return self._questions

    # -- workers -----------------------------------------------------------------------------

    async def _work(self) -> None:
        """One worker. Each task runs in its own error boundary: a task whose
        failure could not even be recorded (the store is down) costs that
        task, never the worker or the server."""
        while True:
            while not self._queue:
                await self._arrived.park()
            with error_boundary(log, "running a task"):
                await self._run_task(self._queue.pop(0))

    async def _run_task(self, task_id: str) -> None:
        # The scope is findable from the moment the task leaves the queue, so a
        # cancel that comes while the task is being started is not lost.
        scope = self._running[task_id] = trio.CancelScope()
        try:
            with scope:
                task = await self._store.start_task(task_id, utc_now())
                if task is None:
                    return  # cancelled while queued
                await self._events.started(task)
                final = await self._drive(task)
                await self._finish(task, final)
        except (UnknownAgent, AgentError) as error:
            await self._fail(task_id, str(error))
        except Exception as error:
            report_unexpected(log, f"the agent of task {task_id}", error)
            await self._fail(task_id, UNEXPECTED)
        finally:
            del self._running[task_id]
        if scope.cancelled_caught:
            await self._cancelled(task_id)

    async def _drive(self, task: Task) -> Final:
        """Run the agent, reporting each event; its Final."""
        agent = self._agents.get(task.agent_id)
        request = await self._request(task)
        final: Final | None = None
        async for event in agent.run(request, self._questions.context_for(task)):
            match event:
                case Status():
                    await self._events.status(task, event.status, event.detail)
                case Token() if task.is_streaming:
                    await self._events.chunk(task, event.delta, False)
                case ToolStarted():
                    await self._events.tool_started(task, event.tool_name, event.arguments)
                case ToolCompleted():
                    await self._events.tool_completed(
                        task, event.tool_name, event.duration_ms, event.ok
                    )
                case Final():
                    final = event
        if final is None:
            raise AgentError("The agent ended without a reply.")
        return final

    async def _request(self, task: Task) -> AgentRequest:
        asked = await self._store.get_message(task.owner, task.message_id)
        if asked is None:
            raise AgentError("The message this task answers is gone.")
        history = await self._store.list_messages(
            task.owner, task.session_id, limit=HISTORY, before=task.message_id
        )
        return AgentRequest(
            task_id=task.task_id,
            session_id=task.session_id,
            owner=task.owner,
            content=asked.content,
            history=tuple(history),
            channel_id=task.channel_id,
        )

    async def _finish(self, task: Task, final: Final) -> None:
        """Store the reply first, then announce it, so REST can always catch up
        (docs/rest.md, "GET /sessions/{sessionId}/messages")."""
        reply = Message(
            message_id=f"msg_{uuid.uuid4().hex}",
            session_id=task.session_id,
            owner=task.owner,
            role="assistant",
            content=final.content,
            created_at=utc_now(),
            tool_calls=final.tool_calls or None,
            task_id=task.task_id,
        )
        done = await self._store.complete_task(
            task.task_id, reply=reply, tokens_used=final.tokens_used
        )
        if task.is_streaming:
            await self._events.chunk(done, "", True)
        await self._events.message(done, reply)
        await self._events.completed(done)

    async def _fail(self, task_id: str, error: str) -> None:
        failed = await self._store.finish_task(task_id, TaskState.FAILED, error=error)
        if failed is not None:
            await self._events.failed(failed, error)

    async def _cancelled(self, task_id: str) -> None:
        by = self._cancelled_by.pop(task_id, None)
        with trio.CancelScope(shield=True):
            task = await self._store.get_task_by_id(task_id)
            if task is None:
                return
            by = by or task.owner.user_id
            finished = await self._store.finish_task(task_id, TaskState.CANCELLED, cancelled_by=by)
            if finished is not None:
                await self._events.cancelled(finished, by)


class PendingQuestions:
    """Approvals and questions agents wait on, until something answers them
    (the approvals feature; tests answer them directly)."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[trio.Event, list[Any]]] = {}
        self._ids = itertools.count(1)

    def context_for(self, task: Task) -> TaskContext:
        return TaskContext(self, task)

    async def wait(self, prefix: str) -> tuple[str, Any]:
        question_id = f"{prefix}_{next(self._ids)}"
        answered = trio.Event()
        box: list[Any] = []
        self._waiting[question_id] = (answered, box)
        try:
            await answered.wait()
        finally:
            del self._waiting[question_id]
        return question_id, box[0]

    def pending(self) -> list[str]:
        return list(self._waiting)

    def answer(self, question_id: str, answer: Any) -> bool:
        """Give a waiting agent its answer; False if nothing waits for it."""
        waiting = self._waiting.get(question_id)
        if waiting is None or waiting[0].is_set():
            return False
        waiting[1].append(answer)
        waiting[0].set()
        return True


class TaskContext:
    """``AgentContext`` for one task."""

    def __init__(self, questions: PendingQuestions, task: Task) -> None:
        self._questions = questions
        self.task = task

    async def request_approval(self, action: str, details: dict[str, Any]) -> Decision:
        _, decision = await self._questions.wait("approval")
        return decision

    async def ask_user(self, question: str) -> str:
        _, answer = await self._questions.wait("info")
        return answer
