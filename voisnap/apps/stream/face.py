"""``/v1/stream``'s face of the runtime: the task events, as seed 004 names them.

Like every face (``apps.faces``), it renders what the runtime reports, in the
process that reports it (the task's runner, mostly): each event is numbered
in the turn's log (``turns``) and published to the session's watchers
(``sessions``). A task of another kind (a discussion) is not shown here.

| The runtime says | The stream shows |
| --- | --- |
| ``started``, ``status("resuming")`` | (a new segment of the turn's log) |
| ``chunk`` | ``task:token`` |
| ``tool_called`` | ``task:tool_use`` (``AskUserQuestion`` for ``ask_user``) |
| ``tool_result`` | ``task:tool_result`` |
| ``waiting`` on an info request | ``task:ask_user`` |
| ``continuing`` | ``turn.continuing`` |
| ``system_prompt`` | ``debug.system_prompt`` (administrators only) |
| ``message`` | ``turn.done`` |
| ``completed``, ``cancelled`` | ``task:done`` (a cancel closes open tool calls first) |
| ``failed`` | ``task:failed`` |
"""

from __future__ import annotations

from typing import Any

from ...agents.base import ToolCall, ToolResult, transcript_from_json
from ...agents.discussion import KIND as DISCUSSION
from ...agents.tools import ASK_USER
from ...storage.base import InfoRequest, Message, Request, Store, Task
from . import events
from .sessions import StreamSessions
from .turns import TurnLogs


class StreamFace:
    def __init__(self, store: Store, sessions: StreamSessions, turns: TurnLogs) -> None:
        self._store = store
        self._sessions = sessions
        self._turns = turns

    # -- segments -------------------------------------------------------------------------------

    async def started(self, task: Task) -> None:
        if task.kind != DISCUSSION:
            await self._turns.begin(task.task_id, ())

    async def status(self, task: Task, status: str, detail: str | None) -> None:
        if status == "resuming" and task.kind != DISCUSSION:
            await self._turns.begin(task.task_id, await stored_events(self._store, task))

    # -- the turn -------------------------------------------------------------------------------

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None:
        if delta:
            await self._show(task, events.token(task, delta))

    async def tool_called(self, task: Task, call: ToolCall) -> None:
        turn = self._turns.current(task.task_id)
        if turn is not None:
            turn.open_calls[call.call_id] = call
        await self._show(task, events.tool_use(task, call))

    async def tool_result(self, task: Task, result: ToolResult) -> None:
        turn = self._turns.current(task.task_id)
        if turn is not None:
            turn.open_calls.pop(result.call_id, None)
        await self._show(task, events.tool_result(task, result))

    async def waiting(self, task: Task, request: Request) -> None:
        if isinstance(request, InfoRequest):
            await self._show(task, events.ask_user(task, request))
        self._end(task)

    async def continuing(self, task: Task, continuation: int, max_continuations: int) -> None:
        await self._show(task, events.continuing(task, continuation, max_continuations))

    async def system_prompt(self, task: Task, prompt: str) -> None:
        await self._show(task, events.system_prompt(task, prompt), admin_only=True)

    async def message(self, task: Task, message: Message) -> None:
        if task.kind != DISCUSSION:
            await self._show(task, events.turn_done(task, message))

    # -- the end --------------------------------------------------------------------------------

    async def completed(self, task: Task) -> None:
        await self._show(task, events.task_done(task, "completed"))
        self._end(task)

    async def failed(self, task: Task, error: str) -> None:
        await self._show(task, events.task_failed(task, error))
        self._end(task)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        turn = self._turns.current(task.task_id)
        # Seed 004: every task:tool_use is followed by its task:tool_result.
        for call in [] if turn is None else list(turn.open_calls.values()):
            await self._show(task, events.cancelled_result(task, call))
        await self._show(task, events.task_done(task, "cancelled"))
        self._end(task)

    # -------------------------------------------------------------------------------------------

    async def _show(self, task: Task, event: dict[str, Any], *, admin_only: bool = False) -> None:
        if task.kind == DISCUSSION:
            return
        turn = self._turns.current(task.task_id)
        if turn is None:  # reported where the task does not run (a queued task's cancel)
            shown = events.StreamEvent.of(event, task_id=task.task_id, admin_only=admin_only)
        else:
            shown = turn.add(event, admin_only=admin_only)
        await self._sessions.publish(task.owner.tenant_id, task.session_id, shown)

    def _end(self, task: Task) -> None:
        turn = self._turns.current(task.task_id)
        if turn is not None:
            self._turns.end(turn)


async def stored_events(store: Store, task: Task) -> list[dict[str, Any]]:
    """A turn as the store has it (``events.stored_turn``), read from the store."""
    transcript = transcript_from_json(await store.get_transcript(task.task_id))
    asked: dict[str, InfoRequest] = {}
    for step in transcript:
        if isinstance(step, ToolCall) and step.name == ASK_USER:
            request = await store.request_for_call(task.task_id, step.call_id)
            if isinstance(request, InfoRequest):
                asked[step.call_id] = request
    reply = None
    if task.result_message_id is not None:
        reply = await store.get_message(task.owner, task.result_message_id)
    return events.stored_turn(task, transcript, reply, asked)
