"""A discussion run on a real ``TaskRuntime`` and a real SQLite store, reported to a recorder.

``Recorder`` is every sink the runtime reports to (``TaskEvents`` and
``DiscussionEvents``, as ``apps.faces.Faces`` is), logging each call in order;
waiters wake on every call, so nothing sleeps to wait for an event. Runs are
started the way ``POST /discussions`` starts them (``apps.discussion.runs.Runs``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from voisnap.agents.base import AgentEvent, AgentRequest, Final, Status, Token
from voisnap.agents.builtin import BuiltinAgent
from voisnap.agents.registry import AgentEntry, AgentRegistry
from voisnap.agents.runtime import Leases, TaskRuntime
from voisnap.apps.discussion.runs import RunOrder, Runs
from voisnap.apps.discussion.views import RunView
from voisnap.storage.base import Owner
from voisnap.storage.sqlite import SqliteStore

CEILING = 15
ADA = Owner("acme", "ada")
LEASES = Leases(length=2.0, renewal=0.2)


class Recorder:
    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self._changed = trio.Event()

    def _record(self, *entry: Any) -> None:
        self.log.append(entry)
        self._changed.set()
        self._changed = trio.Event()

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.log]

    async def wait_for(self, condition: Callable[[], Any]) -> Any:
        while not (found := condition()):
            await self._changed.wait()
        return found

    async def wait_kind(self, kind: str, *fields: Any) -> tuple[Any, ...]:
        def found() -> tuple[Any, ...] | None:
            return next((e for e in self.log if e[0] == kind and e[1:1 + len(fields)] == fields),
                        None)

        return await self.wait_for(found)

    # TaskEvents (what the chat and tasks hubs show)
    async def queued(self, task: Any) -> None:
        self._record("queued", task.task_id)

    async def session_updated(self, session: Any) -> None:
        self._record("session_updated", session.session_id)

    async def started(self, task: Any) -> None:
        self._record("started", task.task_id)

    async def status(self, task: Any, status: str, detail: str | None) -> None:
        self._record("status", task.task_id, status)

    async def chunk(self, task: Any, delta: str, is_final: bool) -> None:
        self._record("chunk", task.task_id, delta)

    async def message(self, task: Any, message: Any) -> None:
        self._record("message", task.task_id, message)

    async def completed(self, task: Any) -> None:
        self._record("completed", task.task_id, task)

    async def failed(self, task: Any, error: str) -> None:
        self._record("failed", task.task_id, error)

    async def cancelled(self, task: Any, cancelled_by: str) -> None:
        self._record("cancelled", task.task_id, cancelled_by)

    # DiscussionEvents (what the discussion hub shows)
    async def discussion_started(self, run: Any) -> None:
        self._record("discussion_started", run.run_id)

    async def round_started(self, run: Any, round_number: int) -> None:
        self._record("round_started", run.run_id, round_number)

    async def turn_started(self, run: Any, panelist: Any, round_number: int) -> None:
        self._record("turn_started", run.run_id, panelist.panelist_id, round_number)

    async def turn_completed(self, run: Any, turn: Any) -> None:
        self._record("turn_completed", run.run_id, turn.panelist_id, turn)

    async def judge_started(self, run: Any) -> None:
        self._record("judge_started", run.run_id)

    async def verdict(self, run: Any, verdict: dict[str, Any]) -> None:
        self._record("verdict", run.run_id, verdict)

    async def discussion_completed(self, run: Any, verdict_hash: str, duration_ms: int) -> None:
        self._record("discussion_completed", run.run_id, verdict_hash, duration_ms)


class ScriptedAgent:
    """Answers every step with ``text`` (one token per word), or with what ``answer``
    makes of the request; waits at ``gate`` (if any) after its first token."""

    def __init__(self, agent_id: str, text: str = "", *,
                 answer: Callable[[AgentRequest], str] | None = None,
                 gate: trio.Event | None = None) -> None:
        self.agent_id = agent_id
        self._text = text
        self._answer = answer
        self.gate = gate
        self.requests: list[AgentRequest] = []

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        self.requests.append(request)
        yield Status("thinking")
        text = self._answer(request) if self._answer else self._text
        for n, word in enumerate(text.split(" ")):
            yield Token(word if n == 0 else " " + word)
            if self.gate is not None:
                await self.gate.wait()
        yield Final(text, tokens_used=1)


class Panel:
    """A store, agents, a runtime and ``Runs``, all real; the recorder as every face."""

    def __init__(self, store: SqliteStore, agents: list[Any]) -> None:
        self.store = store
        self.recorder = Recorder()
        entries = {agent.agent_id: AgentEntry(agent) for agent in agents}
        entries.setdefault("sophon", AgentEntry(BuiltinAgent("sophon", token_delay=0)))
        self.registry = AgentRegistry(entries)
        self.runtime = TaskRuntime(store, self.registry, self.recorder, workers=2,
                                   queue_limit=10, node="node-a", leases=LEASES)
        self.runs = Runs(store, self.registry, self.runtime, self.recorder)

    async def start(self, panelists: list[str], judge: str = "sophon", rounds: int = 2,
                    topic: str = "Should cities ban cars?") -> RunView:
        return await self.runs.start(ADA, RunOrder(topic, tuple(panelists), judge, rounds))


@asynccontextmanager
async def panel(tmp_path: Path, *agents: Any) -> AsyncIterator[Panel]:
    store = SqliteStore(tmp_path / "voisnap.db")
    await store.open()
    try:
        built = Panel(store, list(agents))
        async with trio.open_nursery() as nursery:
            await nursery.start(built.runtime.run)
            yield built
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
