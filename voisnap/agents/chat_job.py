"""What running a claimed chat task means: an agent answers the user's message.

docs/hubs/chat.md, "Task events". The runtime (``agents.runtime``) claims the
task, holds its lease and handles its cancel and its failure; this job does the
rest, in the order the seed gives: ``started`` (once per task: a task resumed
after a wait says ``resuming`` instead), the agent's steps and tool calls
(``TaskDriver``), then either the wait for a person or the reply, stored
before it is announced (``ReceiveMessage``, ``TaskCompleted``).
"""

from __future__ import annotations

from typing import Any

from ..storage.base import Message, Store, Task, utc_now
from .base import AgentError, AgentRequest, Final
from .driver import TaskDriver, Waiting
from .registry import AgentRegistry

HISTORY = 50  # earlier messages an agent is given


def reply_id(task_id: str) -> str:
    """The id the reply of a chat task is stored under, known from the task's
    first streamed token on (the Voisnap hubs stream the reply's chunks under it)."""
    return "msg_" + task_id.removeprefix("task_") + "r"


class ChatJob:
    def __init__(
        self, store: Store, driver: TaskDriver, events: Any, *, node: str, agents: AgentRegistry
    ) -> None:
        self._store = store
        self._agents = agents
        self._driver = driver
        self._events = events
        self._node = node

    async def run(self, task: Task) -> None:
        """Run ``task`` to its end or its next wait. Raises ``AgentError`` (and
        ``UnknownAgent``) with the text its ``TaskFailed`` shows, ``LeaseLost``
        when the task is no longer this process's."""
        if await self._store.get_transcript(task.task_id) is None:
            await self._events.started(task)  # once: not again on a resume
        else:
            await self._events.status(task, "resuming", None)
        outcome = await self._driver.drive(task, await self._request(task))
        if isinstance(outcome, Waiting):
            await self._events.waiting(task, outcome.request)
        else:
            await self._finish(task, outcome)

    async def _request(self, task: Task) -> AgentRequest:
        asked = await self._store.get_message(task.owner, task.message_id)
        if asked is None:
            raise AgentError("The message this task answers is gone.")
        history = await self._store.list_messages(
            task.owner, task.session_id, limit=HISTORY, before=task.message_id
        )
        # What a Voisnap client gave at connect (docs/hubs/voisnap.md, "The
        # connect query"); a Sophon session has no conversation.
        conversation = await self._store.get_conversation(task.session_id)
        return AgentRequest(
            language=None if conversation is None else conversation.language,
            client_metadata=None if conversation is None else conversation.metadata,
            message_metadata=asked.metadata,
            task_id=task.task_id,
            session_id=task.session_id,
            owner=task.owner,
            content=asked.content,
            history=tuple(history),
            channel_id=task.channel_id,
        )

    def _usage(self, task: Task, final: Final) -> dict[str, Any]:
        """What the reply cost (``/v1/stream``'s ``turn.done``), kept with it so
        that a replay shows the same figures: tokens read and written, and
        their price from the agents file."""
        written = max(0, final.tokens_used - final.input_tokens)
        budget = self._agents.entry(task.agent_id).budget if task.agent_id in self._agents else None
        cost = 0.0 if budget is None else budget.cost_usd(final.input_tokens, written)
        return {"input_tokens": final.input_tokens, "output_tokens": written, "cost_usd": cost}

    async def _finish(self, task: Task, final: Final) -> None:
        """Store the reply first, then announce it, so REST can always catch up
        (docs/rest.md, "GET /sessions/{sessionId}/messages")."""
        reply = Message(
            message_id=reply_id(task.task_id),
            session_id=task.session_id,
            owner=task.owner,
            role="assistant",
            content=final.content,
            created_at=utc_now(),
            tool_calls=final.tool_calls or None,
            task_id=task.task_id,
            metadata={"usage": self._usage(task, final)},
        )
        done = await self._store.complete_task(
            task.task_id, self._node, reply=reply, tokens_used=final.tokens_used
        )
        if done is None:
            return  # the lease was lost: another process decided this task's end
        if task.is_streaming:
            await self._events.chunk(done, "", True)
        await self._events.message(done, reply)
        await self._events.completed(done)
