"""The discussion hub's rendering of the runtime's domain events (docs/hubs/discussion.md).

A face among the others (``apps.faces``): the ``DiscussionJob`` reports a
run's progress (``agents.discussion.DiscussionEvents``), and the runtime
reports every task's end. This face shows only runs (tasks of kind
``discussion``): their progress as it is reported, a failure (an agent's
error, an invalid verdict, or ``interrupted``) as ``DiscussionFailed``, a
cancel as ``DiscussionCancelled``; each to the run's subscribers, once,
serialized once per hub protocol.
"""

from __future__ import annotations

from typing import Any

from ...agents.discussion import KIND
from ...hubs.hub import invocation_of
from ...routing.router import Router
from ...storage.base import Discussion, Panelist, Task, Turn
from .audience import run_key
from .events import (
    DiscussionCancelled,
    DiscussionCompleted,
    DiscussionFailed,
    DiscussionStarted,
    JudgeStarted,
    PanelistView,
    RoundStarted,
    TurnCompleted,
    TurnStarted,
    Verdict,
)


class DiscussionFace:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def _send(self, tenant_id: str, run_id: str, target: str, payload: Any) -> None:
        await self._router.send_group(run_key(tenant_id, run_id), invocation_of(target, (payload,)))

    async def _to_run(self, run: Discussion, target: str, payload: Any) -> None:
        await self._send(run.owner.tenant_id, run.run_id, target, payload)

    # -- the runner's progress ------------------------------------------------------------------

    async def discussion_started(self, run: Discussion) -> None:
        panel = [PanelistView(seat.panelist_id, seat.agent_id) for seat in run.panelists]
        payload = DiscussionStarted(run.run_id, run.topic, panel, run.judge)
        await self._to_run(run, "DiscussionStarted", payload)

    async def round_started(self, run: Discussion, round_number: int) -> None:
        await self._to_run(run, "RoundStarted", RoundStarted(run.run_id, round_number))

    async def turn_started(self, run: Discussion, panelist: Panelist, round_number: int) -> None:
        payload = TurnStarted(run.run_id, panelist.panelist_id, round_number)
        await self._to_run(run, "TurnStarted", payload)

    async def turn_completed(self, run: Discussion, turn: Turn) -> None:
        payload = TurnCompleted(run.run_id, turn.panelist_id, turn.content_hash, turn.duration_ms)
        await self._to_run(run, "TurnCompleted", payload)

    async def judge_started(self, run: Discussion) -> None:
        await self._to_run(run, "JudgeStarted", JudgeStarted(run.run_id))

    async def verdict(self, run: Discussion, verdict: dict[str, Any]) -> None:
        await self._to_run(run, "Verdict", Verdict(run.run_id, verdict))

    async def discussion_completed(
        self, run: Discussion, verdict_hash: str, duration_ms: int
    ) -> None:
        payload = DiscussionCompleted(run.run_id, verdict_hash, duration_ms)
        await self._to_run(run, "DiscussionCompleted", payload)

    # -- how a run's task ended, when not with its verdict ----------------------------------------

    async def failed(self, task: Task, error: str) -> None:
        if task.kind == KIND:
            payload = DiscussionFailed(task.task_id, error)
            await self._send(task.owner.tenant_id, task.task_id, "DiscussionFailed", payload)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        if task.kind == KIND:
            payload = DiscussionCancelled(task.task_id, cancelled_by)
            await self._send(task.owner.tenant_id, task.task_id, "DiscussionCancelled", payload)
