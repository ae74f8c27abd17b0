"""voisnap's own events on ``/v1/events``: the producers (docs/v1-events.md, "Catalogue").

A face of the runtime (``apps.faces``), and a presence sink of the nodes: each
domain event becomes one topic event, owned by the user it concerns, in the
process that reports it (topics after ``events.{tenant}.``):

- ``conversations.conversation.message_posted.{sessionId}``: a message is
  stored (the user's, as its task is queued; the agent's reply);
- ``conversations.conversation.message_stream.{sessionId}``: a token of a reply;
- ``tasks.task.{queued,started,completed,failed,cancelled}.{taskId}``: a task's life;
- ``approvals.approval.{requested,resolved}.{approvalId}``: a tool call waits for
  a person's approval; it was decided;
- ``flows.flow.run.{runId}``: a schedule's run started, completed or failed
  (``status`` and ``scheduleId`` in ``data``);
- ``nodes.node.{online,offline}.{nodeId}``: a user's machine came or went.

A topic token must be a word of the grammar (``topics``): a tenant id that is
not one has no events here (and cannot subscribe).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from ...agents.chat_job import reply_id
from ...agents.discussion import KIND as DISCUSSION
from ...agents.runtime import WORKFLOW
from ...failures import error_boundary
from ...hubs.binder import unstructure
from ...storage.base import Approval, Message, Node, Request, Store, Task
from .bus import Event, EventBus
from .topics import BadTopic, tokens_of

log = logging.getLogger(__name__)


class EventsFace:
    def __init__(self, bus: EventBus, store: Store) -> None:
        self._bus = bus
        self._store = store

    # -- tasks ----------------------------------------------------------------------------------

    async def queued(self, task: Task) -> None:
        await self._task(task, "queued")
        asked = await self._store.get_message(task.owner, task.message_id)
        if asked is not None and task.kind != DISCUSSION:
            await self.message(task, asked)

    async def started(self, task: Task) -> None:
        await self._task(task, "started")
        await self._flow(task, "running", None)

    async def completed(self, task: Task) -> None:
        await self._task(task, "completed", duration_ms=task.duration_ms,
                         tokens_used=task.tokens_used)
        await self._flow(task, "completed", None)

    async def failed(self, task: Task, error: str) -> None:
        await self._task(task, "failed", error=error)
        await self._flow(task, "failed", error)

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        await self._task(task, "cancelled", cancelled_by=cancelled_by)
        await self._flow(task, "failed", f"The run was cancelled by {cancelled_by}.")

    async def _task(self, task: Task, state: str, **details: Any) -> None:
        data = {"task_id": task.task_id, "session_id": task.session_id,
                "agent_id": task.agent_id, "status": state, **details}
        await self._publish(task.owner, ("tasks", "task", state, task.task_id), data)

    # -- conversations --------------------------------------------------------------------------

    async def message(self, task: Task, message: Message) -> None:
        data = {"message_id": message.message_id, "session_id": message.session_id,
                "task_id": task.task_id, "role": message.role, "content": message.content,
                "created_at": unstructure(message.created_at)}
        topic = ("conversations", "conversation", "message_posted", message.session_id)
        await self._publish(task.owner, topic, data)

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None:
        if task.kind == DISCUSSION:
            return
        data = {"session_id": task.session_id, "task_id": task.task_id,
                "message_id": reply_id(task.task_id), "delta": delta, "is_final": is_final}
        topic = ("conversations", "conversation", "message_stream", task.session_id)
        await self._publish(task.owner, topic, data)

    # -- approvals ------------------------------------------------------------------------------

    async def waiting(self, task: Task, request: Request) -> None:
        if isinstance(request, Approval):
            await self._approval(request, "requested")

    async def request_resolved(self, request: Request) -> None:
        if isinstance(request, Approval):
            await self._approval(request, "resolved")

    async def _approval(self, approval: Approval, event: str) -> None:
        data = {"approval_id": approval.approval_id, "task_id": approval.task_id,
                "session_id": approval.session_id, "tool_name": approval.tool_name,
                "status": approval.status}
        await self._publish(approval.owner, ("approvals", "approval", event,
                                             approval.approval_id), data)

    # -- flows (a schedule's runs) --------------------------------------------------------------

    async def _flow(self, task: Task, status: str, error: str | None) -> None:
        if task.kind != WORKFLOW:
            return
        with error_boundary(log, f"the flow event of task {task.task_id}"):
            run = await self._store.workflow_run_of_task(task.task_id)
            if run is not None:
                data = {"run_id": run.run_id, "schedule_id": run.schedule_id,
                        "task_id": task.task_id, "status": status, "error": error}
                await self._publish(task.owner, ("flows", "flow", "run", run.run_id), data)

    # -- nodes (``nodes.service.PresenceSink``) -------------------------------------------------

    async def online(self, node: Node, at: datetime.datetime) -> None:
        await self._node(node, "online", at)

    async def offline(self, node: Node, at: datetime.datetime) -> None:
        await self._node(node, "offline", at)

    async def _node(self, node: Node, event: str, at: datetime.datetime) -> None:
        data = {"node_id": node.node_id, "name": node.name, "status": event,
                "at": unstructure(at)}
        await self._publish(node.owner, ("nodes", "node", event, node.node_id), data)

    # -------------------------------------------------------------------------------------------

    async def _publish(self, owner: Any, parts: tuple[str, ...], data: Any) -> None:
        topic = ".".join(("events", owner.tenant_id, *parts))
        try:
            tokens_of(topic, pattern=False)
        except BadTopic:
            return  # a tenant or an id that is no topic token: nobody can subscribe to it
        await self._bus.publish(Event.of(topic, owner.tenant_id, owner.user_id, data))
