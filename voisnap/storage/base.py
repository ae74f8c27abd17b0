"""What the product stores: sessions, messages, tasks (and the built-in agent's notes).

docs/hubs/chat.md, "Tasks", and docs/rest.md: missed events are not replayed;
clients use REST to catch up. So everything a client may need after a
reconnect is stored before it is announced: a user's message before
``TaskQueued``, the agent's final message before ``ReceiveMessage`` and
``TaskCompleted``.

``Store`` is the interface; ``SqliteStore`` (``storage.sqlite``) is the embedded
default, and a shared store (Redis, a later issue) will implement the same
methods. Records are frozen attrs classes; ids are opaque strings; times are
timezone-aware UTC datetimes.

Every read takes the caller's tenant and user: a record of another user or
tenant is simply not found, so ids cannot be probed.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any, Protocol

import attrs


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TaskState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


@attrs.frozen
class Owner:
    """Whose record it is: every read and write is scoped by both."""

    tenant_id: str
    user_id: str


@attrs.frozen
class Session:
    session_id: str
    owner: Owner
    title: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


@attrs.frozen
class Message:
    message_id: str
    session_id: str
    owner: Owner
    role: str  # "user" or "assistant"
    content: str
    created_at: datetime.datetime
    tool_calls: tuple[dict[str, Any], ...] | None = None
    task_id: str | None = None


@attrs.frozen
class Task:
    task_id: str
    session_id: str
    owner: Owner
    agent_id: str
    message_id: str
    """The user message the task answers."""
    state: TaskState
    created_at: datetime.datetime
    is_streaming: bool = True
    channel_id: str | None = None
    client_message_id: str | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    error: str | None = None
    duration_ms: int | None = None
    tokens_used: int | None = None
    result_message_id: str | None = None
    cancelled_by: str | None = None


@attrs.frozen
class Note:
    note_id: str
    owner: Owner
    text: str
    created_at: datetime.datetime


@attrs.frozen
class Accepted:
    """What ``accept_message`` did: the task (new, or the one a retry already made)."""

    session: Session
    message: Message
    task: Task
    created: bool
    session_created: bool


class StoreError(Exception):
    """The store cannot do what was asked (a clear, client-safe reason)."""


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema."""

    async def aclose(self) -> None: ...

    async def accept_message(self, *, session: Session, message: Message, task: Task) -> Accepted:
        """In one transaction: create ``session`` if it does not exist (it must
        be the owner's if it does), store the user's ``message`` and its queued
        ``task``. If the owner already sent a message with this
        ``task.client_message_id``, store nothing and return that task."""

    async def get_session(self, owner: Owner, session_id: str) -> Session | None: ...

    async def list_sessions(self, owner: Owner) -> list[Session]:
        """Most recently active first."""

    async def update_session(
        self, owner: Owner, session_id: str, *, updated_at: datetime.datetime, title: str | None
    ) -> Session | None: ...

    async def list_messages(
        self, owner: Owner, session_id: str, *, limit: int, before: str | None
    ) -> list[Message]:
        """Oldest first; ``before`` is a message id: only messages older than it."""

    async def get_message(self, owner: Owner, message_id: str) -> Message | None: ...

    async def get_task(self, owner: Owner, task_id: str) -> Task | None: ...

    async def get_task_by_id(self, task_id: str) -> Task | None:
        """For the runtime, which acts for the owner already."""

    async def start_task(self, task_id: str, started_at: datetime.datetime) -> Task | None:
        """queued -> running; None if the task is no longer queued (cancelled)."""

    async def complete_task(self, task_id: str, *, reply: Message, tokens_used: int) -> Task:
        """running -> completed, with the agent's final message stored with it."""

    async def finish_task(
        self,
        task_id: str,
        state: TaskState,
        *,
        error: str | None = None,
        cancelled_by: str | None = None,
    ) -> Task | None:
        """-> failed or cancelled; None if it had finished already."""

    async def recover_tasks(self, error: str) -> list[Task]:
        """After a restart: running tasks fail with ``error``; the queued ones
        are returned, oldest first, to run again."""

    async def add_note(self, note: Note) -> None: ...

    async def list_notes(self, owner: Owner) -> list[Note]: ...
