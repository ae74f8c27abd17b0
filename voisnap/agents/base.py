"""What an agent is: a function from a request to an async stream of events.

docs/hubs/chat.md, "Task events": an accepted message becomes a task; while
it runs, the clients see ``AgentStatus`` checkpoints, ``StreamChunk`` token deltas,
``ToolCallStarted``/``ToolCallCompleted`` around tool calls, then the final
``ReceiveMessage``. An agent produces exactly that, as plain events, and knows
nothing of hubs, groups or storage: the runtime (``agents.runtime``) turns the
events into stored records and hub events.

An agent may need a person in the loop: ``AgentContext.request_approval`` and
``ask_user`` suspend it until an answer comes (the approvals feature resolves
them; until something does, they wait, and cancelling the task ends the wait).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import attrs

from ..storage.base import Message, Owner

# -- events ---------------------------------------------------------------------------------------


@attrs.frozen
class Status:
    """A checkpoint: ``thinking``, ``calling_tool``, ``waiting_approval``..."""

    status: str
    detail: str | None = None


@attrs.frozen
class Token:
    """A piece of the reply, as it is produced."""

    delta: str


@attrs.frozen
class ToolStarted:
    tool_name: str
    arguments: dict[str, Any]


@attrs.frozen
class ToolCompleted:
    tool_name: str
    ok: bool
    duration_ms: int
    result: Any = None


@attrs.frozen
class Final:
    """The reply, whole: its content must be what the Tokens added up to."""

    content: str
    tokens_used: int
    tool_calls: tuple[dict[str, Any], ...] = ()


AgentEvent = Status | Token | ToolStarted | ToolCompleted | Final


class AgentError(Exception):
    """The agent failed; ``str()`` is safe to show the user (``TaskFailed.error``)."""


# -- the request and the context ------------------------------------------------------------------


@attrs.frozen
class AgentRequest:
    task_id: str
    session_id: str
    owner: Owner
    content: str
    """The user's message."""
    history: tuple[Message, ...] = ()
    """The session's earlier messages, oldest first."""
    channel_id: str | None = None
    attachments: tuple[Any, ...] = ()


@attrs.frozen
class Decision:
    """A person's answer to an approval request."""

    approved: bool
    outcome: str  # approved, rejected, edited, timeOut
    detail: Any = None


class AgentContext(Protocol):
    async def request_approval(self, action: str, details: dict[str, Any]) -> Decision:
        """Wait until a person approves, rejects or edits ``action``."""

    async def ask_user(self, question: str) -> str:
        """Wait until the user answers ``question``."""


class Agent(Protocol):
    agent_id: str

    def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        """The events of one task, ending with exactly one ``Final``; raising
        ``AgentError`` (or anything else) fails the task."""
