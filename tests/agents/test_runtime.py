"""TaskRuntime: queued tasks run on a fixed number of workers, report to ``TaskEvents``.

Each test runs a real ``TaskRuntime`` on a real ``SqliteStore`` in ``tmp_path``,
with small fake agents (one streams tokens with a short ``trio.sleep`` between
them, one waits at a gate the test opens, one raises ``AgentError``, one raises
something else, one waits for an approval) and a recording ``TaskEvents``. It
checks the order the seed gives (started, status, tool calls, chunks with a
last ``isFinal`` one, the message — stored before it is announced — then
completed, failed or cancelled), cancellation of queued and running tasks, the
worker and queue limits, recovery after a restart, and agents waiting on a person.

The store answers from worker threads, so the real clock is used (the autojump
clock would jump to a ``fail_after`` deadline while a thread works). Nothing
sleeps to wait for an event: the recorder wakes waiters on every event, gates
are ``trio.Event``s, and ``ObservedStore.settle`` waits until every task is
blocked *and* no store call is in flight — the point where a runtime that was
going to do something has done it.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from voisnap.agents.base import (
    AgentContext,
    AgentError,
    AgentEvent,
    AgentRequest,
    Decision,
    Final,
    Status,
    Token,
    ToolCompleted,
    ToolStarted,
)
from voisnap.agents.registry import AgentEntry, AgentRegistry
from voisnap.agents.runtime import INTERRUPTED, UNEXPECTED, RuntimeBusy, TaskRuntime
from voisnap.storage.base import Message, Owner, Session, Task, TaskState
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
ADA = Owner("acme", "ada")
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


# -- fake agents -----------------------------------------------------------------------------------


class StreamingAgent:
    """A tool call, then ``tokens`` tokens with a short sleep between them."""

    agent_id = "streamer"

    def __init__(self, tokens: int = 3) -> None:
        self.tokens = tokens
        self.requests: list[AgentRequest] = []

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        self.requests.append(request)
        yield Status("thinking")
        yield ToolStarted("calculator", {"expression": "1+1"})
        yield ToolCompleted("calculator", True, 5, 2)
        parts = [f"t{n} " for n in range(self.tokens)]
        for part in parts:
            yield Token(part)
            await trio.sleep(0.001)
        yield Final("".join(parts), tokens_used=self.tokens,
                    tool_calls=({"toolName": "calculator", "ok": True},))


class GatedAgent:
    """Streams one token, then waits until the test opens its task's gate."""

    agent_id = "gated"

    def __init__(self) -> None:
        self.entered: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.release: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.active = 0
        self.most_active = 0

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        yield Token("before ")
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            self.entered[request.task_id].set()
            await self.release[request.task_id].wait()
        finally:
            self.active -= 1
        yield Token("after")
        yield Final("before after", tokens_used=2)


class FailingAgent:
    agent_id = "failing"

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        yield Token("partial ")
        raise AgentError("The model endpoint answered 503: overloaded")


class CrashingAgent:
    agent_id = "crashing"

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        raise RuntimeError("secret internals: password=hunter2")


class SilentAgent:
    agent_id = "silent"

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")


class AskingAgent:
    """Asks for an approval (or the user), then replies with the answer."""

    agent_id = "asking"

    def __init__(self) -> None:
        self.asking = trio.Event()
        self.finished_waiting = False

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("waiting_approval")
        self.asking.set()
        if request.content == "ask":
            answer = await context.ask_user("Which Ana?")
        else:
            decision = await context.request_approval("send_email", {"to": "ana@example.com"})
            answer = f"{decision.outcome}:{decision.detail}"
        self.finished_waiting = True
        yield Token(answer)
        yield Final(answer, tokens_used=1)


# -- the recording sink and the observed store -----------------------------------------------------


class RecordingEvents:
    """Every ``TaskEvents`` call, in order; ``message`` also reads the store."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.log: list[tuple[Any, ...]] = []
        self._changed = trio.Event()
        self.started_gate: trio.Event | None = None
        self.in_started = trio.Event()

    def _record(self, *entry: Any) -> None:
        self.log.append(entry)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, task_id: str) -> list[tuple[Any, ...]]:
        return [entry for entry in self.log if entry[1] == task_id]

    def kinds(self, task_id: str) -> list[str]:
        return [entry[0] for entry in self.of(task_id)]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def wait_for(self, kind: str, task_id: str) -> tuple[Any, ...]:
        await self.wait_until(lambda: kind in self.kinds(task_id))
        return next(e for e in self.of(task_id) if e[0] == kind)

    async def started(self, task: Task) -> None:
        self._record("started", task.task_id, task)
        if self.started_gate is not None:
            self.in_started.set()
            await self.started_gate.wait()

    async def status(self, task: Task, status: str, detail: str | None) -> None:
        self._record("status", task.task_id, status, detail)

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None:
        self._record("chunk", task.task_id, delta, is_final)

    async def tool_started(self, task: Task, tool_name: str, arguments: dict[str, Any]) -> None:
        self._record("tool_started", task.task_id, tool_name, arguments)

    async def tool_completed(self, task: Task, tool_name: str, duration_ms: int, ok: bool) -> None:
        self._record("tool_completed", task.task_id, tool_name, duration_ms, ok)

    async def message(self, task: Task, message: Message) -> None:
        # Seed 000: stored before it is announced, so REST can always catch up.
        stored = await self.store.get_message(task.owner, message.message_id)
        stored_task = await self.store.get_task(task.owner, task.task_id)
        self._record("message", task.task_id, message, stored, stored_task)

    async def completed(self, task: Task) -> None:
        self._record("completed", task.task_id, task)

    async def failed(self, task: Task, error: str) -> None:
        self._record("failed", task.task_id, error, task)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        self._record("cancelled", task.task_id, cancelled_by, task)


class ObservedStore:
    """The real store, counting calls in flight; a method may be held at a gate."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner
        self.in_flight = 0
        self._idle = trio.Event()
        self.gates: dict[str, trio.Event] = {}
        self.reached: defaultdict[str, trio.Event] = defaultdict(trio.Event)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        async def observed(*args: Any, **kwargs: Any) -> Any:
            self.reached[name].set()
            if name in self.gates:
                await self.gates[name].wait()
            self.in_flight += 1
            try:
                return await method(*args, **kwargs)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()
                    self._idle = trio.Event()

        return observed

    async def settle(self) -> None:
        """Until every task is blocked and no store call is running in a thread."""
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if self.in_flight == 0:
                return
            await self._idle.wait()


# -- harness ---------------------------------------------------------------------------------------


class Harness:
    def __init__(self, sqlite: SqliteStore) -> None:
        self.sqlite = sqlite
        self.store = ObservedStore(sqlite)
        self.events = RecordingEvents(sqlite)
        self.streamer = StreamingAgent()
        self.gated = GatedAgent()
        self.asking = AskingAgent()
        agents = [self.streamer, self.gated, self.asking, FailingAgent(), CrashingAgent(),
                  SilentAgent()]
        self.registry = AgentRegistry({a.agent_id: AgentEntry(a) for a in agents})
        self._numbers = iter(range(1, 1000))

    def runtime(self, *, workers: int = 2, queue_limit: int = 10) -> TaskRuntime:
        return TaskRuntime(self.store, self.registry, self.events,  # type: ignore[arg-type]
                           workers=workers, queue_limit=queue_limit)

    async def accept(self, agent_id: str, content: str = "hello", *,
                     is_streaming: bool = True) -> Task:
        """A user message and its queued task, stored as the chat hub stores them."""
        n = next(self._numbers)
        when = T0 + datetime.timedelta(seconds=n)
        message = Message(f"msg_{n}", "sess_1", ADA, "user", content, when)
        task = Task(f"task_{n}", "sess_1", ADA, agent_id, message.message_id, TaskState.QUEUED,
                    when, is_streaming=is_streaming)
        session = Session("sess_1", ADA, "title", when, when)
        accepted = await self.sqlite.accept_message(session=session, message=message, task=task)
        return accepted.task

    async def submit(self, runtime: TaskRuntime, agent_id: str, content: str = "hello",
                     *, is_streaming: bool = True) -> Task:
        task = await self.accept(agent_id, content, is_streaming=is_streaming)
        runtime.submit(task)
        return task

    async def stored(self, task: Task) -> Task:
        found = await self.sqlite.get_task(ADA, task.task_id)
        assert found is not None
        return found


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = SqliteStore(tmp_path / "voisnap.db")
    with trio.fail_after(CEILING):
        await store.open()
    try:
        yield Harness(store)
    finally:
        with trio.fail_after(CEILING):
            await store.aclose()


@asynccontextmanager
async def running(runtime: TaskRuntime) -> AsyncIterator[TaskRuntime]:
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        yield runtime
        nursery.cancel_scope.cancel()


# -- a completed task ------------------------------------------------------------------------------


async def test_runtime_completed_task_reports_events_in_order(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "streamer", "what is 1+1")
            await events.wait_for("completed", task.task_id)
        stored = await harness.stored(task)

    assert events.kinds(task.task_id) == [
        "started", "status", "tool_started", "tool_completed",
        "chunk", "chunk", "chunk", "chunk", "message", "completed",
    ]
    log = events.of(task.task_id)
    started, status, tool_started, tool_completed = log[:4]
    assert started[2].state is TaskState.RUNNING and started[2].started_at is not None
    assert status[2:] == ("thinking", None)
    assert tool_started[2:] == ("calculator", {"expression": "1+1"})
    assert tool_completed[2:] == ("calculator", 5, True)
    assert [entry[2:] for entry in log[4:8]] == [
        ("t0 ", False), ("t1 ", False), ("t2 ", False), ("", True)
    ]

    _, _, reply, stored_reply, task_at_message = log[8]
    assert reply.role == "assistant" and reply.content == "t0 t1 t2 "
    assert reply.task_id == task.task_id and reply.session_id == "sess_1"
    assert reply.tool_calls == ({"toolName": "calculator", "ok": True},)
    assert stored_reply == reply  # stored before it was announced
    assert task_at_message.state is TaskState.COMPLETED

    done = log[9][2]
    assert done.state is TaskState.COMPLETED
    assert done.tokens_used == 3 and done.duration_ms is not None and done.duration_ms >= 0
    assert done.result_message_id == reply.message_id
    assert stored == done

    [request] = harness.streamer.requests
    assert request.content == "what is 1+1" and request.task_id == task.task_id


async def test_runtime_gives_the_agent_the_sessions_history(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            first = await harness.submit(runtime, "streamer", "first question")
            await events.wait_for("completed", first.task_id)
            second = await harness.submit(runtime, "streamer", "second question")
            await events.wait_for("completed", second.task_id)
    history = harness.streamer.requests[1].history
    assert [(m.role, m.content) for m in history] == [
        ("user", "first question"), ("assistant", "t0 t1 t2 ")
    ]
    assert harness.streamer.requests[1].content == "second question"


async def test_runtime_not_streaming_sends_no_chunks(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "streamer", is_streaming=False)
            await events.wait_for("completed", task.task_id)
    assert events.kinds(task.task_id) == [
        "started", "status", "tool_started", "tool_completed", "message", "completed"
    ]
    assert events.of(task.task_id)[4][2].content == "t0 t1 t2 "


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent_id", "error"),
    [
        ("failing", "The model endpoint answered 503: overloaded"),
        ("crashing", UNEXPECTED),
        ("silent", "The agent ended without a reply."),
        ("nobody", "Agent 'nobody' does not exist or is not active."),
    ],
)
async def test_runtime_failed_task_reports_a_safe_error(
    harness: Harness, agent_id: str, error: str
) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, agent_id)
            failed = await events.wait_for("failed", task.task_id)
        stored = await harness.stored(task)
    assert UNEXPECTED == "The agent failed unexpectedly."
    kinds = events.kinds(task.task_id)
    assert kinds[0] == "started" and kinds[-1] == "failed"
    assert "message" not in kinds and "completed" not in kinds
    assert ("chunk", task.task_id, "", True) not in events.log
    assert failed[2] == error
    assert failed[3] == stored
    assert (stored.state, stored.error) == (TaskState.FAILED, error)
    assert stored.finished_at is not None and stored.result_message_id is None


# -- cancellation ----------------------------------------------------------------------------------


async def test_runtime_cancel_a_queued_task(harness: Harness) -> None:
    events, gated = harness.events, harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            busy = await harness.submit(runtime, "gated")
            await gated.entered[busy.task_id].wait()
            waiting = await harness.submit(runtime, "gated")

            await runtime.cancel(waiting, "ada")
            assert events.kinds(waiting.task_id) == ["cancelled"]
            stored = await harness.stored(waiting)
            assert (stored.state, stored.cancelled_by) == (TaskState.CANCELLED, "ada")
            assert stored.started_at is None

            gated.release[busy.task_id].set()
            await events.wait_for("completed", busy.task_id)
            # One worker, first in first out: had the cancelled task stayed queued,
            # it would run before this one.
            after = await harness.submit(runtime, "streamer")
            await events.wait_for("completed", after.task_id)
    assert events.kinds(waiting.task_id) == ["cancelled"]
    assert events.of(waiting.task_id)[0][3] == stored
    assert not gated.entered[waiting.task_id].is_set()
    assert (await harness.stored(waiting)).state is TaskState.CANCELLED


async def test_runtime_cancel_a_running_task(harness: Harness) -> None:
    events, gated = harness.events, harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "gated")
            await gated.entered[task.task_id].wait()
            await runtime.cancel(task, "bob")
            await runtime.cancel(task, "someone else")
            await events.wait_for("cancelled", task.task_id)
            await harness.store.settle()
            await runtime.cancel(task, "late")  # finished by now: nothing happens
            await harness.store.settle()
        stored = await harness.stored(task)
    assert events.kinds(task.task_id) == ["started", "status", "chunk", "cancelled"]
    assert events.of(task.task_id)[2][2:] == ("before ", False)
    assert events.of(task.task_id)[3][2] == "bob"
    assert (stored.state, stored.cancelled_by) == (TaskState.CANCELLED, "bob")
    assert stored.finished_at is not None
    assert gated.active == 0  # the agent's own cleanup ran


async def test_runtime_cancel_a_finished_task_does_nothing(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "streamer")
            await events.wait_for("completed", task.task_id)
            before = list(events.log)
            await runtime.cancel(task, "ada")
            await harness.store.settle()
        stored = await harness.stored(task)
    assert events.log == before
    assert stored.state is TaskState.COMPLETED and stored.cancelled_by is None


@pytest.mark.parametrize("window", ["start_task", "started-event"])
async def test_runtime_cancel_while_a_worker_picks_the_task_up(
    harness: Harness, window: str
) -> None:
    """A worker has taken the task off the queue but not yet registered its cancel
    scope (``start_task`` in its thread, or the ``started`` event being sent):
    ``cancel`` finds the task neither queued nor running and does nothing."""
    events, store = harness.events, harness.store
    gate = trio.Event()
    if window == "start_task":
        store.gates["start_task"] = gate
        reached = store.reached["start_task"]
    else:
        events.started_gate = gate
        reached = events.in_started
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            task = await harness.submit(runtime, "streamer")
            await reached.wait()
            await runtime.cancel(task, "ada")
            gate.set()
            await events.wait_until(
                lambda: {"completed", "cancelled", "failed"} & set(events.kinds(task.task_id))
            )
        stored = await harness.stored(task)
    assert events.kinds(task.task_id)[-1] == "cancelled"
    assert "completed" not in events.kinds(task.task_id)
    assert (stored.state, stored.cancelled_by) == (TaskState.CANCELLED, "ada")


# -- limits ----------------------------------------------------------------------------------------


async def test_runtime_one_worker_runs_one_task_at_a_time(harness: Harness) -> None:
    events, gated = harness.events, harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            first = await harness.submit(runtime, "gated")
            second = await harness.submit(runtime, "gated")
            await gated.entered[first.task_id].wait()
            await harness.store.settle()
            assert events.kinds(second.task_id) == []
            assert (await harness.stored(second)).state is TaskState.QUEUED

            gated.release[first.task_id].set()
            await gated.entered[second.task_id].wait()
            assert "completed" in events.kinds(first.task_id)
            gated.release[second.task_id].set()
            await events.wait_for("completed", second.task_id)
    assert gated.most_active == 1
    order = [(e[0], e[1]) for e in events.log if e[0] in ("started", "completed")]
    assert order == [
        ("started", first.task_id), ("completed", first.task_id),
        ("started", second.task_id), ("completed", second.task_id),
    ]


async def test_runtime_two_workers_run_two_tasks_at_once(harness: Harness) -> None:
    gated = harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=2)) as runtime:
            tasks = [await harness.submit(runtime, "gated") for _ in range(3)]
            await gated.entered[tasks[0].task_id].wait()
            await gated.entered[tasks[1].task_id].wait()
            await harness.store.settle()
            assert not gated.entered[tasks[2].task_id].is_set()
            assert gated.most_active == 2
            for task in tasks:
                gated.release[task.task_id].set()
            for task in tasks:
                await harness.events.wait_for("completed", task.task_id)
    assert gated.most_active == 2


async def test_runtime_queue_limit_refuses_with_runtime_busy(harness: Harness) -> None:
    gated = harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1, queue_limit=2)) as runtime:
            running_task = await harness.submit(runtime, "gated")
            await gated.entered[running_task.task_id].wait()  # off the queue now
            await harness.submit(runtime, "gated")
            await harness.submit(runtime, "gated")
            extra = await harness.accept("gated")
            with pytest.raises(RuntimeBusy) as caught:
                runtime.submit(extra)
            with pytest.raises(RuntimeBusy):
                runtime.check_capacity()
            assert str(caught.value) == "Too many tasks are waiting; try again shortly."

            gated.release[running_task.task_id].set()
            await harness.events.wait_for("completed", running_task.task_id)
            await harness.store.settle()
            runtime.check_capacity()  # a worker took one: room again
            runtime.submit(extra)


# -- restarts --------------------------------------------------------------------------------------


async def test_runtime_recovers_tasks_from_before_a_restart(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        older = await harness.accept("streamer", "older")
        interrupted = await harness.accept("streamer", "was running")
        await harness.sqlite.start_task(interrupted.task_id, T0)
        newer = await harness.accept("streamer", "newer")
        async with running(harness.runtime(workers=1)):
            await events.wait_for("completed", older.task_id)
            await events.wait_for("completed", newer.task_id)
            await harness.store.settle()
        failed = await harness.stored(interrupted)
    assert [e[1] for e in events.log if e[0] == "started"] == [older.task_id, newer.task_id]
    assert events.kinds(interrupted.task_id) == []
    assert (failed.state, failed.error) == (TaskState.FAILED, INTERRUPTED)
    assert INTERRUPTED == "The task was interrupted by a server restart."
    assert [r.content for r in harness.streamer.requests] == ["older", "newer"]


# -- a person in the loop --------------------------------------------------------------------------


async def test_runtime_agent_waits_for_an_approval(harness: Harness) -> None:
    events, asking = harness.events, harness.asking
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "asking", "send it")
            await asking.asking.wait()
            [question] = runtime.questions.pending()
            assert question.startswith("approval_")
            await harness.store.settle()
            assert not asking.finished_waiting
            assert events.kinds(task.task_id) == ["started", "status"]
            assert (await harness.stored(task)).state is TaskState.RUNNING

            decision = Decision(approved=True, outcome="edited", detail="to: ana@work")
            assert runtime.questions.answer(question, decision)
            assert not runtime.questions.answer(question, decision)  # answered once
            await events.wait_for("completed", task.task_id)
            assert runtime.questions.pending() == []
    assert events.of(task.task_id)[1][2:] == ("waiting_approval", None)
    message = events.of(task.task_id)[-2][2]
    assert message.content == "edited:to: ana@work"


async def test_runtime_agent_waits_for_the_users_answer(harness: Harness) -> None:
    events, asking = harness.events, harness.asking
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "asking", "ask")
            await asking.asking.wait()
            [question] = runtime.questions.pending()
            assert question.startswith("info_")
            assert not runtime.questions.answer("info_999", "wrong id")
            assert runtime.questions.answer(question, "Ana Lima")
            await events.wait_for("completed", task.task_id)
    assert events.of(task.task_id)[-2][2].content == "Ana Lima"


async def test_runtime_cancel_ends_the_wait_for_an_approval(harness: Harness) -> None:
    events, asking = harness.events, harness.asking
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "asking", "send it")
            await asking.asking.wait()
            [question] = runtime.questions.pending()
            await runtime.cancel(task, "ada")
            await events.wait_for("cancelled", task.task_id)
            assert runtime.questions.pending() == []
            assert not runtime.questions.answer(question, Decision(True, "approved"))
        stored = await harness.stored(task)
    assert not asking.finished_waiting
    assert events.kinds(task.task_id) == ["started", "status", "cancelled"]
    assert (stored.state, stored.cancelled_by) == (TaskState.CANCELLED, "ada")


# -- error boundaries ------------------------------------------------------------------------------


async def test_runtime_worker_survives_a_task_whose_failure_cannot_be_recorded(
    harness: Harness,
) -> None:
    """Issue 8: a task that fails in a way nobody expected (here the store
    refuses to record its failure) costs that task, not the worker or the server."""
    events = harness.events
    broken = harness.store

    class RefusingStore:
        def __getattr__(self, name: str) -> Any:
            method = getattr(broken, name)
            if name != "finish_task":
                return method

            async def refuse(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("the store is down")

            return refuse

    runtime = TaskRuntime(RefusingStore(), harness.registry, events,  # type: ignore[arg-type]
                          workers=1, queue_limit=10)
    with trio.fail_after(CEILING):
        async with running(runtime):
            crashed = await harness.submit(runtime, "crashing")
            after = await harness.submit(runtime, "streamer")
            await events.wait_for("completed", after.task_id)
    assert "failed" not in events.kinds(crashed.task_id)
