"""The shared store: PostgreSQL, for processes on several hosts (``--database``).

psycopg 3 is used in its synchronous form, in worker threads, as the SQLite
store uses sqlite3: the trio loop never blocks on the database. A bounded pool
of connections (``psycopg_pool``) serves at most ``POOL_SIZE`` transactions at
once; each store operation is one transaction on one pooled connection. The
operations are ``SqlStore``'s: this module says how to connect, how PostgreSQL
spells times and flags, and how to claim a task without waiting for another
claimer (``FOR UPDATE SKIP LOCKED``).

When the server restarts or the network drops, the transactions in flight fail
with ``StoreUnavailable`` (a clear error for whoever asked), the pool throws
away the broken connections (each one is checked before it is handed out), and
later operations succeed once the server is back, without restarting voisnap.

The schema is versioned like SQLite's: ``schema_version`` holds how many of
``MIGRATIONS`` have run, and migrating takes an advisory lock, so that several
processes starting at once migrate one after another.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import StoreError, StoreUnavailable
from .sql import Database, SqlStore

T = TypeVar("T")

POOL_SIZE = 4
CONNECT_TIMEOUT = 5.0
MIGRATION_LOCK = 7_262_533  # pg_advisory_xact_lock's key: "voisnap" in no particular code

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions, messages, tasks, notes
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        title TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX sessions_by_owner ON sessions (tenant_id, user_id, updated_at);
    CREATE TABLE messages (
        seq BIGSERIAL PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL REFERENCES sessions (session_id),
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        tool_calls TEXT,
        task_id TEXT,
        created_at TIMESTAMPTZ NOT NULL
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
        is_streaming BOOLEAN NOT NULL,
        channel_id TEXT,
        client_message_id TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        error TEXT,
        duration_ms BIGINT,
        tokens_used BIGINT,
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
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX notes_by_owner ON notes (tenant_id, user_id, created_at);
    """,
    # 2: leases: any process may run any queued task, exactly once
    """
    ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
    ALTER TABLE tasks ADD COLUMN lease_until TIMESTAMPTZ;
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
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        outcome_detail TEXT,
        resolved_at TIMESTAMPTZ,
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
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        response TEXT,
        resolved_at TIMESTAMPTZ,
        resolved_by TEXT
    );
    CREATE INDEX info_requests_by_task ON info_requests (task_id);
    CREATE INDEX info_requests_by_owner ON info_requests (tenant_id, user_id, status, created_at);
    CREATE INDEX info_requests_by_expiry ON info_requests (status, expires_at);
    CREATE INDEX tasks_by_owner ON tasks (tenant_id, user_id, created_at);
    """,
)


class PostgresDialect:
    """Times as TIMESTAMPTZ and flags as BOOLEAN: psycopg converts both ways."""

    duplicate = (psycopg.errors.UniqueViolation,)

    @staticmethod
    def time_in(moment: datetime.datetime | None) -> datetime.datetime | None:
        return moment

    @staticmethod
    def time_out(value: Any) -> datetime.datetime | None:
        return value

    @staticmethod
    def flag_in(value: bool) -> bool:
        return value


class QuestionMarks:
    """A psycopg connection seen through ``?`` placeholders, as SqlStore writes them."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
        return self._connection.execute(sql.replace("?", "%s"), parameters)


class PostgresStore(SqlStore):
    dialect = PostgresDialect()

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._pool: ConnectionPool | None = None
        self._pool_size = pool_size
        self._limiter = trio.CapacityLimiter(pool_size)

    def _skip_locked(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    async def _run(self, work: Callable[[Database], T]) -> T:
        def transaction() -> T:
            assert self._pool is not None, "open() the store first"
            try:
                with (
                    self._pool.connection(timeout=CONNECT_TIMEOUT) as connection,
                    connection.transaction(),
                ):
                    return work(QuestionMarks(connection))
            except (psycopg.OperationalError, PoolTimeout) as error:
                reason = _first_line(error)
                raise StoreUnavailable(f"The database is unavailable: {reason}") from None

        return await trio.to_thread.run_sync(transaction, limiter=self._limiter)

    async def open(self) -> None:
        def connect() -> ConnectionPool:
            pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                open=False,
                check=ConnectionPool.check_connection,
                kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT)},
            )
            try:
                pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
                with pool.connection() as connection, connection.transaction():
                    migrate(connection)
            except BaseException:
                pool.close()
                raise
            return pool

        try:
            self._pool = await trio.to_thread.run_sync(connect, limiter=self._limiter)
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise StoreError(f"Cannot reach the database at start: {_first_line(error)}") from None

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await trio.to_thread.run_sync(pool.close, limiter=self._limiter)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def migrate(connection: psycopg.Connection) -> int:
    """Run the migrations the database has not seen yet; the resulting version.
    Called in a transaction, under an advisory lock."""
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    version = 0 if row is None else row[0]
    if row is None:
        connection.execute("INSERT INTO schema_version (version) VALUES (0)")
    if version > len(MIGRATIONS):
        raise StoreError(
            f"The database is at schema version {version}, newer than this voisnap "
            f"({len(MIGRATIONS)}): upgrade voisnap."
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        connection.execute(script)
        connection.execute("UPDATE schema_version SET version = %s", (number,))
    return len(MIGRATIONS)
