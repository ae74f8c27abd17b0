"""The task runtime: accepted messages become tasks, run by agents in the background.

docs/hubs/chat.md, "Tasks": a task that was streaming when its client
reconnected goes on, and the client sees a possibly-incomplete stream followed
by TaskCompleted once the task finishes. So a task belongs to the server, not
to the connection that asked for it, and a client that disconnects does not
cancel anything.

The queue is the store (issue 11): any process may run any queued task,
exactly once. A fixed number of workers in the server's nursery claim the
oldest queued task with a lease (``Store.claim_task``) and renew it while the
agent runs; a task whose process died fails ("interrupted") once its lease
lapses, found by whichever process looks first, so restarting one process
never fails another's live task, and the queued tasks of a dead process run
elsewhere. Processes wake each other when a task is queued and pass on a
cancel to the one running the task (``TaskSignals``); polling the store makes
up for a lost signal.

What runs between the claim and the end depends on the task's ``kind``: a
``ChatJob`` (``agents.chat_job``: an agent answers a message) or a
``DiscussionJob`` (``agents.discussion``: a panel of agents and a judge). The
runtime keeps what every kind shares: the claim, the lease and its renewal,
the cancel (wherever the task runs), and the failure (an agent's error, or
``interrupted`` when the lease lapses). Everything is told to a ``TaskEvents``
sink (the apps' faces), in the order docs/hubs/chat.md ("Task events") gives:
started, status checkpoints, stream chunks (the last one ``isFinal``), tool
calls, the final message (stored first), then completed, failed or cancelled.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from ..failures import error_boundary, report_client_error, report_unexpected
from ..storage.base import Message, Request, Store, StoreError, Task, TaskState, utc_now
from .base import AgentError, ToolCall, ToolResult
from .chat_job import ChatJob
from .decisions import Decisions
from .discussion import KIND as DISCUSSION
from .discussion import DiscussionJob
from .driver import LeaseLost, RequestTimeouts, TaskDriver
from .registry import AgentRegistry, UnknownAgent
from .tools import Toolbox

log = logging.getLogger(__name__)

INTERRUPTED = "The task was interrupted: the process running it stopped."
UNEXPECTED = "The agent failed unexpectedly."
WORKFLOW = "workflow"
"""The kind of a schedule's task (apps.schedules): its prompt, answered as a chat message."""


class Job(Protocol):
    """What runs one claimed task of a kind (``ChatJob``, ``DiscussionJob``)."""

    async def run(self, task: Task) -> None: ...


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

    async def tool_called(self, task: Task, call: ToolCall) -> None:
        """The agent asked for ``call`` (its transcript now holds it)."""

    async def tool_result(self, task: Task, result: ToolResult) -> None:
        """A call's result, however it came: run, refused, decided or answered."""

    async def continuing(self, task: Task, continuation: int, max_continuations: int) -> None:
        """The agent used a chain's steps and goes on in chain ``continuation`` + 1."""

    async def system_prompt(self, task: Task, prompt: str) -> None:
        """What the agent is told first, this time it runs (for administrators)."""

    async def message(self, task: Task, message: Message) -> None: ...

    async def completed(self, task: Task) -> None: ...

    async def failed(self, task: Task, error: str) -> None: ...

    async def cancelled(self, task: Task, cancelled_by: str) -> None: ...

    async def waiting(self, task: Task, request: Request) -> None:
        """The task waits for a person (an approval, an answer)."""

    async def request_resolved(self, request: Request) -> None:
        """A request was decided, answered, timed out, or cancelled with its task."""


class TaskSignals(Protocol):
    """How runtimes in several processes tell each other about tasks (over the
    backplane; ``apps.chat.signals``). Both are hints: a lost one is made up
    for by polling the store."""

    async def listen(self, queued: Callable[[], None], cancel: Callable[[str, str], bool]) -> None:
        """From now on, call ``queued()`` when another process queued a task and
        ``cancel(task_id, by)`` when one asks to cancel a task."""

    async def task_queued(self) -> None: ...

    async def cancel(self, task_id: str, by: str) -> None: ...


@attrs.frozen
class Leases:
    """How long a claimed task is this process's without news (``length``), and
    how often the news comes (``renewal``): a lease renewed every ``renewal``
    seconds lapses ``length`` seconds after its process died."""

    length: float = 15.0
    renewal: float = 5.0


class TaskRuntime:
    def __init__(
        self,
        store: Store,
        agents: AgentRegistry,
        events: TaskEvents,
        *,
        workers: int,
        queue_limit: int,
        node: str = "",
        leases: Leases = Leases(),
        signals: TaskSignals | None = None,
        timeouts: RequestTimeouts | None = None,
        max_steps: int = 8,
        toolbox: Toolbox | None = None,
    ) -> None:
        self._store = store
        self._agents = agents
        self._events = events
        self._workers = workers
        self._queue_limit = queue_limit
        self._node = node or uuid.uuid4().hex
        self._leases = leases
        self._signals = signals
        self._arrived = trio.lowlevel.ParkingLot()
        self._running: dict[str, trio.CancelScope] = {}
        self._cancelled_by: dict[str, str] = {}
        self._lost: set[str] = set()
        driver = TaskDriver(
            store,
            agents,
            toolbox or Toolbox(store),
            events,
            node=self._node,
            timeouts=timeouts or RequestTimeouts(),
            max_steps=max_steps,
        )
        # What runs a claimed task depends on its kind; claiming, leases,
        # cancels and failures are the same for every kind.
        chat = ChatJob(store, driver, events, node=self._node, agents=agents)
        self._jobs: dict[str, Job] = {
            "chat": chat,
            WORKFLOW: chat,  # a schedule's prompt is answered as a chat message is
            DISCUSSION: DiscussionJob(store, agents, events, node=self._node),  # type: ignore[arg-type]
        }
        self.decisions = Decisions(store, events, self.submit)
        """Approvals and answers (docs/hubs/approvals.md)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run tasks forever (in the server's nursery): claim queued ones from
        the store, and fail those whose process died (their lease lapsed)."""
        if self._signals is not None:
            await self._signals.listen(self._wake, self._cancel_here)
        async with trio.open_nursery() as nursery:
            for _ in range(self._workers):
                nursery.start_soon(self._work)
            nursery.start_soon(self._expire_lapsed_leases)
            task_status.started()

    # -- what the hub asks -------------------------------------------------------------------

    def reserve(self, task: Task) -> Task:
        """``task``, reserved for this process for a moment: the process that
        accepts a message runs its task when it can, so that the devices see
        its events in the order they were sent; another process takes it if
        this one has not within one renewal period."""
        until = task.created_at + datetime.timedelta(seconds=self._leases.renewal)
        return attrs.evolve(task, lease_owner=self._node, lease_until=until)

    async def check_capacity(self) -> None:
        """Refuse before storing anything when too many tasks wait, on any process."""
        if await self._store.count_queued() >= self._queue_limit:
            raise RuntimeBusy("Too many tasks are waiting; try again shortly.")

    async def submit(self, task: Task) -> None:
        """``task`` is queued in the store: wake a worker here, and every other process's."""
        self._wake()
        if self._signals is not None:
            await self._signals.task_queued()

    async def cancel(self, task: Task, cancelled_by: str) -> None:
        """Cancel a queued task (now) or a running one (its runner stops it,
        wherever it runs); a finished one is left alone."""
        cancelled = await self._store.request_cancel(task.task_id, cancelled_by)
        if cancelled is not None:
            await self._events.cancelled(cancelled, cancelled_by)
            for request in await self._store.cancel_requests_of(task.task_id, utc_now()):
                await self._events.request_resolved(request)
        elif not self._cancel_here(task.task_id, cancelled_by) and self._signals is not None:
            await self._signals.cancel(task.task_id, cancelled_by)

    def _cancel_here(self, task_id: str, cancelled_by: str) -> bool:
        """Stop a task that runs in this process; False if it does not."""
        scope = self._running.get(task_id)
        if scope is None:
            return False
        self._cancelled_by.setdefault(task_id, cancelled_by)
        scope.cancel()
        return True

    # -- workers -----------------------------------------------------------------------------

    def _wake(self) -> None:
        self._arrived.unpark_all()  # every idle worker tries; the store gives each task once

    async def _work(self) -> None:
        """One worker: claim the oldest queued task, run it, repeat; between
        tasks, wait to be woken, or poll the store (another process's wake-up
        may have been lost). Each task runs in its own error boundary."""
        while True:
            task = await self._claim()
            if task is None:
                with trio.move_on_after(self._leases.renewal):
                    await self._arrived.park()
                continue
            with error_boundary(log, "running a task"):
                await self._run_task(task)

    async def _claim(self) -> Task | None:
        now = utc_now()
        lease_until = now + datetime.timedelta(seconds=self._leases.length)
        try:
            return await self._store.claim_task(self._node, now, lease_until)
        except StoreError as error:
            report_client_error(log, "the store cannot be asked for work now", str(error))
            return None

    async def _run_task(self, task: Task) -> None:
        # The scope is findable from the moment the task is claimed, so a
        # cancel that comes while the task is being started is not lost.
        task_id = task.task_id
        scope = self._running[task_id] = trio.CancelScope()
        failure: str | None = None
        try:
            # A cancel asked for between the claim and now found no scope here:
            # the store has it.
            asked_by = await self._store.cancel_requested(task_id)
            if asked_by is not None:
                self._cancel_here(task_id, asked_by)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_lease, task_id, scope)
                try:
                    with scope:
                        await self._job_for(task).run(task)
                except LeaseLost:
                    pass  # the task is no longer ours: whoever has it says what happened
                except (UnknownAgent, AgentError) as error:
                    failure = str(error)
                except Exception as error:
                    report_unexpected(log, f"the agent of task {task_id}", error)
                    failure = UNEXPECTED
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            del self._running[task_id]
        if failure is not None:
            await self._fail(task_id, failure)
        elif scope.cancelled_caught:
            await self._cancelled(task_id)

    def _job_for(self, task: Task) -> Job:
        job = self._jobs.get(task.kind)
        if job is None:
            raise AgentError(f"This server cannot run tasks of kind '{task.kind}'.")
        return job

    async def _keep_lease(self, task_id: str, scope: trio.CancelScope) -> None:
        """Renew the task's lease while it runs; stop it if the lease is lost
        (another process failed it) or someone asked, anywhere, to cancel it."""
        while True:
            await trio.sleep(self._leases.renewal)
            until = utc_now() + datetime.timedelta(seconds=self._leases.length)
            try:
                held = await self._store.renew_lease(task_id, self._node, until)
                asked_by = await self._store.cancel_requested(task_id)
            except StoreError as error:
                report_client_error(log, "a task's lease could not be renewed", str(error))
                continue
            if not held:
                self._lost.add(task_id)
                scope.cancel()
            elif asked_by is not None:
                self._cancel_here(task_id, asked_by)

    async def _expire_lapsed_leases(self) -> None:
        """Tasks whose process died fail ("interrupted"), and requests nobody
        answered in time time out, found by whichever process looks first; at
        start-up too, for this process's earlier life."""
        while True:
            with error_boundary(log, "expiring leases and requests"):
                try:
                    lapsed = await self._store.expire_leases(utc_now(), INTERRUPTED)
                    await self.decisions.expire()
                except StoreError as error:
                    report_client_error(log, "leases cannot be checked now", str(error))
                    lapsed = []
                for task in lapsed:
                    await self._events.failed(task, INTERRUPTED)
            await trio.sleep(self._leases.renewal)

    async def _fail(self, task_id: str, error: str) -> None:
        failed = await self._store.finish_task(
            task_id, TaskState.FAILED, error=error, node=self._node
        )
        if failed is not None:
            await self._events.failed(failed, error)

    async def _cancelled(self, task_id: str) -> None:
        by = self._cancelled_by.pop(task_id, None)
        if task_id in self._lost:
            self._lost.discard(task_id)
            return  # not cancelled: the lease was lost, and its end decided elsewhere
        with trio.CancelScope(shield=True):
            task = await self._store.get_task_by_id(task_id)
            if task is None:
                return
            by = by or task.owner.user_id
            finished = await self._store.finish_task(
                task_id, TaskState.CANCELLED, cancelled_by=by, node=self._node
            )
            if finished is not None:
                await self._events.cancelled(finished, by)
