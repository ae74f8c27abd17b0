"""The chat hub's payloads, exactly as docs/hubs/chat.md names them ("Events
(server to client)", "Methods (client to server)").

Python fields are snake_case; the binder sends them camelCase
(``tokens_used`` -> ``tokensUsed``), in both hub protocols, and timestamps
as ISO-8601 UTC strings. The REST catch-up answers with the same shapes.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

# -- client to server -----------------------------------------------------------------------------


@attrs.frozen
class SendMessageRequest:
    content: str
    session_id: str | None = None
    agent_id: str = "sophon"
    channel_id: str | None = None
    attachments: list[Any] | None = None
    is_streaming: bool = True
    message_id: str | None = None
    """Optional, the client's own id: a retry with the same id gets the same task."""


@attrs.frozen
class SendMessageResult:
    task_id: str
    session_id: str
    message_id: str


@attrs.frozen
class CancelTaskRequest:
    task_id: str


# -- server to client: one task ------------------------------------------------------------------


@attrs.frozen
class TaskQueued:
    task_id: str
    session_id: str


@attrs.frozen
class TaskStarted:
    task_id: str
    started_at: datetime.datetime


@attrs.frozen
class AgentStatus:
    task_id: str
    status: str
    detail: str | None


@attrs.frozen
class StreamChunk:
    task_id: str
    delta: str
    is_final: bool


@attrs.frozen
class ToolCallStarted:
    task_id: str
    tool_name: str
    args_hash: str


@attrs.frozen
class ToolCallCompleted:
    task_id: str
    tool_name: str
    duration_ms: int
    ok: bool


@attrs.frozen
class ReceiveMessage:
    message_id: str
    session_id: str
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None = None


@attrs.frozen
class TaskCompleted:
    task_id: str
    duration_ms: int
    tokens_used: int


@attrs.frozen
class TaskFailed:
    task_id: str
    error: str


@attrs.frozen
class TaskCancelled:
    task_id: str
    cancelled_by: str


# -- server to client: user-wide ------------------------------------------------------------------


@attrs.frozen
class SessionUpdated:
    session_id: str
    title: str
    updated_at: datetime.datetime


@attrs.frozen
class SessionNotification:
    session_id: str
    kind: str
    ref_id: str
    success: bool | None
    excerpt: str | None
    timestamp: datetime.datetime
