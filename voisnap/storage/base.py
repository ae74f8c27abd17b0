"""What the product stores: sessions, messages, tasks (and the built-in agent's notes).

docs/hubs/chat.md, "Tasks", and docs/rest.md: missed events are not replayed;
clients use REST to catch up. So everything a client may need after a
reconnect is stored before it is announced: a user's message before
``TaskQueued``, the agent's final message before ``ReceiveMessage`` and
``TaskCompleted``.

``Store`` is the interface; ``SqlStore`` (``storage.sql``) implements it once
for both databases: ``SqliteStore`` (``storage.sqlite``), the embedded default,
and ``PostgresStore`` (``storage.postgres``), shared by processes on several
hosts. One conformance suite runs on both. Records are frozen attrs classes;
ids are opaque strings; times are timezone-aware UTC datetimes.

Every read takes the caller's tenant and user: a record of another user or
tenant is simply not found, so ids cannot be probed.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any, Protocol

import attrs

from ..errors import HubError, ServiceUnavailable


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TaskState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    """For a person: an approval or an answer. Holds no worker and no lease."""
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
    lease_owner: str | None = None
    """The process running it (or the last one that did); for a queued task,
    the process it is reserved for until ``lease_until`` (the one that
    accepted it: its devices then see its events in order)."""
    lease_until: datetime.datetime | None = None
    cancel_requested_by: str | None = None
    """Who asked to cancel it while it ran, for its runner to see."""
    kind: str = "chat"
    """What the runtime runs: ``chat`` (an agent answers a message) or
    ``discussion`` (a panel of agents and a judge; ``agents.discussion``)."""


@attrs.frozen
class Note:
    note_id: str
    owner: Owner
    text: str
    created_at: datetime.datetime


PENDING = "pending"


@attrs.frozen
class Approval:
    """A tool call that waits for a person's decision (docs/hubs/approvals.md).
    ``status`` is ``pending`` until decided, then the outcome: ``approved``,
    ``rejected``, ``edited`` or ``timeOut`` (``cancelled`` with its task)."""

    approval_id: str
    task_id: str
    session_id: str
    owner: Owner
    agent_id: str
    call_id: str
    tool_name: str
    params: dict[str, Any]
    reason: str | None
    status: str
    created_at: datetime.datetime
    expires_at: datetime.datetime
    outcome_detail: Any = None
    """The rejection reason, or the modified params; None otherwise."""
    resolved_at: datetime.datetime | None = None
    resolved_by: str | None = None


@attrs.frozen
class InfoRequest:
    """A question to the user that waits for an answer. ``status`` is
    ``pending``, then ``answered`` or ``timeOut`` (``cancelled`` with its task)."""

    info_id: str
    task_id: str
    session_id: str
    owner: Owner
    agent_id: str
    call_id: str
    question: str
    options: tuple[str, ...] | None
    status: str
    created_at: datetime.datetime
    expires_at: datetime.datetime
    response: str | None = None
    resolved_at: datetime.datetime | None = None
    resolved_by: str | None = None


Request = Approval | InfoRequest


@attrs.frozen
class Resolution:
    """What deciding a request did: the request as it now is; whether this
    call decided it (False: it was decided already, ``request.status`` says
    how); the task, if the decision sent it back to the queue."""

    request: Request
    won: bool
    requeued: Task | None = None


@attrs.frozen
class Accepted:
    """What ``accept_message`` did: the task (new, or the one a retry already made)."""

    session: Session
    message: Message
    task: Task
    created: bool
    session_created: bool


class StoreError(HubError):
    """The store cannot do what was asked (a clear, client-safe reason: a hub
    method that lets it through answers with its text)."""


class StoreUnavailable(StoreError, ServiceUnavailable):
    """The database cannot be reached now; the operation did not happen."""


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

    async def count_queued(self) -> int: ...

    async def claim_task(
        self, node: str, now: datetime.datetime, lease_until: datetime.datetime
    ) -> Task | None:
        """The oldest queued task, now running on ``node`` until ``lease_until``;
        None if nothing is queued. Exactly one caller gets each task."""

    async def renew_lease(self, task_id: str, node: str, lease_until: datetime.datetime) -> bool:
        """False if ``node`` no longer holds the task's lease."""

    async def expire_leases(self, now: datetime.datetime, error: str) -> list[Task]:
        """Running tasks whose lease lapsed before ``now`` fail with ``error``."""

    async def request_cancel(self, task_id: str, by: str) -> Task | None:
        """Cancel a queued task now (returned), or mark a running one for its runner."""

    async def cancel_requested(self, task_id: str) -> str | None:
        """Who asked to cancel the running task, if anyone did."""

    async def complete_task(
        self, task_id: str, node: str, *, reply: Message, tokens_used: int
    ) -> Task | None:
        """running -> completed, with the agent's final message stored with it;
        None if ``node`` no longer holds the task's lease."""

    async def finish_task(
        self,
        task_id: str,
        state: TaskState,
        *,
        error: str | None = None,
        cancelled_by: str | None = None,
        node: str | None = None,
    ) -> Task | None:
        """-> failed or cancelled; None if it had finished already (or ``node``
        no longer holds its lease)."""

    async def ping(self) -> None:
        """Readiness: raises unless the database answers now."""

    async def add_note(self, note: Note) -> None: ...

    async def list_notes(self, owner: Owner) -> list[Note]: ...


# -- discussions: panels of agents and a judge (docs/hubs/discussion.md) -------------------------


@attrs.frozen
class Panelist:
    """A seat on a panel: ``p1``, ``p2``, ... in the order given, and the agent in it
    (the same agent may sit twice)."""

    panelist_id: str
    agent_id: str


@attrs.frozen
class Discussion:
    """A discussion run: the task of kind ``discussion`` with the same id
    (``run_id`` == ``task_id``) says how it is going; this says what it is about
    and, once the judge spoke, the verdict (plain JSON data) and its hash."""

    run_id: str
    owner: Owner
    session_id: str
    topic: str
    panelists: tuple[Panelist, ...]
    judge: str
    rounds: int
    created_at: datetime.datetime
    verdict: dict[str, Any] | None = None
    verdict_hash: str | None = None


@attrs.frozen
class Turn:
    """What one panelist said in one round; ``content_hash`` is the SHA-256 (hex)
    of ``content`` as UTF-8."""

    run_id: str
    round_number: int
    panelist_id: str
    agent_id: str
    content: str
    content_hash: str
    duration_ms: int
    created_at: datetime.datetime


class DiscussionStore(Protocol):
    """The discussion half of ``Store`` (``storage.sql_discussions``)."""

    async def start_discussion(
        self, *, session: Session, message: Message, task: Task, discussion: Discussion
    ) -> Accepted:
        """In one transaction, what ``accept_message`` does (the topic is the
        user's message, the run its queued task) and the discussion's row."""

    async def get_discussion(self, owner: Owner, run_id: str) -> Discussion | None: ...

    async def get_discussion_by_id(self, run_id: str) -> Discussion | None:
        """For the runtime, which acts for the owner already."""

    async def list_discussions(self, owner: Owner, *, limit: int) -> list[Discussion]:
        """Newest first."""

    async def add_turn(self, turn: Turn, node: str) -> bool:
        """Store a turn; False (nothing stored) if ``node`` no longer holds the run's lease."""

    async def list_turns(self, run_id: str) -> list[Turn]:
        """In the order they were spoken: by round, then by seat."""

    async def complete_discussion(
        self,
        run_id: str,
        node: str,
        *,
        verdict: dict[str, Any],
        verdict_hash: str,
        reply: Message,
        tokens_used: int = 0,
    ) -> Task | None:
        """The verdict stored and the run's task completed with ``reply`` (its
        summary, the assistant's message in the session), in one transaction;
        None if ``node`` no longer holds the run's lease."""


# -- notifications: the feed, insight cards, claims (docs/hubs/notifications.md) ---------------

USER, TENANT, ROLE = "user", "tenant", "role"


@attrs.frozen
class Audience:
    """Who in a tenant a notification is for: one user (``name`` is the user id),
    the whole tenant (``name`` is empty), or every holder of a role (``name`` is
    the role)."""

    kind: str
    name: str = ""

    def __attrs_post_init__(self) -> None:
        if self.kind not in (USER, TENANT, ROLE):
            raise ValueError(f"an audience is a user, a tenant or a role, not {self.kind!r}")


@attrs.frozen
class Notification:
    """One event of the notifications hub, stored before it is sent (the Home
    feed's catch-up, ``GET /notifications``). ``payload`` is the event's wire
    form (camelCase JSON)."""

    notification_id: str
    tenant_id: str
    audience: Audience
    event: str
    payload: dict[str, Any]
    created_at: datetime.datetime


@attrs.frozen
class Reader:
    """Whose feed it is: a user of a tenant, with the roles of their token."""

    tenant_id: str
    user_id: str
    roles: frozenset[str] = frozenset()

    def may_read(self, notification: Notification) -> bool:
        audience = notification.audience
        return notification.tenant_id == self.tenant_id and (
            audience.kind == TENANT
            or (audience.kind == USER and audience.name == self.user_id)
            or (audience.kind == ROLE and audience.name in self.roles)
        )


MAX_INSIGHT_TITLE = 200
MAX_INSIGHT_BODY = 4000


@attrs.frozen
class Insight:
    """An insight card: it belongs to one user; dismissed, it leaves their list.
    A title has at most ``MAX_INSIGHT_TITLE`` characters, a body ``MAX_INSIGHT_BODY``."""

    insight_id: str
    owner: Owner
    title: str
    body: str
    created_at: datetime.datetime
    dismissed_at: datetime.datetime | None = None


class NotificationStore(Protocol):
    """The notifications half of ``Store`` (``storage.sql_notifications``)."""

    async def add_notification(self, notification: Notification) -> None: ...

    async def list_notifications(
        self, reader: Reader, *, limit: int, before: str | None = None
    ) -> list[Notification] | None:
        """What ``reader`` may read, newest first; ``before`` is a notification id:
        only older ones. None when ``before`` names no notification ``reader`` may read."""

    async def add_insight(self, insight: Insight) -> None: ...

    async def list_insights(self, owner: Owner) -> list[Insight]:
        """The owner's cards not dismissed, newest first."""

    async def dismiss_insight(
        self, owner: Owner, insight_id: str, now: datetime.datetime
    ) -> Insight | None:
        """The card, now dismissed; None if the owner has no such card not dismissed."""

    async def claim(self, claim: str, node: str, now: datetime.datetime) -> bool:
        """True for exactly one caller per ``claim`` key, whatever the processes."""
