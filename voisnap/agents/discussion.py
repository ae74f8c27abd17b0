"""What running a claimed discussion task means: a panel of agents, then a judge.

docs/hubs/discussion.md. A discussion run is a task of kind ``discussion``
(its id is the ``runId``), so the runtime claims it, holds its lease, cancels
it and fails it (``interrupted`` when its process dies) as it does any task;
this job is what runs in between:

    DiscussionStarted
    for each round 1..N:  RoundStarted
        for each seat in order:  TurnStarted, one step of its agent, the turn
                                 stored, TurnCompleted
    JudgeStarted, one step of the judge, the verdict checked, stored (with the
    run's completion and its summary as the session's assistant message), then
    Verdict, DiscussionCompleted

Each agent is asked with one ``step`` (no tools) whose ``AgentRequest`` carries
a ``DiscussionBrief``: the topic, the panel, the turns so far, and whose turn
it is (or that it judges). Its tokens make the turn's text. Every write is
conditional on the lease, so a runner that lost its run stops (``LeaseLost``)
without a word. A run does not resume after its process dies: it has no wait
to resume from, and its lease lapsing fails it.

Progress goes to a ``DiscussionEvents`` sink (the apps' faces: the discussion
hub renders it; the chat and tasks hubs see the run as a task).
"""

from __future__ import annotations

import uuid
from contextlib import aclosing
from typing import Protocol

import attrs
import trio

from ..storage.base import (
    Discussion,
    DiscussionStore,
    Message,
    Panelist,
    Store,
    Task,
    Turn,
    utc_now,
)
from .base import AgentError, AgentRequest, CallTools, DiscussionBrief, Final, SpokenTurn, Token
from .driver import LeaseLost
from .registry import AgentRegistry
from .verdict import content_hash, parse_verdict, verdict_hash

KIND = "discussion"


class DiscussionEvents(Protocol):
    """Where a run's progress is reported (besides ``TaskEvents``, which also
    tells of its start, its reply, and its end as a task)."""

    async def started(self, task: Task) -> None: ...

    async def message(self, task: Task, message: Message) -> None: ...

    async def completed(self, task: Task) -> None: ...

    async def discussion_started(self, run: Discussion) -> None: ...

    async def round_started(self, run: Discussion, round_number: int) -> None: ...

    async def turn_started(
        self, run: Discussion, panelist: Panelist, round_number: int
    ) -> None: ...

    async def turn_completed(self, run: Discussion, turn: Turn) -> None: ...

    async def judge_started(self, run: Discussion) -> None: ...

    async def verdict(self, run: Discussion, verdict: dict[str, object]) -> None: ...

    async def discussion_completed(
        self, run: Discussion, verdict_hash: str, duration_ms: int
    ) -> None: ...


class RunStore(Store, DiscussionStore, Protocol):
    """A store with discussions (``SqlStore`` is one)."""


class DiscussionJob:
    def __init__(
        self, store: RunStore, agents: AgentRegistry, events: DiscussionEvents, *, node: str
    ) -> None:
        self._store = store
        self._agents = agents
        self._events = events
        self._node = node

    async def run(self, task: Task) -> None:
        """Run the discussion of ``task`` to its verdict. Raises ``AgentError``
        (and ``UnknownAgent``) with the text ``DiscussionFailed`` shows."""
        run = await self._store.get_discussion_by_id(task.task_id)
        if run is None:
            raise AgentError("The discussion this task runs is gone.")
        await self._events.started(task)
        await self._events.discussion_started(run)
        spoken: list[SpokenTurn] = []
        tally = Tally()
        for round_number in range(1, run.rounds + 1):
            await self._events.round_started(run, round_number)
            for panelist in run.panelists:
                brief = _brief(run, tuple(spoken), panelist.panelist_id, round_number)
                turn = await self._turn(task, run, panelist, brief, tally)
                spoken.append(
                    SpokenTurn(panelist.panelist_id, panelist.agent_id, round_number, turn.content)
                )
        await self._judge(task, run, _brief(run, tuple(spoken), judging=True), tally)

    async def _turn(
        self,
        task: Task,
        run: Discussion,
        panelist: Panelist,
        brief: DiscussionBrief,
        tally: Tally,
    ) -> Turn:
        await self._events.turn_started(run, panelist, brief.round_number)
        started = trio.current_time()
        text = await self._ask(task, panelist.agent_id, brief, tally)
        turn = Turn(
            run_id=run.run_id,
            round_number=brief.round_number,
            panelist_id=panelist.panelist_id,
            agent_id=panelist.agent_id,
            content=text,
            content_hash=content_hash(text),
            duration_ms=int((trio.current_time() - started) * 1000),
            created_at=utc_now(),
        )
        if not await self._store.add_turn(turn, self._node):
            raise LeaseLost(run.run_id)
        await self._events.turn_completed(run, turn)
        return turn

    async def _judge(
        self, task: Task, run: Discussion, brief: DiscussionBrief, tally: Tally
    ) -> None:
        await self._events.judge_started(run)
        text = await self._ask(task, run.judge, brief, tally)
        verdict = parse_verdict(text, [seat.panelist_id for seat in run.panelists])
        hashed = verdict_hash(verdict)
        reply = _reply(task, run, verdict)
        done = await self._store.complete_discussion(
            run.run_id,
            self._node,
            verdict=verdict,
            verdict_hash=hashed,
            reply=reply,
            tokens_used=tally.tokens,
        )
        if done is None:
            raise LeaseLost(run.run_id)
        # Stored first, then announced: a client told of the verdict can fetch it.
        await self._events.verdict(run, verdict)
        await self._events.message(done, reply)
        await self._events.completed(done)
        await self._events.discussion_completed(run, hashed, done.duration_ms or 0)

    async def _ask(self, task: Task, agent_id: str, brief: DiscussionBrief, tally: Tally) -> str:
        """One step of ``agent_id`` on ``brief``: the text it wrote (its tokens counted)."""
        agent = self._agents.get(agent_id)
        request = AgentRequest(
            task_id=task.task_id,
            session_id=task.session_id,
            owner=task.owner,
            content=brief.topic,
            discussion=brief,
        )
        parts: list[str] = []
        async with aclosing(agent.step(request)) as steps:
            async for event in steps:
                match event:
                    case Token(delta=delta):
                        parts.append(delta)
                    case Final(content=content, tokens_used=used):
                        tally.tokens += used
                        return content or "".join(parts)
                    case CallTools():
                        raise AgentError(f"Agent '{agent_id}' asked for tools in a discussion.")
        raise AgentError(f"Agent '{agent_id}' ended without a reply.")


@attrs.define
class Tally:
    """The tokens a run's agents used (the run's task's ``tokensUsed``)."""

    tokens: int = 0


def _brief(
    run: Discussion,
    spoken: tuple[SpokenTurn, ...],
    panelist_id: str | None = None,
    round_number: int = 0,
    judging: bool = False,
) -> DiscussionBrief:
    return DiscussionBrief(
        topic=run.topic,
        panelists=tuple((seat.panelist_id, seat.agent_id) for seat in run.panelists),
        rounds=run.rounds,
        turns=spoken,
        panelist_id=panelist_id,
        round_number=round_number,
        judging=judging,
    )


def _reply(task: Task, run: Discussion, verdict: dict[str, object]) -> Message:
    """The outcome as the session's assistant message, so chat clients see it too."""
    winner = verdict["winner"]
    seat = {p.panelist_id: p.agent_id for p in run.panelists}
    heading = f"Winner: {winner} ({seat[str(winner)]})." if winner else "No winner."
    return Message(
        message_id=f"msg_{uuid.uuid4().hex}",
        session_id=task.session_id,
        owner=task.owner,
        role="assistant",
        content=f"{heading}\n\n{verdict['summary']}",
        created_at=utc_now(),
        task_id=task.task_id,
    )
