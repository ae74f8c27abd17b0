"""One runtime, many faces: every hub's rendering of the same domain events.

The task runtime reports what happens to tasks once (``agents.runtime.TaskEvents``);
``Faces`` hands each report to every contract that shows it: the chat hub (the
session's stream and the user's notifications), the tasks hub (the user's
ledger), the approvals hub (the requests), the discussion hub (a run's
progress, which ``agents.discussion.DiscussionJob`` reports besides the task
events), and whatever later contracts add.
A face shows only what it has a method for.
"""

from __future__ import annotations

from typing import Any

from ..agents.base import ToolCall, ToolResult
from ..storage.base import Discussion, Message, Panelist, Request, Session, Task, Turn


class Faces:
    def __init__(self, *faces: Any) -> None:
        self._faces = faces

    async def _each(self, event: str, *arguments: Any) -> None:
        for face in self._faces:
            show = getattr(face, event, None)
            if show is not None:
                await show(*arguments)

    async def queued(self, task: Task) -> None:
        await self._each("queued", task)

    async def started(self, task: Task) -> None:
        await self._each("started", task)

    async def status(self, task: Task, status: str, detail: str | None) -> None:
        await self._each("status", task, status, detail)

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None:
        await self._each("chunk", task, delta, is_final)

    async def tool_started(self, task: Task, tool_name: str, arguments: dict[str, Any]) -> None:
        await self._each("tool_started", task, tool_name, arguments)

    async def tool_completed(self, task: Task, tool_name: str, duration_ms: int, ok: bool) -> None:
        await self._each("tool_completed", task, tool_name, duration_ms, ok)

    async def tool_called(self, task: Task, call: ToolCall) -> None:
        await self._each("tool_called", task, call)

    async def tool_result(self, task: Task, result: ToolResult) -> None:
        await self._each("tool_result", task, result)

    async def continuing(self, task: Task, continuation: int, max_continuations: int) -> None:
        await self._each("continuing", task, continuation, max_continuations)

    async def system_prompt(self, task: Task, prompt: str) -> None:
        await self._each("system_prompt", task, prompt)

    async def message(self, task: Task, message: Message) -> None:
        await self._each("message", task, message)

    async def completed(self, task: Task) -> None:
        await self._each("completed", task)

    async def failed(self, task: Task, error: str) -> None:
        await self._each("failed", task, error)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        await self._each("cancelled", task, cancelled_by)

    async def waiting(self, task: Task, request: Request) -> None:
        await self._each("waiting", task, request)

    async def request_resolved(self, request: Request) -> None:
        await self._each("request_resolved", request)

    async def session_updated(self, session: Session) -> None:
        await self._each("session_updated", session)

    # -- a discussion run's progress (``agents.discussion.DiscussionEvents``) ---------------------

    async def discussion_started(self, run: Discussion) -> None:
        await self._each("discussion_started", run)

    async def round_started(self, run: Discussion, round_number: int) -> None:
        await self._each("round_started", run, round_number)

    async def turn_started(self, run: Discussion, panelist: Panelist, round_number: int) -> None:
        await self._each("turn_started", run, panelist, round_number)

    async def turn_completed(self, run: Discussion, turn: Turn) -> None:
        await self._each("turn_completed", run, turn)

    async def judge_started(self, run: Discussion) -> None:
        await self._each("judge_started", run)

    async def verdict(self, run: Discussion, verdict: dict[str, Any]) -> None:
        await self._each("verdict", run, verdict)

    async def discussion_completed(
        self, run: Discussion, verdict_hash: str, duration_ms: int
    ) -> None:
        await self._each("discussion_completed", run, verdict_hash, duration_ms)
