"""TaskRuntime: tasks claimed with leases, run by workers, reported to ``TaskEvents``.

Each test runs real ``TaskRuntime``\\ s on a real store (SQLite in ``tmp_path``; the tests
of several runtimes also on a real PostgreSQL), with small fake agents that work in steps
(one calls the calculator, then streams tokens with a short ``trio.sleep`` between them;
one waits at a gate the test opens; one raises ``AgentError``, one raises something else,
one ends without a reply) and a recording ``TaskEvents``. It checks the order the seed
gives (started, status, tool calls — run by the runtime — chunks with a last ``isFinal``
one, the message — stored before it is announced — then completed, failed or cancelled),
cancellation of queued and running tasks, the worker and queue limits; and, since issue
11, leases:
two runtimes (two nodes, each with its own store on one database, as two processes) run
each task once; a task whose runner died fails "interrupted", found by the other's
expiry loop and reported through ``events.failed``, while its queued tasks run on the
other; a runtime whose lease was taken away stops without reporting anything; a cancel
asked for on another node (through the store, no signals) is noticed at the next renewal.
Tasks that wait for a person (issue 12) are in ``test_driver``, on this harness.

Leases are short (``LEASES``: 1 s, renewed every 0.2 s), and the store answers from worker
threads, so the real clock is used (the autojump clock would jump to a ``fail_after``
deadline while a thread works). Nothing sleeps to wait for an event: the recorder wakes
waiters on every event, gates are ``trio.Event``\\ s, and ``settle`` waits until every
task is blocked *and* no store call is in flight — the point where a runtime that was
going to do something has done it (short of its next poll).
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

from tests.storage.backends import Backend, Database, postgres_database, sqlite_database
from voisnap.agents.base import (
    AgentError,
    AgentEvent,
    AgentRequest,
    CallTools,
    Final,
    Status,
    Token,
    ToolCall,
    ToolResult,
)
from voisnap.agents.builtin import BuiltinAgent
from voisnap.agents.driver import RequestTimeouts
from voisnap.agents.registry import AgentEntry, AgentRegistry
from voisnap.agents.runtime import INTERRUPTED, UNEXPECTED, Leases, RuntimeBusy, TaskRuntime
from voisnap.agents.tools import ToolSet
from voisnap.storage.base import (
    Message,
    Owner,
    Request,
    Session,
    Store,
    Task,
    TaskState,
    utc_now,
)

CEILING = 15
LEASES = Leases(length=1.0, renewal=0.2)
NOTICED = 3.0  # a lease's end or a cancel request is noticed within a few renewals
ADA = Owner("acme", "ada")
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
BOTH = pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)


# -- fake agents -----------------------------------------------------------------------------------


CALCULATION = ToolCall("call_1", "calculator", {"expression": "1+1"})


class StreamingAgent:
    """Step 1 calls the calculator; step 2 streams ``tokens`` tokens with a short
    sleep between them."""

    agent_id = "streamer"

    def __init__(self, tokens: int = 3) -> None:
        self.tokens = tokens
        self.requests: list[AgentRequest] = []

    @property
    def first_steps(self) -> list[AgentRequest]:
        """The request of each task's first step (a task run twice shows twice)."""
        return [request for request in self.requests if not request.transcript]

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        self.requests.append(request)
        yield Status("thinking")
        if not request.transcript:
            yield CallTools((CALCULATION,))
            return
        parts = [f"t{n} " for n in range(self.tokens)]
        for part in parts:
            yield Token(part)
            await trio.sleep(0.001)
        yield Final("".join(parts), tokens_used=self.tokens)


class GatedAgent:
    """Streams one token, then waits until the test opens its task's gate."""

    agent_id = "gated"

    def __init__(self) -> None:
        self.entered: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.release: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.exited: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.active = 0
        self.most_active = 0

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        yield Token("before ")
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            self.entered[request.task_id].set()
            await self.release[request.task_id].wait()
        finally:
            self.active -= 1
            self.exited[request.task_id].set()
        yield Token("after")
        yield Final("before after", tokens_used=2)


class FailingAgent:
    agent_id = "failing"

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        yield Token("partial ")
        raise AgentError("The model endpoint answered 503: overloaded")


class CrashingAgent:
    agent_id = "crashing"

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        raise RuntimeError("secret internals: password=hunter2")


class SilentAgent:
    agent_id = "silent"

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")


# -- the recording sink and the observed store -----------------------------------------------------


class Changes:
    """Wakes waiters on every event any recorder of a test records (nodes share one)."""

    def __init__(self) -> None:
        self._changed = trio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self) -> None:
        await self._changed.wait()


TRANSCRIPT_EVENTS = {"tool_called", "tool_result", "continuing", "system_prompt"}


class RecordingEvents:
    """Every ``TaskEvents`` call, in order; ``message`` also reads the store."""

    def __init__(self, store: Store, changes: Changes) -> None:
        self.store = store
        self.log: list[tuple[Any, ...]] = []
        self._changes = changes
        self.started_gate: trio.Event | None = None
        self.in_started = trio.Event()

    def _record(self, *entry: Any) -> None:
        self.log.append(entry)
        self._changes.notify()

    def of(self, task_id: str) -> list[tuple[Any, ...]]:
        """The chat hub's events of a task (``all_of``: the transcript's too)."""
        return [entry for entry in self.all_of(task_id) if entry[0] not in TRANSCRIPT_EVENTS]

    def all_of(self, task_id: str) -> list[tuple[Any, ...]]:
        return [entry for entry in self.log if entry[1] == task_id]

    def kinds(self, task_id: str) -> list[str]:
        """The kinds of the chat hub's events (the transcript's own are ``all_kinds``)."""
        return [entry[0] for entry in self.of(task_id)]

    def all_kinds(self, task_id: str) -> list[str]:
        return [entry[0] for entry in self.all_of(task_id)]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changes.wait()

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

    async def tool_called(self, task: Task, call: Any) -> None:
        self._record("tool_called", task.task_id, call)

    async def tool_result(self, task: Task, result: Any) -> None:
        self._record("tool_result", task.task_id, result)

    async def continuing(self, task: Task, continuation: int, most: int) -> None:
        self._record("continuing", task.task_id, continuation, most)

    async def system_prompt(self, task: Task, prompt: str) -> None:
        self._record("system_prompt", task.task_id, prompt)

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

    async def waiting(self, task: Task, request: Request) -> None:
        self._record("waiting", task.task_id, request, task)

    async def request_resolved(self, request: Request) -> None:
        self._record("request_resolved", request.task_id, request)


class ObservedStore:
    """A real store, counting calls in flight. A method may be held at a gate before it
    runs (``gates``), or after it returned something (``gates_after``: the claim is made
    in the database, its result not yet back in the runtime)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.in_flight = 0
        self._idle = trio.Event()
        self.gates: dict[str, trio.Event] = {}
        self.gates_after: dict[str, trio.Event] = {}
        self.reached: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.reached_after: defaultdict[str, trio.Event] = defaultdict(trio.Event)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        async def observed(*args: Any, **kwargs: Any) -> Any:
            self.reached[name].set()
            if name in self.gates:
                await self.gates[name].wait()
            self.in_flight += 1
            try:
                result = await method(*args, **kwargs)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()
                    self._idle = trio.Event()
            if name in self.gates_after and result is not None:
                self.reached_after[name].set()
                await self.gates_after.pop(name).wait()
            return result

        return observed

    async def wait_idle(self) -> None:
        if self.in_flight:
            await self._idle.wait()


async def settle(*stores: ObservedStore) -> None:
    """Until every task is blocked and no store call is running in a thread."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        busy = [store for store in stores if store.in_flight]
        if not busy:
            return
        await busy[0].wait_idle()


# -- harness ---------------------------------------------------------------------------------------


class Node:
    """One process's view: its own store on the shared database, observed, and its events."""

    def __init__(self, name: str, store: Store, changes: Changes) -> None:
        self.name = name
        self.inner = store
        self.store = ObservedStore(store)
        self.events = RecordingEvents(store, changes)


class Harness:
    def __init__(self, backend: Backend, store: Store) -> None:
        self.backend = backend
        self.db = store
        self.changes = Changes()
        self.node_a = Node("node-a", store, self.changes)
        self.store = self.node_a.store
        self.events = self.node_a.events
        self.streamer = StreamingAgent()
        self.gated = GatedAgent()
        self.sophon = BuiltinAgent("sophon", token_delay=0)
        agents = [self.streamer, self.gated, self.sophon, FailingAgent(), CrashingAgent(),
                  SilentAgent()]
        self.entries: dict[str, AgentEntry] = {a.agent_id: AgentEntry(a) for a in agents}
        self.registry = AgentRegistry(self.entries)
        self._numbers = iter(range(1, 1000))

    async def node(self, name: str) -> Node:
        """Another process on the same database: its own store (connection or pool)."""
        return Node(name, await self.backend.open(), self.changes)

    def add_agent(self, agent: Any, tools: ToolSet | None = None) -> None:
        self.entries[agent.agent_id] = AgentEntry(agent, tools=tools or ToolSet())

    def runtime(self, *, workers: int = 2, queue_limit: int = 10, node: Node | None = None,
                timeouts: RequestTimeouts | None = None, max_steps: int = 8,
                registry: AgentRegistry | None = None) -> TaskRuntime:
        node = node or self.node_a
        return TaskRuntime(node.store, registry or self.registry,  # type: ignore[arg-type]
                           node.events, workers=workers, queue_limit=queue_limit,
                           node=node.name, leases=LEASES, timeouts=timeouts,
                           max_steps=max_steps)

    async def accept(self, agent_id: str, content: str = "hello", *,
                     is_streaming: bool = True) -> Task:
        """A user message and its queued task, stored as the chat hub stores them."""
        n = next(self._numbers)
        when = T0 + datetime.timedelta(seconds=n)
        message = Message(f"msg_{n}", "sess_1", ADA, "user", content, when)
        task = Task(f"task_{n}", "sess_1", ADA, agent_id, message.message_id, TaskState.QUEUED,
                    when, is_streaming=is_streaming)
        session = Session("sess_1", ADA, "title", when, when)
        accepted = await self.db.accept_message(session=session, message=message, task=task)
        return accepted.task

    async def submit(self, runtime: TaskRuntime, agent_id: str, content: str = "hello",
                     *, is_streaming: bool = True) -> Task:
        task = await self.accept(agent_id, content, is_streaming=is_streaming)
        await runtime.submit(task)
        return task

    async def stored(self, task: Task) -> Task:
        found = await self.db.get_task(ADA, task.task_id)
        assert found is not None
        return found


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """SQLite unless a test asks for both (``BOTH``)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return sqlite_database(tmp_path)
    return postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
async def harness(database: Database) -> AsyncIterator[Harness]:
    backend = Backend(database)
    try:
        yield Harness(backend, await backend.open())
    finally:
        await backend.aclose()


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
        "started", "status", "status", "tool_started", "tool_completed",
        "status", "chunk", "chunk", "chunk", "chunk", "message", "completed",
    ]
    log = events.of(task.task_id)
    started, thinking, calling, tool_started, tool_completed, thinking_again = log[:6]
    assert started[2].state is TaskState.RUNNING and started[2].started_at is not None
    assert started[2].lease_owner == "node-a"
    assert thinking[2:] == ("thinking", None)
    assert calling[2:] == ("calling_tool", "calculator")
    assert tool_started[2:] == ("calculator", {"expression": "1+1"})
    assert tool_completed[2] == "calculator" and tool_completed[4] is True
    assert isinstance(tool_completed[3], int) and tool_completed[3] >= 0
    assert thinking_again[2:] == ("thinking", None)
    assert [entry[2:] for entry in log[6:10]] == [
        ("t0 ", False), ("t1 ", False), ("t2 ", False), ("", True)
    ]

    _, _, reply, stored_reply, task_at_message = log[10]
    assert reply.role == "assistant" and reply.content == "t0 t1 t2 "
    assert reply.task_id == task.task_id and reply.session_id == "sess_1"
    assert reply.tool_calls == (
        {"toolName": "calculator", "arguments": {"expression": "1+1"}, "ok": True},
    )
    assert stored_reply == reply  # stored before it was announced
    assert task_at_message.state is TaskState.COMPLETED

    done = log[11][2]
    assert done.state is TaskState.COMPLETED
    assert done.tokens_used == 3 and done.duration_ms is not None and done.duration_ms >= 0
    assert done.result_message_id == reply.message_id
    assert stored == done

    # Step 1 saw the message; step 2 also the call and its result (run by the runtime).
    first, second = harness.streamer.requests
    assert first.content == "what is 1+1" and first.task_id == task.task_id
    assert first.transcript == () and first.tools == ToolSet().specs()
    assert second.content == "what is 1+1"
    assert second.transcript == (CALCULATION, ToolResult("call_1", "calculator", True, 2))


async def test_runtime_gives_the_agent_the_sessions_history(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            first = await harness.submit(runtime, "streamer", "first question")
            await events.wait_for("completed", first.task_id)
            second = await harness.submit(runtime, "streamer", "second question")
            await events.wait_for("completed", second.task_id)
    history = harness.streamer.first_steps[1].history
    assert [(m.role, m.content) for m in history] == [
        ("user", "first question"), ("assistant", "t0 t1 t2 ")
    ]
    assert harness.streamer.first_steps[1].content == "second question"


async def test_runtime_not_streaming_sends_no_chunks(harness: Harness) -> None:
    events = harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "streamer", is_streaming=False)
            await events.wait_for("completed", task.task_id)
    assert events.kinds(task.task_id) == [
        "started", "status", "status", "tool_started", "tool_completed", "status", "message",
        "completed",
    ]
    assert events.of(task.task_id)[6][2].content == "t0 t1 t2 "


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
            await settle(harness.store)
            await runtime.cancel(task, "late")  # finished by now: nothing happens
            await settle(harness.store)
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
            await settle(harness.store)
        stored = await harness.stored(task)
    assert events.log == before
    assert stored.state is TaskState.COMPLETED and stored.cancelled_by is None


@pytest.mark.parametrize("window", ["claim_task", "started-event"])
async def test_runtime_cancel_while_a_worker_picks_the_task_up(
    harness: Harness, window: str
) -> None:
    """A worker is picking the task up: the claim is made in the database but its result
    is not back in the runtime yet (``claim_task``), or the ``started`` event is being
    sent. A cancel then finds the task running but not (or just) registered here; it is
    still honoured, before the agent's reply: the task ends cancelled, never completed."""
    events, store = harness.events, harness.store
    gate = trio.Event()
    if window == "claim_task":
        store.gates_after["claim_task"] = gate
        reached = store.reached_after["claim_task"]
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


async def test_runtime_a_cancel_requested_while_queued_never_runs(harness: Harness) -> None:
    """Another process cancelled a queued task through the store: no worker takes it."""
    events = harness.events
    with trio.fail_after(CEILING):
        cancelled = await harness.accept("streamer", "cancelled while queued")
        assert await harness.db.request_cancel(cancelled.task_id, "ada") is not None
        after = await harness.accept("streamer", "after it")
        async with running(harness.runtime(workers=1)):
            await events.wait_for("completed", after.task_id)
            await settle(harness.store)
        stored = await harness.stored(cancelled)
    assert events.kinds(cancelled.task_id) == []
    assert [r.content for r in harness.streamer.first_steps] == ["after it"]
    assert (stored.state, stored.cancelled_by, stored.started_at) == (
        TaskState.CANCELLED, "ada", None
    )


# -- limits ----------------------------------------------------------------------------------------


async def test_runtime_one_worker_runs_one_task_at_a_time(harness: Harness) -> None:
    events, gated = harness.events, harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime:
            first = await harness.submit(runtime, "gated")
            second = await harness.submit(runtime, "gated")
            await gated.entered[first.task_id].wait()
            await settle(harness.store)
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
            await settle(harness.store)
            assert not gated.entered[tasks[2].task_id].is_set()
            assert gated.most_active == 2
            for task in tasks:
                gated.release[task.task_id].set()
            for task in tasks:
                await harness.events.wait_for("completed", task.task_id)
    assert gated.most_active == 2


async def test_runtime_queue_limit_refuses_with_runtime_busy(harness: Harness) -> None:
    """``check_capacity`` counts the tasks queued in the store (by any process), before
    anything is stored; a worker taking one makes room again."""
    gated, events = harness.gated, harness.events
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1, queue_limit=2)) as runtime:
            running_task = await harness.submit(runtime, "gated")
            await gated.entered[running_task.task_id].wait()  # off the queue now
            first = await harness.submit(runtime, "gated")
            await runtime.check_capacity()  # one waits
            second = await harness.submit(runtime, "gated")
            with pytest.raises(RuntimeBusy) as caught:
                await runtime.check_capacity()  # two wait
            assert str(caught.value) == "Too many tasks are waiting; try again shortly."

            gated.release[running_task.task_id].set()
            await gated.entered[first.task_id].wait()
            await runtime.check_capacity()  # the worker took one: room again
            gated.release[first.task_id].set()
            gated.release[second.task_id].set()
            await events.wait_for("completed", second.task_id)


# -- leases ----------------------------------------------------------------------------------------


async def test_runtime_fails_a_task_whose_lease_lapsed_before_it_started(
    harness: Harness,
) -> None:
    """A task was running in a process that died (here: this node's earlier life, before
    a restart): its lease lapsed long ago, and the expiry loop fails it as interrupted,
    through ``events.failed``. The tasks still queued from before run, oldest first."""
    events = harness.events
    with trio.fail_after(CEILING):
        interrupted = await harness.accept("streamer", "was running")
        claimed = await harness.db.claim_task("node-a", T0, T0 + datetime.timedelta(seconds=1))
        assert claimed is not None and claimed.task_id == interrupted.task_id
        older = await harness.accept("streamer", "older")
        newer = await harness.accept("streamer", "newer")
        async with running(harness.runtime(workers=1)):
            failed = await events.wait_for("failed", interrupted.task_id)
            await events.wait_for("completed", older.task_id)
            await events.wait_for("completed", newer.task_id)
            await settle(harness.store)
        stored = await harness.stored(interrupted)
    assert INTERRUPTED == "The task was interrupted: the process running it stopped."
    assert events.kinds(interrupted.task_id) == ["failed"]
    assert failed[2] == INTERRUPTED and failed[3] == stored
    assert (stored.state, stored.error) == (TaskState.FAILED, INTERRUPTED)
    assert [e[1] for e in events.log if e[0] == "started"] == [older.task_id, newer.task_id]
    assert [r.content for r in harness.streamer.first_steps] == ["older", "newer"]


async def test_runtime_a_dead_runtimes_tasks_go_on_elsewhere(harness: Harness) -> None:
    """Node A runs a task and has two more queued when it dies. Node B (its own store on
    the same database) runs the queued ones, and, once A's lease lapsed, fails A's task
    as interrupted and reports it through its own ``events.failed``."""
    gated = harness.gated
    a, b = harness.node_a, await harness.node("node-b")
    with trio.fail_after(CEILING):
        async with running(harness.runtime(workers=1)) as runtime_a:
            was_running = await harness.submit(runtime_a, "gated")
            await gated.entered[was_running.task_id].wait()
            left = [await harness.submit(runtime_a, "streamer", f"left {n}") for n in range(2)]
            await settle(a.store)
        # A is gone: its worker stopped mid-task, nothing was written for it.
        assert (await harness.stored(was_running)).state is TaskState.RUNNING
        async with running(harness.runtime(workers=2, node=b)):
            for task in left:
                await b.events.wait_for("completed", task.task_id)
            failed = await b.events.wait_for("failed", was_running.task_id)
        stored = await harness.stored(was_running)
    assert a.events.kinds(was_running.task_id) == ["started", "status", "chunk"]
    for task in left:
        assert a.events.kinds(task.task_id) == []
        assert (await harness.stored(task)).lease_owner == "node-b"
    assert b.events.kinds(was_running.task_id) == ["failed"]
    assert failed[2] == INTERRUPTED
    assert (stored.state, stored.error, stored.lease_owner) == (
        TaskState.FAILED, INTERRUPTED, "node-a"
    )


@BOTH
async def test_runtime_two_nodes_run_each_task_once(harness: Harness) -> None:
    """Two runtimes with three workers each, each with its own store on one database, and
    many queued tasks: every task starts once, runs its agent once and completes once."""
    a, b = harness.node_a, await harness.node("node-b")
    tasks = [await harness.accept("streamer", f"question {n}") for n in range(30)]
    try:
        await _two_nodes(harness, a, b, tasks)
    except trio.TooSlowError:
        for task in tasks:
            kinds = [*a.events.kinds(task.task_id), "|", *b.events.kinds(task.task_id)]
            if "completed" not in kinds:
                stored = await harness.stored(task)
                print("STUCK", task.task_id, kinds, stored.state, stored.lease_owner)
        raise


async def _two_nodes(harness, a, b, tasks):
    # A bound, not a pace: 30 tasks take some 2 s alone, far longer on a loaded machine.
    with trio.fail_after(2 * CEILING):
        async with running(harness.runtime(workers=3)), \
                running(harness.runtime(workers=3, node=b)):
            ends = {"completed", "failed", "cancelled"}
            for task in tasks:  # until each ended, however: a failure fails below, at once
                await a.events.wait_until(
                    lambda task=task: bool(ends & {*a.events.kinds(task.task_id),
                                                   *b.events.kinds(task.task_id)})
                )
            await settle(a.store, b.store)


pass


@pytest.mark.parametrize("when", ["while-running", "as-it-finishes"])
async def test_runtime_a_lost_lease_stops_the_task_without_a_report(
    harness: Harness, when: str
) -> None:
    """Someone else decided the task's end (here: its lease was expired in the store, as
    another node would after a long pause of this one): the runtime stops it at its next
    renewal, or finds out when it tries to complete it, and reports nothing — no
    message, completed, failed or cancelled — and overwrites nothing."""
    events, gated = harness.events, harness.gated
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime:
            task = await harness.submit(runtime, "gated")
            await gated.entered[task.task_id].wait()
            far = utc_now() + datetime.timedelta(hours=1)
            [taken] = await harness.db.expire_leases(far, "taken away")
            if when == "as-it-finishes":
                gated.release[task.task_id].set()
            with trio.fail_after(NOTICED):
                await gated.exited[task.task_id].wait()
            await settle(harness.store)
        stored = await harness.stored(task)
        messages = await harness.db.list_messages(ADA, "sess_1", limit=10, before=None)
    kinds = events.kinds(task.task_id)
    assert kinds[:3] == ["started", "status", "chunk"]
    assert not {"message", "completed", "failed", "cancelled"} & set(kinds), kinds
    assert stored == taken
    assert (stored.state, stored.error) == (TaskState.FAILED, "taken away")
    assert [m.role for m in messages] == ["user"]  # no reply was stored


@BOTH
async def test_runtime_cancel_asked_on_another_node_is_noticed_at_the_next_renewal(
    harness: Harness,
) -> None:
    """Node B is asked to cancel a task that runs on node A. With no signals between them,
    B can only mark it in the store; A sees the mark when it renews the lease and cancels
    the task, reporting it (by whom) through its own events."""
    gated = harness.gated
    a, b = harness.node_a, await harness.node("node-b")
    with trio.fail_after(CEILING):
        async with running(harness.runtime()) as runtime_a:
            task = await harness.submit(runtime_a, "gated")
            await gated.entered[task.task_id].wait()
            async with running(harness.runtime(node=b)) as runtime_b:
                await runtime_b.cancel(task, "bob")
                with trio.fail_after(NOTICED):
                    cancelled = await a.events.wait_for("cancelled", task.task_id)
                await settle(a.store, b.store)
        stored = await harness.stored(task)
    assert a.events.kinds(task.task_id) == ["started", "status", "chunk", "cancelled"]
    assert b.events.kinds(task.task_id) == []
    assert cancelled[2] == "bob"
    assert (stored.state, stored.cancelled_by, stored.lease_owner) == (
        TaskState.CANCELLED, "bob", "node-a"
    )
    assert gated.active == 0 and not gated.release[task.task_id].is_set()


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
                          workers=1, queue_limit=10, node="node-a", leases=LEASES)
    with trio.fail_after(CEILING):
        async with running(runtime):
            crashed = await harness.submit(runtime, "crashing")
            after = await harness.submit(runtime, "streamer")
            await events.wait_for("completed", after.task_id)
    assert "failed" not in events.kinds(crashed.task_id)
