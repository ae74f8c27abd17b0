"""The embedded store: one SQLite file in the data dir.

The trio loop never blocks on the database: every call runs in a worker
thread (``trio.to_thread``), one at a time (a capacity limiter of one), on one
connection. Each method is one transaction, so "store the message, then
announce it" holds even if the process dies in between. The operations
themselves are ``SqlStore``'s, shared with PostgreSQL.

Several processes on one host may share the file (``--workers N``): WAL mode
lets readers and one writer work at once, ``busy_timeout`` makes a writer wait
for another's transaction instead of failing, and tasks are claimed with a
conditional update (``SqlStore.claim_task``), so each runs once.

The schema is versioned from the first release: ``PRAGMA user_version`` says
which migrations have run, and ``MIGRATIONS`` holds them, in order, forever.
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from .base import Owner, StoreError, StoreUnavailable
from .sql import Database, SqlStore
from .sql_documents import fts5_query

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
    # 2: leases: any process may run any queued task, exactly once
    """
    ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
    ALTER TABLE tasks ADD COLUMN lease_until TEXT;
    ALTER TABLE tasks ADD COLUMN cancel_requested_by TEXT;
    CREATE INDEX tasks_by_lease ON tasks (state, lease_until);
    UPDATE tasks SET lease_until = COALESCE(started_at, created_at) WHERE state = 'running';
    """,
    # 3: approvals and info requests; a waiting task keeps its transcript
    """
    ALTER TABLE tasks ADD COLUMN transcript TEXT;
    CREATE TABLE approvals (
        approval_id TEXT PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks (task_id),
        session_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        tool_name TEXT NOT NULL,
        params TEXT NOT NULL,
        reason TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        outcome_detail TEXT,
        resolved_at TEXT,
        resolved_by TEXT
    );
    CREATE INDEX approvals_by_task ON approvals (task_id);
    CREATE INDEX approvals_by_owner ON approvals (tenant_id, user_id, status, created_at);
    CREATE INDEX approvals_by_expiry ON approvals (status, expires_at);
    CREATE TABLE info_requests (
        info_id TEXT PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks (task_id),
        session_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        question TEXT NOT NULL,
        options TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        response TEXT,
        resolved_at TEXT,
        resolved_by TEXT
    );
    CREATE INDEX info_requests_by_task ON info_requests (task_id);
    CREATE INDEX info_requests_by_owner ON info_requests (tenant_id, user_id, status, created_at);
    CREATE INDEX info_requests_by_expiry ON info_requests (status, expires_at);
    CREATE INDEX tasks_by_owner ON tasks (tenant_id, user_id, created_at);
    """,
    # 4: discussion runs (a task of kind 'discussion'), the notification feed,
    # insight cards, and claims (what one process of several does once)
    """
    ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat';
    CREATE TABLE discussions (
        run_id TEXT PRIMARY KEY REFERENCES tasks (task_id),
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        panelists TEXT NOT NULL,
        judge TEXT NOT NULL,
        rounds INTEGER NOT NULL,
        verdict TEXT,
        verdict_hash TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX discussions_by_owner ON discussions (tenant_id, user_id, created_at);
    CREATE TABLE discussion_turns (
        run_id TEXT NOT NULL REFERENCES discussions (run_id),
        round_number INTEGER NOT NULL,
        panelist_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        content TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        duration_ms BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, round_number, panelist_id)
    );
    CREATE TABLE notifications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        notification_id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        audience_kind TEXT NOT NULL,
        audience TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX notifications_by_audience
        ON notifications (tenant_id, audience_kind, audience, seq);
    CREATE TABLE insights (
        insight_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        dismissed_at TEXT
    );
    CREATE INDEX insights_by_owner ON insights (tenant_id, user_id, created_at);
    CREATE TABLE claims (
        claim TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        claimed_at TEXT NOT NULL
    );
    """,
    # 5: schedules and their workflow runs, reminders, documents and their search index
    """
    CREATE TABLE schedules (
        schedule_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        prompt TEXT NOT NULL,
        session_id TEXT,
        paused INTEGER NOT NULL,
        source TEXT NOT NULL,
        next_due_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX schedules_by_owner ON schedules (tenant_id, user_id, created_at);
    CREATE INDEX schedules_by_due ON schedules (paused, next_due_at);
    CREATE TABLE workflow_runs (
        run_id TEXT PRIMARY KEY,
        schedule_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        slot TEXT NOT NULL,
        task_id TEXT,
        state TEXT NOT NULL,
        error TEXT,
        fired_at TEXT NOT NULL,
        finished_at TEXT,
        UNIQUE (schedule_id, slot)
    );
    CREATE INDEX workflow_runs_by_task ON workflow_runs (task_id);
    CREATE TABLE reminders (
        reminder_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        text TEXT NOT NULL,
        due_at TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        actioned_at TEXT,
        actioned_by TEXT,
        message_id TEXT
    );
    CREATE INDEX reminders_by_due ON reminders (status, due_at);
    CREATE INDEX reminders_by_owner ON reminders (tenant_id, user_id, status, due_at);
    CREATE TABLE documents (
        document_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size BIGINT NOT NULL,
        content TEXT NOT NULL,
        state TEXT NOT NULL,
        chunks INTEGER,
        error TEXT,
        created_at TEXT NOT NULL,
        indexed_at TEXT,
        lease_owner TEXT,
        lease_until TEXT
    );
    CREATE INDEX documents_by_owner ON documents (tenant_id, user_id, created_at);
    CREATE INDEX documents_by_state ON documents (state, lease_until);
    CREATE TABLE document_chunks (
        document_id TEXT NOT NULL REFERENCES documents (document_id),
        chunk_number INTEGER NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (document_id, chunk_number)
    );
    -- FTS5 holds its own copy of each chunk's text, kept beside document_chunks
    CREATE VIRTUAL TABLE document_search USING fts5(
        content,
        document_id UNINDEXED,
        chunk_number UNINDEXED,
        tenant_id UNINDEXED,
        user_id UNINDEXED,
        tokenize = 'porter unicode61'
    );
    """,
    # 6: a user's nodes (their own machines) and the commands sent to them (docs/hubs/node.md)
    """
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        acknowledged_scopes TEXT,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        status TEXT NOT NULL,
        transport TEXT,
        connection_id TEXT,
        last_heartbeat TEXT,
        presence_until TEXT,
        uptime DOUBLE PRECISION
    );
    CREATE INDEX nodes_by_owner ON nodes (tenant_id, user_id, created_at);
    CREATE INDEX nodes_by_presence ON nodes (status, presence_until);
    CREATE UNIQUE INDEX nodes_by_name ON nodes (tenant_id, user_id, name) WHERE revoked_at IS NULL;
    CREATE TABLE node_commands (
        command_id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL REFERENCES nodes (node_id),
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        command TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        queued INTEGER NOT NULL,
        timeout_seconds DOUBLE PRECISION NOT NULL,
        deadline TEXT NOT NULL,
        delivered_via TEXT,
        deliveries INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        completed_at TEXT
    );
    CREATE INDEX node_commands_by_node ON node_commands (node_id, created_at);
    CREATE INDEX node_commands_waiting ON node_commands (node_id, status, created_at);
    CREATE INDEX node_commands_by_deadline ON node_commands (status, deadline);
    """,
    # 7: voice (docs/voice.md): messages that were spoken, and each user's listening preferences
    """
    ALTER TABLE messages ADD COLUMN spoken INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE voice_preferences (
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        mode TEXT NOT NULL,
        pause DOUBLE PRECISION NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, user_id)
    );
    """,
    # 8: the Voisnap hubs (docs/hubs/voisnap.md): conversations and the connections holding
    # them, and what a client attached to a message
    """
    ALTER TABLE messages ADD COLUMN metadata TEXT;
    CREATE TABLE conversations (
        session_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        hub TEXT NOT NULL,
        metadata TEXT,
        language TEXT,
        started_at TEXT NOT NULL,
        left_at TEXT,
        ended_at TEXT,
        end_reason TEXT
    );
    CREATE TABLE conversation_links (
        connection_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        node TEXT NOT NULL,
        live_until TEXT NOT NULL
    );
    CREATE INDEX conversation_links_by_tenant ON conversation_links (tenant_id, live_until);
    CREATE INDEX conversation_links_by_session ON conversation_links (session_id);
    CREATE INDEX conversation_links_by_node ON conversation_links (node);
    CREATE TABLE conversation_tenants (
        tenant_id TEXT PRIMARY KEY
    );
    """,
    # 9: API tokens (docs/api-tokens.md): who each speaks for, found by its secret's hash
    """
    CREATE TABLE api_tokens (
        token_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        roles TEXT NOT NULL,
        secret_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT
    );
    CREATE INDEX api_tokens_by_owner ON api_tokens (tenant_id, user_id, created_at);
    """,
    # 10: the agent a session talks to, and a session's tasks in order (docs/v1-stream.md)
    """
    ALTER TABLE sessions ADD COLUMN agent_id TEXT;
    CREATE INDEX tasks_by_session ON tasks (session_id, created_at);
    """,
)


class SqliteDialect:
    """Times as ISO-8601 text in UTC with microseconds (so that text order is
    time order), flags as 0 and 1."""

    duplicate = (sqlite3.IntegrityError,)

    @staticmethod
    def time_in(moment: datetime.datetime | None) -> str | None:
        if moment is None:
            return None
        return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds")

    @staticmethod
    def time_out(value: Any) -> datetime.datetime | None:
        return None if value is None else datetime.datetime.fromisoformat(value)

    @staticmethod
    def flag_in(value: bool) -> int:
        return int(value)


BUSY_TIMEOUT_MS = 10_000


class SqliteStore(SqlStore):
    dialect = SqliteDialect()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._one_at_a_time = trio.CapacityLimiter(1)

    async def _run(self, work: Callable[[Database], T]) -> T:
        """``work`` in a worker thread, as one transaction."""

        def transaction() -> T:
            db = self._db
            if db is None:  # not opened yet, or closed while this waited its turn
                raise StoreUnavailable("The store is closed.")
            # IMMEDIATE: take the write lock at the start, so that a read and
            # the write that depends on it see no other process in between.
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await trio.to_thread.run_sync(transaction, limiter=self._one_at_a_time)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            use_wal(db)
            db.execute("PRAGMA foreign_keys = ON")
            try:
                migrate(db)
            except BaseException:
                db.close()
                raise
            return db

        self._db = await trio.to_thread.run_sync(connect, limiter=self._one_at_a_time)

    async def aclose(self) -> None:
        def close() -> None:  # in turn: never under a transaction that runs
            if self._db is not None:
                db, self._db = self._db, None
                db.close()

        await trio.to_thread.run_sync(close, limiter=self._one_at_a_time)

    # -- documents: the FTS5 index beside document_chunks (storage.sql_documents) --

    def _add_search_entries(self, db: Database, document_id: str) -> None:
        db.execute(
            "INSERT INTO document_search (content, document_id, chunk_number, tenant_id, user_id) "
            "SELECT content, document_id, chunk_number, tenant_id, user_id FROM document_chunks "
            "WHERE document_id = ?",
            (document_id,),
        )

    def _remove_search_entries(self, db: Database, document_id: str) -> None:
        db.execute("DELETE FROM document_search WHERE document_id = ?", (document_id,))

    def _search_rows(
        self, db: Database, owner: Owner, terms: Sequence[str], limit: int
    ) -> list[tuple]:
        # bm25() is lower for a better match; the score is its negation.
        return db.execute(
            "SELECT s.document_id, d.name, s.chunk_number, s.content, -bm25(document_search) "
            "FROM document_search s JOIN documents d ON d.document_id = s.document_id "
            "WHERE document_search MATCH ? AND s.tenant_id = ? AND s.user_id = ? "
            "ORDER BY bm25(document_search), s.document_id, s.chunk_number LIMIT ?",
            (fts5_query(terms), owner.tenant_id, owner.user_id, limit),
        ).fetchall()


def use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode. Processes that open a new file at once may
    find it locked: switching takes a lock the busy timeout does not wait for,
    so wait here, a little at a time, within the same bound."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # a worker thread, not the event loop


# -- schema ---------------------------------------------------------------------------------


def migrate(db: sqlite3.Connection) -> int:
    """Run the migrations this file has not seen yet; the resulting version.
    BEGIN IMMEDIATE: two processes starting at once migrate one after the other."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"The database is at schema version {version}, newer than this voisnap "
                f"({len(MIGRATIONS)}): upgrade voisnap."
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """A migration's statements (they contain no semicolons of their own)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]
