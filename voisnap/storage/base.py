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
    agent_id: str | None = None
    """The agent the session was started with (``/v1/stream``'s ``session.turn``
    talks to it); None for sessions older than that column."""


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
    spoken: bool = False
    """The user said it (``StreamAudio``: its final transcript), rather than typed it."""
    metadata: dict[str, Any] | None = None
    """What the user's client attached to the message (the Voisnap ChatHub's
    ``SendMessageAsync({content, metadata})``): plain JSON, for the agent."""


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

    async def latest_session_task(self, owner: Owner, session_id: str) -> Task | None:
        """The newest task of the owner's session, None for a session without one."""

    async def list_session_tasks(self, owner: Owner, session_id: str, *, limit: int) -> list[Task]:
        """The owner's session's tasks, oldest first (the newest ``limit``)."""
        ...

    async def create_session(self, session: Session) -> Session:
        """Store a new session without a message; StoreError if the id is taken."""
        ...

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


# -- documents: text the user uploads, chunked and indexed for search (docs/documents.md) -------


class DocumentState(enum.Enum):
    UPLOADED = "uploaded"
    """Stored, waiting for an indexer."""
    INDEXING = "indexing"
    """Claimed by one process's indexer, until its lease ends."""
    INDEXED = "indexed"
    FAILED = "failed"


@attrs.frozen
class Document:
    """An uploaded document: UTF-8 text, ``text/plain`` or ``text/markdown``;
    ``size`` is its length in bytes as uploaded. ``content`` is None when a
    read did not ask for it (lists never do)."""

    document_id: str
    owner: Owner
    name: str
    content_type: str
    size: int
    state: DocumentState
    created_at: datetime.datetime
    content: str | None = None
    chunks: int = 0
    error: str | None = None
    indexed_at: datetime.datetime | None = None


@attrs.frozen
class SearchHit:
    """A chunk that matched a search; a higher ``score`` is a better match."""

    document_id: str
    name: str
    chunk_number: int
    content: str
    score: float


class DocumentStore(Protocol):
    """The documents half of ``Store`` (``storage.sql_documents``)."""

    async def add_document(self, document: Document) -> None: ...

    async def get_document(
        self, owner: Owner, document_id: str, *, content: bool = False
    ) -> Document | None: ...

    async def list_documents(
        self, owner: Owner, *, limit: int, before: str | None = None
    ) -> list[Document] | None:
        """Newest first, without content; ``before`` is a document id: only older
        ones. None when ``before`` names no document of the owner's."""

    async def delete_document(self, owner: Owner, document_id: str) -> bool:
        """The document, its chunks and its index entries, in one transaction;
        False if the owner has no such document."""

    async def claim_document(
        self, node: str, now: datetime.datetime, lease_until: datetime.datetime
    ) -> Document | None:
        """The oldest document waiting to be indexed, now ``indexing`` on ``node``,
        with its content; None if none waits. Exactly one caller gets each."""

    async def index_document(
        self, document_id: str, node: str, chunks: list[str], now: datetime.datetime
    ) -> Document | None:
        """Chunks and index entries stored, state ``indexed``, in one transaction;
        None if ``node`` no longer holds the claim (or the document is gone)."""

    async def fail_document(self, document_id: str, node: str, error: str) -> Document | None:
        """``indexing`` -> ``failed``; None if ``node`` no longer holds the claim."""

    async def search_documents(self, owner: Owner, query: str, *, limit: int) -> list[SearchHit]:
        """The owner's chunks matching any word of ``query`` (plain text, never
        syntax), best first; nobody else's, ever."""


# -- reminders and heartbeat runs (docs/reminders.md) ---------------------------------------------

REMINDER_ACTIONED = "actioned"
REMINDER_CANCELLED = "cancelled"
MAX_REMINDER_TEXT = 500


@attrs.frozen
class Reminder:
    """Something to tell a user at ``due_at``, in the session where they asked for it.

    ``status`` is ``pending`` until a heartbeat actions it (``actioned``: process
    ``actioned_by`` posted message ``message_id`` at ``actioned_at``) or its owner
    cancels it (``cancelled``: ``actioned_by`` is then the user id)."""

    reminder_id: str
    owner: Owner
    session_id: str
    text: str
    due_at: datetime.datetime
    created_at: datetime.datetime
    status: str = PENDING
    actioned_at: datetime.datetime | None = None
    actioned_by: str | None = None
    message_id: str | None = None


class ReminderStore(Protocol):
    """The reminders part of ``Store`` (``storage.sql_reminders``)."""

    async def add_reminder(self, reminder: Reminder) -> None: ...

    async def list_reminders(self, owner: Owner) -> list[Reminder]:
        """The owner's pending reminders, soonest first."""

    async def cancel_reminder(
        self,
        owner: Owner,
        now: datetime.datetime,
        *,
        reminder_id: str | None = None,
        text: str | None = None,
    ) -> Reminder | None:
        """Cancel one of the owner's pending reminders, by id or by text (case
        ignored; the soonest with that text); None if none is pending."""

    async def due_owners(self, now: datetime.datetime, *, limit: int) -> list[Owner]:
        """The users who have a pending reminder due at ``now`` (at most ``limit``)."""

    async def due_reminders(
        self, owner: Owner, now: datetime.datetime, *, limit: int
    ) -> list[Reminder]:
        """The owner's pending reminders due at ``now``, soonest first."""

    async def action_reminder(
        self, reminder_id: str, node: str, message: Message
    ) -> Reminder | None:
        """pending -> actioned by ``node``, with ``message`` stored in the reminder's
        session, in one transaction; None (nothing stored) if it was not pending:
        another process actioned it, or its owner cancelled it. Exactly one of
        several callers gets the reminder."""


# -- schedules: cron jobs and their workflow runs (docs/schedules.md) ---------------------------

FROM_API, FROM_FILE = "api", "file"


@attrs.frozen
class Schedule:
    """A prompt an agent answers whenever ``cron`` comes due in ``timezone``
    (``apps.schedules.cron``). ``session_id`` is where the prompt and the replies go:
    the one given, or one made at the first fire and kept. ``next_due_at`` is the
    slot (UTC) the scheduler claims next; a paused schedule does not fire, and
    resuming it computes the slot anew. ``source`` is ``api`` (``POST /schedules``)
    or ``file`` (``--schedules-file``)."""

    schedule_id: str
    owner: Owner
    cron: str
    timezone: str
    agent_id: str
    prompt: str
    session_id: str | None
    paused: bool
    source: str
    next_due_at: datetime.datetime
    created_at: datetime.datetime
    updated_at: datetime.datetime


class RunState(enum.Enum):
    """A workflow run: claimed (``FIRED``), its task queued, running, then the end."""

    FIRED = "fired"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen
class WorkflowRun:
    """One firing of a schedule, for one ``slot`` (the moment it came due, UTC):
    the store holds one per schedule and slot, which is what makes a slot fire
    once across processes. ``task_id`` is the task that runs the prompt."""

    run_id: str
    schedule_id: str
    owner: Owner
    slot: datetime.datetime
    state: RunState
    fired_at: datetime.datetime
    task_id: str | None = None
    error: str | None = None
    finished_at: datetime.datetime | None = None


class ScheduleStore(Protocol):
    """The schedules half of ``Store`` (``storage.sql_schedules``)."""

    async def add_schedule(self, schedule: Schedule) -> None: ...

    async def get_schedule(self, owner: Owner, schedule_id: str) -> Schedule | None: ...

    async def list_schedules(self, owner: Owner) -> list[Schedule]:
        """Oldest first."""

    async def update_schedule(self, schedule: Schedule, *, reschedule: bool) -> Schedule | None:
        """The owner's schedule with ``schedule``'s fields (``next_due_at`` only
        when ``reschedule``); None if the owner has no such schedule."""

    async def delete_schedule(self, owner: Owner, schedule_id: str) -> bool: ...

    async def sync_file_schedules(self, schedules: list[Schedule]) -> None:
        """Make the schedules of source ``file`` exactly ``schedules``: add the
        new ones, update the changed ones (a slot is kept unless the cron, zone or
        pause changed), delete the others."""

    async def due_schedules(self, now: datetime.datetime) -> list[Schedule]:
        """The schedules not paused whose ``next_due_at`` is at or before ``now``."""

    async def next_due_at(self) -> datetime.datetime | None:
        """The earliest ``next_due_at`` of the schedules not paused."""

    async def claim_slot(
        self, run: WorkflowRun, *, due_at: datetime.datetime, next_due_at: datetime.datetime
    ) -> bool:
        """True for exactly one caller per schedule and slot, whatever the
        processes: the schedule, still due at ``due_at`` and not paused, moves on
        to ``next_due_at``, and ``run`` is stored."""

    async def start_workflow_run(
        self, run_id: str, *, session: Session, message: Message, task: Task
    ) -> Accepted:
        """In one transaction: the schedule keeps ``session`` as its own if it
        had none (else its own is used), then what ``accept_message`` does, and
        the run (``QUEUED``) records the task."""

    async def update_workflow_run(
        self,
        run_id: str,
        state: RunState,
        *,
        error: str | None = None,
        finished_at: datetime.datetime | None = None,
    ) -> None:
        """The run's state (and, once it ended, its error and end)."""

    async def workflow_run_of_task(self, task_id: str) -> WorkflowRun | None: ...

    async def list_workflow_runs(
        self, owner: Owner, schedule_id: str, *, limit: int
    ) -> list[WorkflowRun]:
        """Newest slot first."""


# -- nodes: a user's own machines, and the commands sent to them (docs/hubs/node.md) ------------

ONLINE, OFFLINE = "online", "offline"
# A command's life: waiting to be delivered, delivered, promised later, then one outcome.
COMMAND_QUEUED, COMMAND_SENT, COMMAND_ACCEPTED = "queued", "sent", "accepted"
COMMAND_SUCCEEDED, COMMAND_FAILED, COMMAND_TIMED_OUT = "succeeded", "failed", "timedOut"
COMMAND_OPEN = (COMMAND_QUEUED, COMMAND_SENT, COMMAND_ACCEPTED)
POLLED = "poll"
"""``delivered_via`` of a command handed out by a poll (else a hub connection's id)."""


@attrs.frozen
class Node:
    """A machine of ``owner``'s that runs commands: its ``scopes`` are the commands
    it may run. ``connection_id`` is the hub connection its presence rides on
    (None while it polls); ``presence_until`` when it is offline unless it is
    heard from again."""

    node_id: str
    owner: Owner
    name: str
    scopes: tuple[str, ...]
    created_at: datetime.datetime
    status: str = OFFLINE
    acknowledged_scopes: tuple[str, ...] | None = None
    revoked_at: datetime.datetime | None = None
    transport: str | None = None
    connection_id: str | None = None
    last_heartbeat: datetime.datetime | None = None
    presence_until: datetime.datetime | None = None
    uptime: float | None = None


@attrs.frozen
class NodeCommand:
    """One command for a node, from the request to its one recorded outcome."""

    command_id: str
    node_id: str
    owner: Owner
    command: str
    params: Any
    status: str
    queued: bool
    timeout_seconds: float
    deadline: datetime.datetime
    created_at: datetime.datetime
    result: Any = None
    error: str | None = None
    delivered_via: str | None = None
    deliveries: int = 0
    sent_at: datetime.datetime | None = None
    completed_at: datetime.datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in COMMAND_OPEN


@attrs.frozen
class Presence:
    """How a node was heard from: its hub connection (``connection_id``) or a poll."""

    transport: str
    connection_id: str | None
    at: datetime.datetime
    until: datetime.datetime
    uptime: float | None = None


class NodeStore(Protocol):
    """The nodes part of ``Store`` (``storage.sql_nodes``). Every change that
    others act on (online, offline, an outcome) is one conditional update, so
    that of several processes exactly one sees it happen."""

    async def add_node(self, node: Node) -> None:
        """StoreError if the owner has a node (not revoked) of that name."""

    async def get_node(self, node_id: str) -> Node | None:
        """Any node, revoked or not (the caller checks the owner)."""

    async def list_nodes(self, owner: Owner) -> list[Node]:
        """The owner's nodes that are not revoked, oldest first."""

    async def set_node_scopes(
        self, node_id: str, scopes: tuple[str, ...] | None = None, *, acknowledged: bool = False
    ) -> Node | None:
        """The scopes (or, ``acknowledged``, those the node says it has); None if revoked."""

    async def revoke_node(self, node_id: str, now: datetime.datetime) -> tuple[Node, bool] | None:
        """Revoke; the node and whether it was online. None if revoked already."""

    async def node_heard(self, node_id: str, presence: Presence) -> tuple[Node, bool] | None:
        """The node is online until ``presence.until``; the node and whether it
        came online now. None if it is revoked or unknown."""

    async def node_disconnected(
        self, node_id: str, connection_id: str, successor: str | None = None
    ) -> Node | None:
        """Offline, if its presence rode on ``connection_id``: the node then, else
        None. With a ``successor`` (another connection of the node), the presence
        rides on that one instead, and the node stays online."""

    async def expire_presence(self, now: datetime.datetime) -> list[Node]:
        """Every node whose presence lapsed, now offline (each returned once, anywhere)."""

    async def add_command(self, command: NodeCommand) -> None: ...

    async def count_open_commands(self, node_id: str) -> int:
        """The node's commands that have no outcome yet."""

    async def get_command(self, command_id: str) -> NodeCommand | None: ...

    async def list_commands(self, node_id: str, *, limit: int) -> list[NodeCommand]:
        """Newest first."""

    async def claim_commands(
        self, node_id: str, via: str, now: datetime.datetime, *, limit: int
    ) -> list[NodeCommand]:
        """The node's queued commands still in time, oldest first, now ``sent`` by ``via``."""

    async def unclaim_commands(self, command_ids: list[str], via: str) -> None:
        """sent by ``via`` -> queued again: they never reached the node."""

    async def accept_command(self, command_id: str, via: str) -> bool:
        """sent -> accepted: the node will answer later."""

    async def finish_command(
        self,
        command_id: str,
        node_id: str,
        status: str,
        now: datetime.datetime,
        *,
        result: Any = None,
        error: str | None = None,
    ) -> NodeCommand | None:
        """Record the outcome if the command is still open; None if it is not
        (unknown, another node's, or answered already): nothing changes then."""

    async def release_commands(
        self, node_id: str, via: str | None, now: datetime.datetime, *, fail_unqueued: bool
    ) -> list[NodeCommand]:
        """The open commands delivered by ``via`` (None: by any way): queued ones
        wait again; the others fail ("node disconnected") if ``fail_unqueued``.
        The ones this call failed."""

    async def fail_open_commands(
        self, node_id: str, error: str, now: datetime.datetime
    ) -> list[NodeCommand]:
        """Fail every open command of the node with ``error``; the ones this call failed."""

    async def expire_commands(self, now: datetime.datetime) -> list[NodeCommand]:
        """Every open command past its deadline, now ``timedOut`` (each returned once)."""


# -- voice: each user's listening preferences (docs/voice.md) ------------------------------------


@attrs.frozen
class VoicePreferences:
    """How a user listens: the speech-to-text ``provider``, the default ``mode``
    of ``StreamAudio`` (``Auto`` or ``Manual``) and the ``pause`` (seconds)
    that ends an utterance in Auto mode."""

    owner: Owner
    provider: str
    mode: str
    pause: float
    updated_at: datetime.datetime | None = None


class VoiceStore(Protocol):
    """The voice part of ``Store`` (``storage.sql_voice``)."""

    async def get_voice_preferences(self, owner: Owner) -> VoicePreferences | None:
        """None for a user who never saved any."""

    async def put_voice_preferences(self, preferences: VoicePreferences) -> None:
        """Save them (replacing the user's earlier ones)."""


# -- Voisnap conversations: sessions of the Voisnap hubs (docs/hubs/voisnap.md) -------------------


@attrs.frozen
class Conversation:
    """A session of the Voisnap hubs: the session (its messages and tasks are
    the store's, like any other), and what its client said at connect."""

    session_id: str
    owner: Owner
    agent_id: str
    hub: str
    """``chat`` or ``voice``: the hub that started it."""
    started_at: datetime.datetime
    metadata: dict[str, Any] | None = None
    language: str | None = None
    left_at: datetime.datetime | None = None
    """When its last connection left (None while one is connected)."""
    ended_at: datetime.datetime | None = None
    end_reason: str | None = None


@attrs.frozen
class ConversationLink:
    """One connection's hold on a conversation, renewed by its process until
    ``live_until``: what the per-tenant limit counts, across processes."""

    connection_id: str
    session_id: str
    tenant_id: str
    node: str
    live_until: datetime.datetime


class Refusal(enum.Enum):
    LIMIT = "the tenant's limit of concurrent sessions is reached"
    GONE = "the session has ended, is not the caller's, or was left too long ago"


class ConversationStore(Protocol):
    """The Voisnap part of ``Store`` (``storage.sql_conversations``)."""

    async def start_conversation(
        self, conversation: Conversation, link: ConversationLink, *, limit: int
    ) -> Refusal | None:
        """Store a new conversation held by ``link``, unless the tenant already
        has ``limit`` conversations with a live link (``Refusal.LIMIT``)."""

    async def resume_conversation(
        self,
        owner: Owner,
        session_id: str,
        link: ConversationLink,
        *,
        limit: int,
        now: datetime.datetime,
        left_after: datetime.datetime,
    ) -> Conversation | Refusal:
        """Hold the owner's conversation with ``link`` too: ``Refusal.GONE`` if it
        is unknown, someone else's, ended, or left before ``left_after``;
        ``Refusal.LIMIT`` if nothing holds it and the tenant is at ``limit``."""

    async def leave_conversation(self, connection_id: str, now: datetime.datetime) -> None:
        """The connection let go; a conversation nobody holds is ``left_at`` now."""

    async def end_conversation(
        self, owner: Owner, session_id: str, reason: str, now: datetime.datetime
    ) -> Conversation | None:
        """End it for good (None if it is unknown or ended already)."""

    async def renew_conversation_links(
        self,
        node: str,
        links: list[ConversationLink],
        live_until: datetime.datetime,
        *,
        opening: set[str] = ...,  # type: ignore[assignment]
    ) -> None:
        """This process holds ``links`` until ``live_until``: a held link another
        process removed as lapsed (during an outage) comes back; the others of
        ``node`` go, but for those of the connections ``opening`` (being written)."""

    async def get_conversation(self, session_id: str) -> Conversation | None: ...


# -- API tokens: long-lived credentials for REST and /v1/* (docs/api-tokens.md) -----------------


@attrs.frozen
class ApiToken:
    """An API token as stored: never its secret, only who it speaks for."""

    token_id: str
    owner: Owner
    name: str
    roles: tuple[str, ...]
    created_at: datetime.datetime
    expires_at: datetime.datetime | None = None
    revoked_at: datetime.datetime | None = None


class ApiTokenStore(Protocol):
    """The API-token part of ``Store`` (``storage.sql_api_tokens``)."""

    async def add_api_token(self, token: ApiToken, secret_hash: str) -> None:
        """Store ``token`` under the hash of its secret."""

    async def list_api_tokens(self, owner: Owner) -> list[ApiToken]:
        """The owner's tokens that are not revoked, oldest first."""

    async def revoke_api_token(
        self, owner: Owner, token_id: str, now: datetime.datetime
    ) -> ApiToken | None:
        """Revoke the owner's token; None if the owner has no such token (left alone)."""

    async def find_api_token(self, secret_hash: str) -> ApiToken | None:
        """The token with this secret's hash, revoked or not; None if there is none."""
