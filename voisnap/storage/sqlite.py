"""The embedded store: one SQLite file in the data dir.

The trio loop never blocks on the database: every call runs in a worker
thread (``trio.to_thread``), one at a time (a capacity limiter of one), on one
connection in WAL mode. Each method is one transaction, so "store the message,
then announce it" holds even if the process dies in between.

The schema is versioned from the first release: ``PRAGMA user_version`` says
which migrations have run, and ``MIGRATIONS`` holds them, in order, forever.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from .base import Accepted, Message, Note, Owner, Session, StoreError, Task, TaskState

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions, messages, tasks, notes
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        title TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX sessions_by_owner ON sessions (tenant_id, user_id, updated_at);
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL REFERENCES sessions (session_id),
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        tool_calls TEXT,
        task_id TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_session ON messages (session_id, seq);
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (session_id),
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        state TEXT NOT NULL,
        is_streaming INTEGER NOT NULL,
        channel_id TEXT,
        client_message_id TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        error TEXT,
        duration_ms INTEGER,
        tokens_used INTEGER,
        result_message_id TEXT,
        cancelled_by TEXT
    );
    CREATE UNIQUE INDEX tasks_by_client_message
        ON tasks (tenant_id, user_id, client_message_id) WHERE client_message_id IS NOT NULL;
    CREATE INDEX tasks_by_state ON tasks (state, created_at);
    CREATE TABLE notes (
        note_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX notes_by_owner ON notes (tenant_id, user_id, created_at);
    """,
)

# Each row reader (``_session``, ``_message``, ``_task``) reads its columns in
# this order, so every SELECT and INSERT names them through these constants.
SESSION_COLUMNS = "session_id, tenant_id, user_id, title, created_at, updated_at"
MESSAGE_COLUMNS = (
    "message_id, session_id, tenant_id, user_id, role, content, tool_calls, task_id, created_at"
)
TASK_COLUMNS = (
    "task_id, session_id, tenant_id, user_id, agent_id, message_id, state, is_streaming, "
    "channel_id, client_message_id, created_at, started_at, finished_at, error, duration_ms, "
    "tokens_used, result_message_id, cancelled_by"
)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._one_at_a_time = trio.CapacityLimiter(1)

    # -- plumbing ---------------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in a worker thread, as one transaction."""

        def transaction() -> T:
            assert self._db is not None, "open() the store first"
            with self._db:
                return work(self._db)

        return await trio.to_thread.run_sync(transaction, limiter=self._one_at_a_time)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 5000")
            migrate(db)
            db.isolation_level = ""  # back to implicit transactions, ended by `with db`
            return db

        self._db = await trio.to_thread.run_sync(connect, limiter=self._one_at_a_time)

    async def aclose(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await trio.to_thread.run_sync(db.close, limiter=self._one_at_a_time)

    # -- sessions and messages --------------------------------------------------------------------

    async def accept_message(self, *, session: Session, message: Message, task: Task) -> Accepted:
        def work(db: sqlite3.Connection) -> Accepted:
            owner = task.owner
            if task.client_message_id is not None:
                row = db.execute(
                    f"SELECT {TASK_COLUMNS} FROM tasks "
                    "WHERE tenant_id = ? AND user_id = ? AND client_message_id = ?",
                    (owner.tenant_id, owner.user_id, task.client_message_id),
                ).fetchone()
                if row is not None:
                    earlier = _task(row)
                    return Accepted(
                        session=_get_session(db, owner, earlier.session_id),  # type: ignore[arg-type]
                        message=_get_message(db, earlier.message_id),  # type: ignore[arg-type]
                        task=earlier,
                        created=False,
                        session_created=False,
                    )
            existing = db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?",
                (session.session_id,),
            ).fetchone()
            if existing is not None and (existing[1], existing[2]) != (
                owner.tenant_id,
                owner.user_id,
            ):
                raise StoreError(f"Session '{session.session_id}' belongs to someone else.")
            if existing is None:
                _insert_session(db, session)
            stored_session = session if existing is None else _session(existing)
            _insert_message(db, message)
            _insert_task(db, task)
            return Accepted(stored_session, message, task, True, existing is None)

        return await self._run(work)

    async def get_session(self, owner: Owner, session_id: str) -> Session | None:
        return await self._run(lambda db: _get_session(db, owner, session_id))

    async def list_sessions(self, owner: Owner) -> list[Session]:
        def work(db: sqlite3.Connection) -> list[Session]:
            rows = db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions "
                "WHERE tenant_id = ? AND user_id = ? ORDER BY updated_at DESC",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [_session(row) for row in rows]

        return await self._run(work)

    async def update_session(
        self, owner: Owner, session_id: str, *, updated_at: datetime.datetime, title: str | None
    ) -> Session | None:
        def work(db: sqlite3.Connection) -> Session | None:
            db.execute(
                "UPDATE sessions SET updated_at = ?, title = COALESCE(?, title) "
                "WHERE session_id = ? AND tenant_id = ? AND user_id = ?",
                (_text(updated_at), title, session_id, owner.tenant_id, owner.user_id),
            )
            return _get_session(db, owner, session_id)

        return await self._run(work)

    async def list_messages(
        self, owner: Owner, session_id: str, *, limit: int, before: str | None
    ) -> list[Message]:
        def work(db: sqlite3.Connection) -> list[Message]:
            bound = ""
            parameters: list[Any] = [session_id, owner.tenant_id, owner.user_id]
            if before is not None:
                bound = "AND seq < (SELECT seq FROM messages WHERE message_id = ?)"
                parameters.append(before)
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND tenant_id = ? "
                f"AND user_id = ? {bound} ORDER BY seq DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
            return [_message(row) for row in reversed(rows)]

        return await self._run(work)

    async def get_message(self, owner: Owner, message_id: str) -> Message | None:
        def work(db: sqlite3.Connection) -> Message | None:
            message = _get_message(db, message_id)
            return message if message is not None and message.owner == owner else None

        return await self._run(work)

    # -- tasks ------------------------------------------------------------------------------------

    async def get_task(self, owner: Owner, task_id: str) -> Task | None:
        task = await self.get_task_by_id(task_id)
        return task if task is not None and task.owner == owner else None

    async def get_task_by_id(self, task_id: str) -> Task | None:
        return await self._run(lambda db: _get_task(db, task_id))

    async def start_task(self, task_id: str, started_at: datetime.datetime) -> Task | None:
        def work(db: sqlite3.Connection) -> Task | None:
            changed = db.execute(
                "UPDATE tasks SET state = ?, started_at = ? WHERE task_id = ? AND state = ?",
                (TaskState.RUNNING.value, _text(started_at), task_id, TaskState.QUEUED.value),
            ).rowcount
            return _get_task(db, task_id) if changed else None

        return await self._run(work)

    async def complete_task(self, task_id: str, *, reply: Message, tokens_used: int) -> Task:
        def work(db: sqlite3.Connection) -> Task:
            _insert_message(db, reply)
            task = _get_task(db, task_id)
            assert task is not None and task.started_at is not None
            duration = reply.created_at - task.started_at
            db.execute(
                "UPDATE tasks SET state = ?, finished_at = ?, duration_ms = ?, tokens_used = ?, "
                "result_message_id = ? WHERE task_id = ?",
                (
                    TaskState.COMPLETED.value,
                    _text(reply.created_at),
                    int(duration.total_seconds() * 1000),
                    tokens_used,
                    reply.message_id,
                    task_id,
                ),
            )
            return _get_task(db, task_id)  # type: ignore[return-value]

        return await self._run(work)

    async def finish_task(
        self,
        task_id: str,
        state: TaskState,
        *,
        error: str | None = None,
        cancelled_by: str | None = None,
        finished_at: datetime.datetime | None = None,
    ) -> Task | None:
        def work(db: sqlite3.Connection) -> Task | None:
            task = _get_task(db, task_id)
            if task is None or task.state.finished:
                return None
            end = finished_at or datetime.datetime.now(datetime.UTC)
            started = task.started_at or end
            db.execute(
                "UPDATE tasks SET state = ?, finished_at = ?, duration_ms = ?, error = ?, "
                "cancelled_by = ? WHERE task_id = ?",
                (
                    state.value,
                    _text(end),
                    int((end - started).total_seconds() * 1000),
                    error,
                    cancelled_by,
                    task_id,
                ),
            )
            return _get_task(db, task_id)

        return await self._run(work)

    async def recover_tasks(self, error: str) -> list[Task]:
        def work(db: sqlite3.Connection) -> list[Task]:
            now = _text(datetime.datetime.now(datetime.UTC))
            db.execute(
                "UPDATE tasks SET state = ?, error = ?, finished_at = ? WHERE state = ?",
                (TaskState.FAILED.value, error, now, TaskState.RUNNING.value),
            )
            rows = db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE state = ? ORDER BY created_at",
                (TaskState.QUEUED.value,),
            ).fetchall()
            return [_task(row) for row in rows]

        return await self._run(work)

    # -- notes (the built-in agent's tool) --------------------------------------------------------

    async def add_note(self, note: Note) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO notes (note_id, tenant_id, user_id, text, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    note.note_id,
                    note.owner.tenant_id,
                    note.owner.user_id,
                    note.text,
                    _text(note.created_at),
                ),
            )

        await self._run(work)

    async def list_notes(self, owner: Owner) -> list[Note]:
        def work(db: sqlite3.Connection) -> list[Note]:
            rows = db.execute(
                "SELECT note_id, text, created_at FROM notes WHERE tenant_id = ? AND user_id = ? "
                "ORDER BY created_at",
                (owner.tenant_id, owner.user_id),
            ).fetchall()
            return [Note(row[0], owner, row[1], _time(row[2])) for row in rows]

        return await self._run(work)


# -- schema ---------------------------------------------------------------------------------


def migrate(db: sqlite3.Connection) -> int:
    """Run the migrations this file has not seen yet; the resulting version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"The database is at schema version {version}, newer than this voisnap "
            f"({len(MIGRATIONS)}): upgrade voisnap."
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    return len(MIGRATIONS)


# -- rows <-> records -------------------------------------------------------------------------


def _text(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat()


def _placeholders(columns: str) -> str:
    """One ``?`` per column in ``columns``."""
    return ", ".join("?" for _ in columns.split(","))


def _time(text: str | None) -> datetime.datetime | None:
    return None if text is None else datetime.datetime.fromisoformat(text)


def _insert_session(db: sqlite3.Connection, session: Session) -> None:
    db.execute(
        f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({_placeholders(SESSION_COLUMNS)})",
        (
            session.session_id,
            session.owner.tenant_id,
            session.owner.user_id,
            session.title,
            _text(session.created_at),
            _text(session.updated_at),
        ),
    )


def _session(row: tuple) -> Session:
    return Session(row[0], Owner(row[1], row[2]), row[3], _time(row[4]), _time(row[5]))


def _get_session(db: sqlite3.Connection, owner: Owner, session_id: str) -> Session | None:
    row = db.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions "
        "WHERE session_id = ? AND tenant_id = ? AND user_id = ?",
        (session_id, owner.tenant_id, owner.user_id),
    ).fetchone()
    return None if row is None else _session(row)


def _insert_message(db: sqlite3.Connection, message: Message) -> None:
    tool_calls = None if message.tool_calls is None else json.dumps(list(message.tool_calls))
    db.execute(
        f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_placeholders(MESSAGE_COLUMNS)})",
        (
            message.message_id,
            message.session_id,
            message.owner.tenant_id,
            message.owner.user_id,
            message.role,
            message.content,
            tool_calls,
            message.task_id,
            _text(message.created_at),
        ),
    )


def _message(row: tuple) -> Message:
    tool_calls = None if row[6] is None else tuple(json.loads(row[6]))
    return Message(
        message_id=row[0],
        session_id=row[1],
        owner=Owner(row[2], row[3]),
        role=row[4],
        content=row[5],
        tool_calls=tool_calls,
        task_id=row[7],
        created_at=_time(row[8]),
    )


def _get_message(db: sqlite3.Connection, message_id: str) -> Message | None:
    row = db.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?",
        (message_id,),
    ).fetchone()
    return None if row is None else _message(row)


def _insert_task(db: sqlite3.Connection, task: Task) -> None:
    db.execute(
        f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({_placeholders(TASK_COLUMNS)})",
        (
            task.task_id,
            task.session_id,
            task.owner.tenant_id,
            task.owner.user_id,
            task.agent_id,
            task.message_id,
            task.state.value,
            int(task.is_streaming),
            task.channel_id,
            task.client_message_id,
            _text(task.created_at),
            _text(task.started_at),
            _text(task.finished_at),
            task.error,
            task.duration_ms,
            task.tokens_used,
            task.result_message_id,
            task.cancelled_by,
        ),
    )


def _task(row: tuple) -> Task:
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
        created_at=_time(row[10]),
        started_at=_time(row[11]),
        finished_at=_time(row[12]),
        error=row[13],
        duration_ms=row[14],
        tokens_used=row[15],
        result_message_id=row[16],
        cancelled_by=row[17],
    )


def _get_task(db: sqlite3.Connection, task_id: str) -> Task | None:
    row = db.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None else _task(row)
