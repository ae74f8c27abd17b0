"""Starting, reading and cancelling discussion runs: what the REST routes and the hub share.

docs/hubs/discussion.md. ``POST /discussions`` is checked here (``parse_order``:
the topic, 2 to 8 panelists, a judge, 1 to 10 rounds, an optional session of
the caller's), then ``Runs.start`` stores, in one transaction, the session (a
new one titled ``Discussion: <topic>`` unless the caller named one of its
own), the topic as the user's message, the run's queued task (kind
``discussion``) and the run itself; then announces the task (the chat and tasks
hubs' ``TaskQueued``) and queues it on the runtime, like a chat message.

Another user's or tenant's run is never found: ``view`` and ``cancel`` answer
it exactly as they answer an unknown id, so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from ...agents.discussion import KIND, RunStore
from ...agents.registry import AgentRegistry, UnknownAgent
from ...agents.runtime import RuntimeBusy, TaskRuntime
from ...errors import ServiceUnavailable
from ...storage.base import (
    Discussion,
    Message,
    Owner,
    Panelist,
    Session,
    StoreError,
    StoreUnavailable,
    Task,
    TaskState,
    utc_now,
)
from .views import RunView, run_view

MAX_TOPIC = 4000
PANEL_SIZE = (2, 8)
ROUNDS = (1, 10)
MAX_ID = 128
TITLE_LENGTH = 60


class RefusedRun(Exception):
    """The request cannot start a run; the text says why (answered with 400)."""


class RunNotFound(Exception):
    """No run of the caller's has that id (or it is another's): the text says so."""


@attrs.frozen
class RunOrder:
    """A checked ``POST /discussions`` body."""

    topic: str
    panelists: tuple[str, ...]
    judge: str
    rounds: int
    session_id: str | None = None


def parse_order(body: Any) -> RunOrder:
    if not isinstance(body, dict):
        raise RefusedRun(
            "The body must be a JSON object with a 'topic', 'panelists', a 'judge' and 'rounds'."
        )
    topic = body.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise RefusedRun("'topic' must be a non-empty string.")
    if len(topic) > MAX_TOPIC:
        raise RefusedRun(f"'topic' may be at most {MAX_TOPIC} characters long.")
    low, high = PANEL_SIZE
    panelists = body.get("panelists")
    if not isinstance(panelists, list) or not all(isinstance(p, str) for p in panelists):
        raise RefusedRun("'panelists' must be a list of agent ids.")
    if not low <= len(panelists) <= high:
        raise RefusedRun(f"A panel has {low} to {high} panelists, not {len(panelists)}.")
    judge = body.get("judge")
    if not isinstance(judge, str):
        raise RefusedRun("'judge' must be an agent id.")
    rounds = body.get("rounds")
    low, high = ROUNDS
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not low <= rounds <= high:
        raise RefusedRun(f"'rounds' must be an integer from {low} to {high}.")
    session_id = body.get("sessionId")
    if session_id is not None and (
        not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_ID
    ):
        raise RefusedRun(f"'sessionId' must be a string of 1 to {MAX_ID} characters.")
    return RunOrder(topic, tuple(panelists), judge, rounds, session_id)


def title_of(topic: str) -> str:
    title = "Discussion: " + " ".join(topic.split())
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"


def not_found(run_id: str) -> str:
    return f"Discussion run '{run_id}' does not exist or is not yours."


class Runs:
    def __init__(
        self, store: RunStore, agents: AgentRegistry, runtime: TaskRuntime, events: Any
    ) -> None:
        """``events``: the apps' faces (``TaskQueued``, ``SessionUpdated`` for the new run)."""
        self._store = store
        self._agents = agents
        self._runtime = runtime
        self._events = events

    async def start(self, owner: Owner, order: RunOrder) -> RunView:
        for agent_id in (*order.panelists, order.judge):
            try:
                self._agents.entry(agent_id)
            except UnknownAgent as error:
                raise RefusedRun(str(error)) from None
        session_id = order.session_id
        if session_id is not None and await self._store.get_session(owner, session_id) is None:
            raise RefusedRun(f"Session '{session_id}' does not exist or is not yours.")
        try:
            await self._runtime.check_capacity()
        except RuntimeBusy as error:
            raise ServiceUnavailable(str(error)) from None
        session, message, task, run = self._records(owner, order)
        try:
            accepted = await self._store.start_discussion(
                session=session, message=message, task=task, discussion=run
            )
        except StoreUnavailable:
            raise  # 503: the database cannot be reached now
        except StoreError as error:  # the session became another's meanwhile
            raise RefusedRun(str(error)) from None
        await self._events.queued(accepted.task)
        await self._runtime.submit(accepted.task)
        await self._touch(owner, accepted.task)
        return run_view(run, accepted.task, [])

    def _records(self, owner: Owner, order: RunOrder) -> tuple[Session, Message, Task, Discussion]:
        now = utc_now()
        run_id = f"run_{uuid.uuid4().hex}"
        session_id = order.session_id or f"sess_{uuid.uuid4().hex}"
        session = Session(session_id, owner, title_of(order.topic), now, now)
        message = Message(f"msg_{uuid.uuid4().hex}", session_id, owner, "user", order.topic, now)
        task = self._runtime.reserve(
            Task(
                run_id,
                session_id,
                owner,
                order.judge,
                message.message_id,
                TaskState.QUEUED,
                now,
                is_streaming=False,
                kind=KIND,
            )
        )
        panel = tuple(Panelist(f"p{n}", agent) for n, agent in enumerate(order.panelists, 1))
        run = Discussion(
            run_id, owner, session_id, order.topic, panel, order.judge, order.rounds, now
        )
        return session, message, task, run

    async def _touch(self, owner: Owner, task: Task) -> None:
        """The session moved (the chat hub's ``SessionUpdated``, as for a message)."""
        session = await self._store.update_session(
            owner, task.session_id, updated_at=task.created_at, title=None
        )
        if session is not None:
            await self._events.session_updated(session)

    async def check(self, owner: Owner, run_id: str) -> None:
        """RunNotFound unless the run is the owner's."""
        if await self._store.get_discussion(owner, run_id) is None:
            raise RunNotFound(not_found(run_id))

    async def view(self, owner: Owner, run_id: str) -> RunView:
        run = await self._store.get_discussion(owner, run_id)
        task = None if run is None else await self._store.get_task(owner, run_id)
        if run is None or task is None:
            raise RunNotFound(not_found(run_id))
        return run_view(run, task, await self._store.list_turns(run_id))

    async def list(self, owner: Owner, limit: int) -> list[RunView]:
        views = []
        for run in await self._store.list_discussions(owner, limit=limit):
            task = await self._store.get_task(owner, run.run_id)
            if task is not None:
                views.append(run_view(run, task, None))
        return views

    async def cancel(self, owner: Owner, run_id: str, by: str) -> None:
        """Cancel a queued or running run; a finished one is refused, saying how it ended."""
        task = await self._store.get_task(owner, run_id)
        if task is None or task.kind != KIND:
            raise RunNotFound(not_found(run_id))
        if task.state.finished:
            raise RefusedRun(
                f"Discussion run '{run_id}' has already finished ({task.state.value})."
            )
        await self._runtime.cancel(task, by)
