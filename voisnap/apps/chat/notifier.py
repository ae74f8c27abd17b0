"""The chat hub's events, sent to their audiences (``audience``) as tasks progress.

``ChatEvents`` is the runtime's ``TaskEvents`` sink: it turns what happened to
a task into the hub events of docs/hubs/chat.md ("Events (server to client)")
and sends each once, through the chat hub's router, serialized once per hub
protocol however many devices receive it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...hubs.hub import invocation_of
from ...routing.router import Router
from ...storage.base import Approval, Message, Owner, Request, Session, Task, utc_now
from .audience import task_audience, user_audience
from .events import (
    AgentStatus,
    ReceiveMessage,
    SessionNotification,
    SessionUpdated,
    StreamChunk,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskStarted,
    ToolCallCompleted,
    ToolCallStarted,
)

EXCERPT = 140


def excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def receive_message(message: Message) -> ReceiveMessage:
    tool_calls = None if message.tool_calls is None else list(message.tool_calls)
    return ReceiveMessage(
        message.message_id, message.session_id, message.role, message.content, tool_calls
    )


def args_hash(arguments: dict[str, Any]) -> str:
    """A stable fingerprint of a tool call's arguments: clients can match a
    ToolCallStarted with its ToolCallCompleted without seeing the arguments."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ChatEvents:
    def __init__(self, router: Router) -> None:
        self._router = router
        self._replies: dict[str, str] = {}  # task id -> its reply, for the notification excerpt

    # -- per-task events, to the session group and the legacy clients --------------------------

    async def _to_task(self, task: Task, target: str, payload: Any) -> None:
        owner = task.owner
        audience = task_audience(owner.tenant_id, owner.user_id, task.session_id)
        await self._router.send_groups(audience, invocation_of(target, (payload,)))

    async def queued(self, task: Task) -> None:
        await self._to_task(task, "TaskQueued", TaskQueued(task.task_id, task.session_id))

    async def started(self, task: Task) -> None:
        assert task.started_at is not None
        await self._to_task(task, "TaskStarted", TaskStarted(task.task_id, task.started_at))
        await self._notify(task, "taskStarted", success=None, text=None)

    async def status(self, task: Task, status: str, detail: str | None) -> None:
        await self._to_task(task, "AgentStatus", AgentStatus(task.task_id, status, detail))

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None:
        await self._to_task(task, "StreamChunk", StreamChunk(task.task_id, delta, is_final))

    async def tool_started(self, task: Task, tool_name: str, arguments: dict[str, Any]) -> None:
        payload = ToolCallStarted(task.task_id, tool_name, args_hash(arguments))
        await self._to_task(task, "ToolCallStarted", payload)

    async def tool_completed(self, task: Task, tool_name: str, duration_ms: int, ok: bool) -> None:
        payload = ToolCallCompleted(task.task_id, tool_name, duration_ms, ok)
        await self._to_task(task, "ToolCallCompleted", payload)

    async def message(self, task: Task, message: Message) -> None:
        self._replies[task.task_id] = message.content
        await self._to_task(task, "ReceiveMessage", receive_message(message))

    async def completed(self, task: Task) -> None:
        payload = TaskCompleted(task.task_id, task.duration_ms or 0, task.tokens_used or 0)
        await self._to_task(task, "TaskCompleted", payload)
        await self._notify(task, "taskCompleted", True, self._replies.pop(task.task_id, None))

    async def failed(self, task: Task, error: str) -> None:
        await self._to_task(task, "TaskFailed", TaskFailed(task.task_id, error))
        self._replies.pop(task.task_id, None)
        await self._notify(task, "taskFailed", success=False, text=error)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        await self._to_task(task, "TaskCancelled", TaskCancelled(task.task_id, cancelled_by))
        self._replies.pop(task.task_id, None)
        await self._notify(task, "taskCancelled", success=False, text=None)

    async def waiting(self, task: Task, request: Request) -> None:
        """The task waits for a person: the session sees why, every device of
        the user is told there is something to decide or answer."""
        if isinstance(request, Approval):
            status, kind, ref_id = "waiting_approval", "approvalPending", request.approval_id
            text = f"{request.tool_name} {json.dumps(request.params, ensure_ascii=False)}"
            detail = request.tool_name
        else:
            status, kind, ref_id = "waiting_user", "infoRequestPending", request.info_id
            text = detail = request.question
        await self._to_task(task, "AgentStatus", AgentStatus(task.task_id, status, detail))
        await self._notify(task, kind, success=None, text=text, ref_id=ref_id)

    # -- user-wide events, to every device of the user -----------------------------------------

    async def _notify(
        self,
        task: Task,
        kind: str,
        success: bool | None,
        text: str | None,
        ref_id: str | None = None,
    ) -> None:
        await self.session_activity(
            task.owner, task.session_id, kind, ref_id or task.task_id, success, text
        )

    async def session_activity(
        self,
        owner: Owner,
        session_id: str,
        kind: str,
        ref_id: str,
        success: bool | None,
        text: str | None,
    ) -> None:
        """``SessionNotification`` to every device of the user, joined to the session or not."""
        notification = SessionNotification(
            session_id=session_id,
            kind=kind,
            ref_id=ref_id,
            success=success,
            excerpt=excerpt(text),
            timestamp=utc_now(),
        )
        audience = user_audience(owner.tenant_id, owner.user_id)
        await self._router.send_group(
            audience, invocation_of("SessionNotification", (notification,))
        )

    # -- what no task wrote: a heartbeat's reminder (docs/reminders.md) ------------------------

    async def posted(self, message: Message) -> None:
        """A message stored in a session by no task: ``ReceiveMessage`` to the
        session's devices (and the user's legacy ones), as a task's reply goes."""
        owner = message.owner
        audience = task_audience(owner.tenant_id, owner.user_id, message.session_id)
        await self._router.send_groups(
            audience, invocation_of("ReceiveMessage", (receive_message(message),))
        )

    async def session_updated(self, session: Session) -> None:
        payload = SessionUpdated(session.session_id, session.title, session.updated_at)
        audience = user_audience(session.owner.tenant_id, session.owner.user_id)
        await self._router.send_group(audience, invocation_of("SessionUpdated", (payload,)))
