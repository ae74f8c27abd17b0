"""Every store operation, written once in the SQL that SQLite and PostgreSQL share.

``SqlStore`` implements ``Store``; ``SqliteStore`` and ``PostgresStore`` say how
to reach their database (``_run``: one transaction, in a worker thread, so the
trio loop never blocks) and supply a ``Dialect`` for what differs: how a time
and a flag are stored, what a duplicate key raises. Statements use ``?``
placeholders; the PostgreSQL store translates them for psycopg.

Tasks are claimed with leases (issue 11). Any process may run any queued task,
exactly once: ``claim_task`` moves the oldest queued task to ``running`` with
this process as its lease owner until ``lease_until``, in one conditional
update, so two processes never claim the same task. The runner renews the lease
(``renew_lease``); a task whose lease lapsed (its process died) is failed by
whichever process notices first (``expire_leases``). Finishing a task is
conditional on still holding its lease, so a runner that lost its lease cannot
overwrite what another process decided.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .base import Accepted, Message, Note, Owner, Session, StoreError, Task, TaskState
from .sql_api_tokens import ApiTokenQueries
from .sql_conversations import ConversationQueries
from .sql_discussions import DiscussionQueries
from .sql_documents import DocumentQueries
from .sql_nodes import NodeQueries
from .sql_notifications import NotificationQueries
from .sql_reminders import ReminderQueries
from .sql_requests import RequestQueries
from .sql_schedules import ScheduleQueries
from .sql_voice import VoiceQueries

T = TypeVar("T")

# Each row reader (``_session``, ``_message``, ``_task``) reads its columns in
# this order, so every SELECT and INSERT names them through these constants.
SESSION_COLUMNS = "session_id, tenant_id, user_id, title, created_at, updated_at, agent_id"
MESSAGE_COLUMNS = (
    "message_id, session_id, tenant_id, user_id, role, content, tool_calls, task_id, created_at, "
    "spoken, metadata"
)
TASK_COLUMNS = (
    "task_id, session_id, tenant_id, user_id, agent_id, message_id, state, is_streaming, "
    "channel_id, client_message_id, created_at, started_at, finished_at, error, duration_ms, "
    "tokens_used, result_message_id, cancelled_by, lease_owner, lease_until, kind, "
    "cancel_requested_by"
)
INSERTED_TASK_COLUMNS = TASK_COLUMNS.replace(", cancel_requested_by", "")


class Dialect(Protocol):
    duplicate: tuple[type[Exception], ...]
    """What inserting a second row with the same unique key raises."""

    def time_in(self, moment: datetime.datetime | None) -> Any: ...

    def time_out(self, value: Any) -> datetime.datetime | None: ...

    def flag_in(self, value: bool) -> Any: ...


class Database(Protocol):
    """A connection in a transaction: ``execute`` with ``?`` placeholders."""

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any: ...


class SqlStore(
    ApiTokenQueries,
    ConversationQueries,
    DocumentQueries,
    NodeQueries,
    DiscussionQueries,
    RequestQueries,
    NotificationQueries,
    ReminderQueries,
    ScheduleQueries,
    VoiceQueries,
):
    dialect: Dialect

    async def _run(self, work: Callable[[Database], T]) -> T:
        """``work`` in a worker thread, as one transaction."""
        raise NotImplementedError

    async def ping(self) -> None:
        """Readiness: raises unless the database answers now."""
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    # -- sessions and messages --------------------------------------------------------------------

    async def accept_message(self, *, session: Session, message: Message, task: Task) -> Accepted:
        try:
            return await self._run(lambda db: self._accept(db, session, message, task))
        except self.dialect.duplicate:
            # Two processes took the same retry (the same client message id) at
            # once; the unique index let one of them in: answer with its task.
            earlier = await self._run(lambda db: self._earlier(db, task))
            if earlier is None:
                raise
            return earlier

    def _accept(self, db: Database, session: Session, message: Message, task: Task) -> Accepted:
        earlier = self._earlier(db, task)
        if earlier is not None:
            return earlier
        owner = task.owner
        existing = db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?",
            (session.session_id,),
        ).fetchone()
        if existing is not None and (existing[1], existing[2]) != (owner.tenant_id, owner.user_id):
            raise StoreError(f"Session '{session.session_id}' belongs to someone else.")
        created = existing is None and self._insert_session(db, session)
        if existing is None and not created:
            # Another process created it a moment ago: it must be this owner's.
            existing = db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?",
                (session.session_id,),
            ).fetchone()
            if (existing[1], existing[2]) != (owner.tenant_id, owner.user_id):
                raise StoreError(f"Session '{session.session_id}' belongs to someone else.")
        stored_session = session if created else self._session(existing)
        self._insert_message(db, message)
        self._insert_task(db, task)
        return Accepted(stored_session, message, task, True, created)

    def _earlier(self, db: Database, task: Task) -> Accepted | None:
        """What an earlier message with the same client message id made, if any."""
        if task.client_message_id is None:
            return None
        owner = task.owner
        row = db.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks "
            "WHERE tenant_id = ? AND user_id = ? AND client_message_id = ?",
            (owner.tenant_id, owner.user_id, task.client_message_id),
        ).fetchone()
        if row is None:
            return None
        earlier = self._task(row)
        return Accepted(
            session=self._get_session(db, owner, earlier.session_id),  # type: ignore[arg-type]
            message=self._get_message(db, earlier.message_id),  # type: ignore[arg-type]
            task=earlier,
            created=False,
            session_created=False,
        )

    async def get_session(self, owner: Owner, session_id: str) -> Session | None:
        return await self._run(lambda db: self._get_session(db, owner, session_id))

    async def list_sessions(self, owner: Owner) -> list[Session]:
        def work(db: Database) -> list[Session]:
            rows = db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions "
                "WHERE tenant_id = ? AND user_id = ? ORDER BY updated_at DESC",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [self._session(row) for row in rows]

        return await self._run(work)

    async def update_session(
        self, owner: Owner, session_id: str, *, updated_at: datetime.datetime, title: str | None
    ) -> Session | None:
        def work(db: Database) -> Session | None:
            db.execute(
                "UPDATE sessions SET updated_at = ?, title = COALESCE(?, title) "
                "WHERE session_id = ? AND tenant_id = ? AND user_id = ?",
                (self.dialect.time_in(updated_at), title, session_id, *_owned(owner)),
            )
            return self._get_session(db, owner, session_id)

        return await self._run(work)

    async def list_messages(
        self, owner: Owner, session_id: str, *, limit: int, before: str | None
    ) -> list[Message]:
        def work(db: Database) -> list[Message]:
            bound = ""
            parameters: list[Any] = [session_id, *_owned(owner)]
            if before is not None:
                bound = "AND seq < (SELECT seq FROM messages WHERE message_id = ?)"
                parameters.append(before)
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND tenant_id = ? "
                f"AND user_id = ? {bound} ORDER BY seq DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
            return [self._message(row) for row in reversed(rows)]

        return await self._run(work)

    async def get_message(self, owner: Owner, message_id: str) -> Message | None:
        def work(db: Database) -> Message | None:
            message = self._get_message(db, message_id)
            return message if message is not None and message.owner == owner else None

        return await self._run(work)

    # -- tasks ------------------------------------------------------------------------------------

    async def get_task(self, owner: Owner, task_id: str) -> Task | None:
        task = await self.get_task_by_id(task_id)
        return task if task is not None and task.owner == owner else None

    async def get_task_by_id(self, task_id: str) -> Task | None:
        return await self._run(lambda db: self._get_task(db, task_id))

    async def list_tasks(
        self,
        owner: Owner,
        *,
        states: tuple[TaskState, ...] = (),
        limit: int = 50,
        before: str | None = None,
    ) -> list[Task]:
        """The owner's tasks, newest first; only those in ``states`` if given;
        ``before`` is a task id: only tasks created before it."""

        def work(db: Database) -> list[Task]:
            conditions, parameters = "tenant_id = ? AND user_id = ?", [*_owned(owner)]
            if states:
                conditions += f" AND state IN ({', '.join('?' for _ in states)})"
                parameters += [state.value for state in states]
            if before is not None:
                conditions += " AND created_at < (SELECT created_at FROM tasks WHERE task_id = ?)"
                parameters.append(before)
            rows = db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE {conditions} "
                "ORDER BY created_at DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
            return [self._task(row) for row in rows]

        return await self._run(work)

    async def latest_session_task(self, owner: Owner, session_id: str) -> Task | None:
        """The newest task of the owner's session, None for a session without one."""

        def work(db: Database) -> Task | None:
            row = db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = ? AND user_id = ? "
                "AND session_id = ? ORDER BY created_at DESC LIMIT 1",
                (*_owned(owner), session_id),
            ).fetchone()
            return None if row is None else self._task(row)

        return await self._run(work)

    async def list_session_tasks(self, owner: Owner, session_id: str, *, limit: int) -> list[Task]:
        """The owner's session's tasks, oldest first (the newest ``limit`` of them)."""

        def work(db: Database) -> list[Task]:
            rows = db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = ? AND tenant_id = ? "
                "AND user_id = ? ORDER BY created_at DESC, task_id DESC LIMIT ?",
                (session_id, *_owned(owner), limit),
            ).fetchall()
            return [self._task(row) for row in reversed(rows)]

        return await self._run(work)

    async def create_session(self, session: Session) -> Session:
        """Store a new session (with no message yet); StoreError if its id is taken."""

        def work(db: Database) -> Session:
            if not self._insert_session(db, session):
                raise StoreError(f"Session '{session.session_id}' exists already.")
            return session

        return await self._run(work)

    async def count_queued(self) -> int:
        def work(db: Database) -> int:
            row = db.execute("SELECT COUNT(*) FROM tasks WHERE state = ?", ("queued",)).fetchone()
            return int(row[0])

        return await self._run(work)

    async def claim_task(
        self, node: str, now: datetime.datetime, lease_until: datetime.datetime
    ) -> Task | None:
        """The oldest queued task, now running here until ``lease_until``; None
        if none. One statement: two processes cannot both take a task. A task
        reserved for another process (the one that accepted it) is left to it
        until its reservation ends."""

        def work(db: Database) -> Task | None:
            moment = self.dialect.time_in(now)
            row = db.execute(
                "UPDATE tasks SET state = ?, started_at = COALESCE(started_at, ?), "
                "lease_owner = ?, lease_until = ? "
                "WHERE state = ? AND task_id = (SELECT task_id FROM tasks WHERE state = ? "
                "AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?) "
                f"ORDER BY created_at LIMIT 1{self._skip_locked()}) RETURNING task_id",
                (
                    TaskState.RUNNING.value,
                    moment,
                    node,
                    self.dialect.time_in(lease_until),
                    TaskState.QUEUED.value,
                    TaskState.QUEUED.value,
                    node,
                    moment,
                ),
            ).fetchone()
            return None if row is None else self._get_task(db, row[0])

        return await self._run(work)

    def _skip_locked(self) -> str:
        """PostgreSQL: concurrent claimers pass over a row another one is taking."""
        return ""

    def _for_update(self) -> str:
        """PostgreSQL: the rows selected are locked until the transaction ends.
        SQLite needs nothing: it runs one writing transaction at a time."""
        return ""

    async def renew_lease(self, task_id: str, node: str, lease_until: datetime.datetime) -> bool:
        """Extend this process's lease; False if it no longer holds it."""

        def work(db: Database) -> bool:
            return db.execute(
                "UPDATE tasks SET lease_until = ? "
                "WHERE task_id = ? AND state = ? AND lease_owner = ?",
                (self.dialect.time_in(lease_until), task_id, TaskState.RUNNING.value, node),
            ).rowcount == 1

        return await self._run(work)

    async def expire_leases(self, now: datetime.datetime, error: str) -> list[Task]:
        """Running tasks whose lease lapsed (their process died) fail with ``error``."""

        def work(db: Database) -> list[Task]:
            rows = db.execute(
                "SELECT task_id FROM tasks WHERE state = ? "
                "AND (lease_until IS NULL OR lease_until < ?)",
                (TaskState.RUNNING.value, self.dialect.time_in(now)),
            ).fetchall()
            expired = []
            for (task_id,) in rows:
                task = self._finish(db, task_id, TaskState.FAILED, error, None, now, lapsed=now)
                if task is not None:
                    expired.append(task)
            return expired

        return await self._run(work)

    async def request_cancel(self, task_id: str, by: str) -> Task | None:
        """A queued or waiting task is cancelled now (and returned); a running
        one is marked, for its runner to stop (None)."""

        def work(db: Database) -> Task | None:
            now = datetime.datetime.now(datetime.UTC)
            task = self._finish(
                db, task_id, TaskState.CANCELLED, None, by, now, only_from=TaskState.QUEUED
            ) or self._finish(
                db, task_id, TaskState.CANCELLED, None, by, now, only_from=TaskState.WAITING
            )
            if task is None:
                db.execute(
                    "UPDATE tasks SET cancel_requested_by = COALESCE(cancel_requested_by, ?) "
                    "WHERE task_id = ? AND state = ?",
                    (by, task_id, TaskState.RUNNING.value),
                )
            return task

        return await self._run(work)

    async def cancel_requested(self, task_id: str) -> str | None:
        def work(db: Database) -> str | None:
            row = db.execute(
                "SELECT cancel_requested_by FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(work)

    async def complete_task(
        self, task_id: str, node: str, *, reply: Message, tokens_used: int
    ) -> Task | None:
        """running -> completed, with the agent's final message stored with it;
        None if this process no longer holds the task's lease."""

        return await self._run(lambda db: self._complete(db, task_id, node, reply, tokens_used))

    def _complete(
        self, db: Database, task_id: str, node: str, reply: Message, tokens_used: int
    ) -> Task | None:
        """``complete_task`` in a transaction (a discussion stores its verdict in the same one)."""
        task = self._get_task(db, task_id)
        if task is None or task.state is not TaskState.RUNNING or task.lease_owner != node:
            return None
        self._insert_message(db, reply)
        started = task.started_at or reply.created_at
        db.execute(
            "UPDATE tasks SET state = ?, finished_at = ?, duration_ms = ?, tokens_used = ?, "
            "result_message_id = ? WHERE task_id = ?",
            (
                TaskState.COMPLETED.value,
                self.dialect.time_in(reply.created_at),
                _milliseconds(reply.created_at - started),
                tokens_used,
                reply.message_id,
                task_id,
            ),
        )
        return self._get_task(db, task_id)

    async def finish_task(
        self,
        task_id: str,
        state: TaskState,
        *,
        error: str | None = None,
        cancelled_by: str | None = None,
        node: str | None = None,
        finished_at: datetime.datetime | None = None,
    ) -> Task | None:
        """-> failed or cancelled; None if it had finished already (or, with
        ``node``, if that process no longer holds its lease)."""

        def work(db: Database) -> Task | None:
            end = finished_at or datetime.datetime.now(datetime.UTC)
            return self._finish(db, task_id, state, error, cancelled_by, end, node=node)

        return await self._run(work)

    def _finish(
        self,
        db: Database,
        task_id: str,
        state: TaskState,
        error: str | None,
        cancelled_by: str | None,
        end: datetime.datetime,
        *,
        node: str | None = None,
        only_from: TaskState | None = None,
        lapsed: datetime.datetime | None = None,
    ) -> Task | None:
        task = self._get_task(db, task_id)
        if task is None or task.state.finished:
            return None
        if only_from is not None and task.state is not only_from:
            return None
        conditions, parameters = "task_id = ? AND state = ?", [task_id, task.state.value]
        if node is not None:
            conditions += " AND lease_owner = ?"
            parameters.append(node)
        if lapsed is not None:
            conditions += " AND (lease_until IS NULL OR lease_until < ?)"
            parameters.append(self.dialect.time_in(lapsed))
        started = task.started_at or end
        changed = db.execute(
            "UPDATE tasks SET state = ?, finished_at = ?, duration_ms = ?, error = ?, "
            f"cancelled_by = ? WHERE {conditions}",
            (
                state.value,
                self.dialect.time_in(end),
                _milliseconds(end - started),
                error,
                cancelled_by,
                *parameters,
            ),
        ).rowcount
        return self._get_task(db, task_id) if changed else None

    # -- notes (the built-in agent's tool) --------------------------------------------------------

    async def add_note(self, note: Note) -> None:
        def work(db: Database) -> None:
            db.execute(
                "INSERT INTO notes (note_id, tenant_id, user_id, text, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    note.note_id,
                    *_owned(note.owner),
                    note.text,
                    self.dialect.time_in(note.created_at),
                ),
            )

        await self._run(work)

    async def delete_note(
        self, owner: Owner, *, note_id: str | None = None, text: str | None = None
    ) -> Note | None:
        """Delete one of ``owner``'s notes, by id or by exact text (the oldest
        with that text); the note, or None if there is none."""

        def work(db: Database) -> Note | None:
            column, value = ("note_id", note_id) if note_id is not None else ("text", text)
            row = db.execute(
                f"SELECT note_id, text, created_at FROM notes WHERE tenant_id = ? "
                f"AND user_id = ? AND {column} = ? ORDER BY created_at LIMIT 1",
                (*_owned(owner), value),
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM notes WHERE note_id = ?", (row[0],))
            return Note(row[0], owner, row[1], self.dialect.time_out(row[2]))

        return await self._run(work)

    async def list_notes(self, owner: Owner) -> list[Note]:
        def work(db: Database) -> list[Note]:
            rows = db.execute(
                "SELECT note_id, text, created_at FROM notes WHERE tenant_id = ? AND user_id = ? "
                "ORDER BY created_at",
                _owned(owner),
            ).fetchall()
            return [Note(row[0], owner, row[1], self.dialect.time_out(row[2])) for row in rows]

        return await self._run(work)

    # -- rows <-> records -------------------------------------------------------------------------

    def _insert_session(self, db: Database, session: Session) -> bool:
        """False if a session with that id exists already (made meanwhile)."""
        return db.execute(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({_placeholders(SESSION_COLUMNS)}) "
            "ON CONFLICT (session_id) DO NOTHING",
            (
                session.session_id,
                *_owned(session.owner),
                session.title,
                self.dialect.time_in(session.created_at),
                self.dialect.time_in(session.updated_at),
                session.agent_id,
            ),
        ).rowcount == 1

    def _session(self, row: tuple) -> Session:
        time_out = self.dialect.time_out
        return Session(
            row[0], Owner(row[1], row[2]), row[3], time_out(row[4]), time_out(row[5]), row[6]
        )

    def _get_session(self, db: Database, owner: Owner, session_id: str) -> Session | None:
        row = db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions "
            "WHERE session_id = ? AND tenant_id = ? AND user_id = ?",
            (session_id, *_owned(owner)),
        ).fetchone()
        return None if row is None else self._session(row)

    def _insert_message(self, db: Database, message: Message) -> None:
        tool_calls = None if message.tool_calls is None else json.dumps(list(message.tool_calls))
        db.execute(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_placeholders(MESSAGE_COLUMNS)})",
            (
                message.message_id,
                message.session_id,
                *_owned(message.owner),
                message.role,
                message.content,
                tool_calls,
                message.task_id,
                self.dialect.time_in(message.created_at),
                self.dialect.flag_in(message.spoken),
                None if message.metadata is None else json.dumps(message.metadata),
            ),
        )

    def _message(self, row: tuple) -> Message:
        tool_calls = None if row[6] is None else tuple(json.loads(row[6]))
        return Message(
            message_id=row[0],
            session_id=row[1],
            owner=Owner(row[2], row[3]),
            role=row[4],
            content=row[5],
            tool_calls=tool_calls,
            task_id=row[7],
            created_at=self.dialect.time_out(row[8]),
            spoken=bool(row[9]),
            metadata=None if row[10] is None else json.loads(row[10]),
        )

    def _get_message(self, db: Database, message_id: str) -> Message | None:
        row = db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else self._message(row)

    def _insert_task(self, db: Database, task: Task) -> None:
        time_in = self.dialect.time_in
        db.execute(
            f"INSERT INTO tasks ({INSERTED_TASK_COLUMNS}) "
            f"VALUES ({_placeholders(INSERTED_TASK_COLUMNS)})",
            (
                task.task_id,
                task.session_id,
                *_owned(task.owner),
                task.agent_id,
                task.message_id,
                task.state.value,
                self.dialect.flag_in(task.is_streaming),
                task.channel_id,
                task.client_message_id,
                time_in(task.created_at),
                time_in(task.started_at),
                time_in(task.finished_at),
                task.error,
                task.duration_ms,
                task.tokens_used,
                task.result_message_id,
                task.cancelled_by,
                task.lease_owner,
                time_in(task.lease_until),
                task.kind,
            ),
        )

    def _task(self, row: tuple) -> Task:
        time_out = self.dialect.time_out
        return Task(
            task_id=row[0],
            session_id=row[1],
            owner=Owner(row[2], row[3]),
            agent_id=row[4],
            message_id=row[5],
            state=TaskState(row[6]),
            is_streaming=bool(row[7]),
            channel_id=row[8],
            client_message_id=row[9],
            created_at=time_out(row[10]),
            started_at=time_out(row[11]),
            finished_at=time_out(row[12]),
            error=row[13],
            duration_ms=row[14],
            tokens_used=row[15],
            result_message_id=row[16],
            cancelled_by=row[17],
            lease_owner=row[18],
            lease_until=time_out(row[19]),
            kind=row[20],
            cancel_requested_by=row[21],
        )

    def _get_task(self, db: Database, task_id: str) -> Task | None:
        row = db.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        return None if row is None else self._task(row)


def _owned(owner: Owner) -> tuple[str, str]:
    return owner.tenant_id, owner.user_id


def _placeholders(columns: str) -> str:
    """One ``?`` per column in ``columns``."""
    return ", ".join("?" for _ in columns.split(","))


def _milliseconds(duration: datetime.timedelta) -> int:
    return int(duration.total_seconds() * 1000)
