"""The shared store: PostgreSQL, for processes on several hosts (``--database``).

psycopg 3 is used in its synchronous form, in worker threads, as the SQLite
store uses sqlite3: the trio loop never blocks on the database. A bounded pool
of connections (``psycopg_pool``) serves at most ``POOL_SIZE`` transactions at
once; each store operation is one transaction on one pooled connection. The
operations are ``SqlStore``'s: this module says how to connect, how PostgreSQL
spells times and flags, and how to claim a task without waiting for another
claimer (``FOR UPDATE SKIP LOCKED``).

When the server restarts or the network drops, the transactions in flight fail
with ``StoreUnavailable`` (a clear error for whoever asked), and the store
remembers the outage (``Outage``): from then on every operation fails at once,
instead of queuing for a pool slot behind others that each wait out a connect
timeout, and one probe at a time (at most one per ``PROBE_INTERVAL``) tries a
fresh connection. The first probe that connects ends the outage with a new
pool, so recovery takes about a second whatever the outage lasted (the pool's
own reconnection backs off exponentially, for minutes).

The schema is versioned like SQLite's: ``schema_version`` holds how many of
``MIGRATIONS`` have run, and migrating takes an advisory lock, so that several
processes starting at once migrate one after another.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import Owner, StoreError, StoreUnavailable
from .sql import Database, SqlStore

T = TypeVar("T")

POOL_SIZE = 4
CONNECT_TIMEOUT = 5.0
# The pool has a connection for every caller the limiter lets in, so waiting
# for one means it is making new ones: quick, unless the database is down.
POOL_WAIT = 3.0
PROBE_TIMEOUT = 2
PROBE_INTERVAL = 1.0
# Operational errors of one transaction on a healthy connection: not an outage.
TRY_AGAIN = (
    psycopg.errors.TransactionRollback,
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
)
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
        created_at TIMESTAMPTZ NOT NULL
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
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (run_id, round_number, panelist_id)
    );
    CREATE TABLE notifications (
        seq BIGSERIAL PRIMARY KEY,
        notification_id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        audience_kind TEXT NOT NULL,
        audience TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX notifications_by_audience
        ON notifications (tenant_id, audience_kind, audience, seq);
    CREATE TABLE insights (
        insight_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        dismissed_at TIMESTAMPTZ
    );
    CREATE INDEX insights_by_owner ON insights (tenant_id, user_id, created_at);
    CREATE TABLE claims (
        claim TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        claimed_at TIMESTAMPTZ NOT NULL
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
        paused BOOLEAN NOT NULL,
        source TEXT NOT NULL,
        next_due_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX schedules_by_owner ON schedules (tenant_id, user_id, created_at);
    CREATE INDEX schedules_by_due ON schedules (paused, next_due_at);
    CREATE TABLE workflow_runs (
        run_id TEXT PRIMARY KEY,
        schedule_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        slot TIMESTAMPTZ NOT NULL,
        task_id TEXT,
        state TEXT NOT NULL,
        error TEXT,
        fired_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        UNIQUE (schedule_id, slot)
    );
    CREATE INDEX workflow_runs_by_task ON workflow_runs (task_id);
    CREATE TABLE reminders (
        reminder_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        text TEXT NOT NULL,
        due_at TIMESTAMPTZ NOT NULL,
        status TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        actioned_at TIMESTAMPTZ,
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
        created_at TIMESTAMPTZ NOT NULL,
        indexed_at TIMESTAMPTZ,
        lease_owner TEXT,
        lease_until TIMESTAMPTZ
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
    ALTER TABLE document_chunks
        ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED;
    CREATE INDEX document_chunks_search ON document_chunks USING GIN (search);
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
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ,
        status TEXT NOT NULL,
        transport TEXT,
        connection_id TEXT,
        last_heartbeat TIMESTAMPTZ,
        presence_until TIMESTAMPTZ,
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
        queued BOOLEAN NOT NULL,
        timeout_seconds DOUBLE PRECISION NOT NULL,
        deadline TIMESTAMPTZ NOT NULL,
        delivered_via TEXT,
        deliveries INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        sent_at TIMESTAMPTZ,
        completed_at TIMESTAMPTZ
    );
    CREATE INDEX node_commands_by_node ON node_commands (node_id, created_at);
    CREATE INDEX node_commands_waiting ON node_commands (node_id, status, created_at);
    CREATE INDEX node_commands_by_deadline ON node_commands (status, deadline);
    """,
    # 7: voice (docs/voice.md): messages that were spoken, and each user's listening preferences
    """
    ALTER TABLE messages ADD COLUMN spoken BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE TABLE voice_preferences (
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        mode TEXT NOT NULL,
        pause DOUBLE PRECISION NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
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
        started_at TIMESTAMPTZ NOT NULL,
        left_at TIMESTAMPTZ,
        ended_at TIMESTAMPTZ,
        end_reason TEXT
    );
    CREATE TABLE conversation_links (
        connection_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        node TEXT NOT NULL,
        live_until TIMESTAMPTZ NOT NULL
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
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ,
        revoked_at TIMESTAMPTZ
    );
    CREATE INDEX api_tokens_by_owner ON api_tokens (tenant_id, user_id, created_at);
    """,
    # 10: the agent a session talks to, and a session's tasks in order (docs/v1-stream.md)
    """
    ALTER TABLE sessions ADD COLUMN agent_id TEXT;
    CREATE INDEX tasks_by_session ON tasks (session_id, created_at);
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


class Outage:
    """The database is known to be down: why, and when it was last probed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.probed_at = trio.current_time()
        self.probing = False


class PostgresStore(SqlStore):
    dialect = PostgresDialect()

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._pool: ConnectionPool | None = None
        self._pool_size = pool_size
        self._limiter = trio.CapacityLimiter(pool_size)
        self._outage: Outage | None = None

    def _skip_locked(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def _for_update(self) -> str:
        return " FOR UPDATE"

    # -- documents: the generated tsvector column (storage.sql_documents) --

    def _add_search_entries(self, db: Database, document_id: str) -> None:
        """Nothing to do: ``document_chunks.search`` is computed from the content."""

    def _remove_search_entries(self, db: Database, document_id: str) -> None:
        """Nothing to do: the entry is a column of the chunk's row."""

    def _search_rows(
        self, db: Database, owner: Owner, terms: Sequence[str], limit: int
    ) -> list[tuple]:
        # Any of the words: one plainto_tsquery each (text, never tsquery syntax), ORed.
        query = " || ".join("plainto_tsquery('english', ?)" for _ in terms)
        return db.execute(
            "SELECT c.document_id, d.name, c.chunk_number, c.content, ts_rank(c.search, q.query) "
            "FROM document_chunks c JOIN documents d ON d.document_id = c.document_id "
            f"CROSS JOIN (SELECT {query} AS query) q "
            "WHERE c.search @@ q.query AND c.tenant_id = ? AND c.user_id = ? "
            "ORDER BY ts_rank(c.search, q.query) DESC, c.document_id, c.chunk_number LIMIT ?",
            (*terms, owner.tenant_id, owner.user_id, limit),
        ).fetchall()

    async def _run(self, work: Callable[[Database], T]) -> T:
        await self._unless_down()

        def transaction() -> T:
            pool = self._pool
            assert pool is not None, "open() the store first"
            if self._outage is not None:  # noticed while this call waited for its turn
                raise PoolTimeout(self._outage.reason)
            with pool.connection(timeout=POOL_WAIT) as connection, connection.transaction():
                return work(QuestionMarks(connection))

        try:
            return await trio.to_thread.run_sync(transaction, limiter=self._limiter)
        except TRY_AGAIN as error:
            reason = _first_line(error)
            raise StoreUnavailable(f"The database refused, try again: {reason}") from None
        except (psycopg.OperationalError, PoolTimeout) as error:
            self._outage = self._outage or Outage(_first_line(error))
            raise StoreUnavailable(f"The database is unavailable: {self._outage.reason}") from None

    async def ping(self) -> None:
        """Readiness: answers at once during a known outage; otherwise a query
        that the readiness deadline may abandon (the thread finishes alone).
        During an outage it always probes: readiness is asked seldom, and
        should see a recovery at once."""
        await self._unless_down(probe_now=True)

        def select_one() -> None:
            assert self._pool is not None, "open() the store first"
            with self._pool.connection(timeout=POOL_WAIT) as connection:
                connection.execute("SELECT 1")

        try:
            await trio.to_thread.run_sync(select_one, abandon_on_cancel=True)
        except (psycopg.OperationalError, PoolTimeout) as error:
            self._outage = self._outage or Outage(_first_line(error))
            raise StoreUnavailable(f"The database is unavailable: {self._outage.reason}") from None

    async def _unless_down(self, *, probe_now: bool = False) -> None:
        """During an outage: probe if nobody has for a while, else fail at once."""
        outage = self._outage
        if outage is None:
            return
        due = probe_now or trio.current_time() - outage.probed_at >= PROBE_INTERVAL
        if due and not outage.probing:
            outage.probing = True
            try:
                await self._probe(outage)
            finally:
                outage.probing = False
                outage.probed_at = trio.current_time()
        if self._outage is not None:
            raise StoreUnavailable(f"The database is unavailable: {self._outage.reason}")

    async def _probe(self, outage: Outage) -> None:
        """One fresh connection; if it works, a new pool replaces the broken one."""

        def connect_anew() -> ConnectionPool:
            with psycopg.connect(self.url, connect_timeout=PROBE_TIMEOUT) as connection:
                connection.execute("SELECT 1")
            return self._new_pool()

        try:
            fresh = await trio.to_thread.run_sync(connect_anew, abandon_on_cancel=True)
        except (psycopg.OperationalError, PoolTimeout) as error:
            outage.reason = _first_line(error)
            return
        broken, self._pool, self._outage = self._pool, fresh, None
        if broken is not None:
            await trio.to_thread.run_sync(broken.close, abandon_on_cancel=True)

    def _new_pool(self) -> ConnectionPool:
        """An open pool (blocking: call it in a worker thread)."""
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
        except BaseException:
            pool.close()
            raise
        return pool

    async def open(self) -> None:
        def connect() -> ConnectionPool:
            pool = self._new_pool()
            try:
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
