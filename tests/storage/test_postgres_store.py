"""PostgresStore only: outages, concurrent claimers and migrators, schema versions.

Everything every store does is in ``test_store.py``, run on PostgreSQL too. Here is what
is PostgreSQL's own, on the session's real server (a new database per test):

- the server restarts in the middle of use: the operation in flight raises
  ``StoreUnavailable`` with a one-line reason, so does one while the server is down,
  and the operations after it is back succeed on the same store, without reopening;
- a claimer passes over a task another transaction holds (``FOR UPDATE SKIP LOCKED``)
  instead of waiting for it;
- several stores opening one new database at once migrate it once (advisory lock);
- ``schema_version``: a database at version 1 (before leases) is migrated to 2 with its
  data, and one from a newer voisnap is refused and left untouched.
"""

from __future__ import annotations

import datetime
import signal
from functools import partial

import psycopg
import pytest
import trio

from tests.support.services import PostgresServer
from voisnap.storage.base import Note, StoreError, StoreUnavailable, TaskState
from voisnap.storage.postgres import MIGRATIONS

from .backends import Backend, Database, postgres_database
from .records import ADA, CEILING, accept, at

UNAVAILABLE = "The database is unavailable: "


@pytest.fixture
def database(postgres_server: PostgresServer) -> Database:
    return postgres_database(postgres_server)


def query(database: Database, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple]:
    with psycopg.connect(str(database.location), connect_timeout=5,
                         autocommit=True) as connection:
        cursor = connection.execute(sql, parameters)
        return cursor.fetchall() if cursor.description else []


# -- outages ---------------------------------------------------------------------------------------


async def test_postgres_store_restart_mid_use(
    backend: Backend, postgres_server: PostgresServer
) -> None:
    """A write waits for a lock when the server stops (crashes): it fails with StoreUnavailable (and
    did not happen); a call while the server is down fails the same way; once the server
    is back, the same store works again, and what was written before is there."""
    store = await backend.open()
    before = Note("n1", ADA, "before the outage", at(1))
    with trio.fail_after(CEILING):
        await store.add_note(before)
        await backend.make_durable()
    lock = backend.hold_write_lock("notes")
    errors: list[StoreUnavailable] = []

    async def in_flight() -> None:
        with pytest.raises(StoreUnavailable) as caught:
            await store.add_note(Note("n2", ADA, "in flight", at(2)))
        errors.append(caught.value)

    try:
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(in_flight)
                await backend.wait_until_waiting(1)
                # An immediate shutdown (a crash): every backend quits at once. A fast
                # one (SIGINT) may end the lock's holder first, and the write then
                # commits, rightly, before its own backend is told to go.
                await trio.to_thread.run_sync(partial(postgres_server.stop, sig=signal.SIGQUIT))
        with trio.fail_after(CEILING), pytest.raises(StoreUnavailable) as down:
            await store.ping()
        errors.append(down.value)
    finally:
        lock.close()
        await trio.to_thread.run_sync(postgres_server.start)

    with trio.fail_after(CEILING):
        await store.ping()
        after = Note("n3", ADA, "after the outage", at(3))
        await store.add_note(after)
        notes = await store.list_notes(ADA)
        await accept(store, ADA, 1)
        assert (await store.claim_task("node-a", at(4), at(14))) is not None
    assert notes == [before, after]  # the write in flight did not happen
    for error in errors:
        assert isinstance(error, StoreError)
        text = str(error)
        assert text.startswith(UNAVAILABLE) and len(text) > len(UNAVAILABLE), text
        assert "\n" not in text and "Traceback" not in text, text


async def test_postgres_store_claim_passes_over_a_locked_task(backend: Backend) -> None:
    """Another transaction holds the oldest queued task's row (another process claiming
    it): a claim takes the next one at once instead of waiting, and takes the first once
    it is free again."""
    store = await backend.open()
    with trio.fail_after(CEILING):
        await accept(store, ADA, 1, when=at(0))
        await accept(store, ADA, 2, when=at(1))
    holder = psycopg.connect(str(backend.database.location), connect_timeout=5)
    try:
        holder.execute("SELECT task_id FROM tasks WHERE task_id = 'task_1' FOR UPDATE")
        with trio.fail_after(CEILING):
            passed_over = await store.claim_task("node-a", at(2), at(12))
            nothing = await store.claim_task("node-a", at(2), at(12))
        holder.rollback()
        with trio.fail_after(CEILING):
            first = await store.claim_task("node-b", at(3), at(13))
    finally:
        holder.close()
    assert passed_over is not None and passed_over.task_id == "task_2"
    assert nothing is None
    assert first is not None and (first.task_id, first.lease_owner) == ("task_1", "node-b")


# -- schema versions -------------------------------------------------------------------------------


async def test_postgres_store_migrations_bring_a_new_database_to_the_latest_version(
    backend: Backend,
) -> None:
    with trio.fail_after(CEILING):
        await (await backend.open()).aclose()
        store = await backend.open()  # a re-run would fail: the tables exist
        await accept(store, ADA, 1)
    assert len(MIGRATIONS) == 10
    assert query(backend.database, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


async def test_postgres_store_several_stores_migrate_a_new_database_at_once(
    backend: Backend,
) -> None:
    stores = [backend.new() for _ in range(4)]
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(store.open)
        await accept(stores[0], ADA, 1)
        for store in stores:
            assert await store.get_task(ADA, "task_1") is not None
    assert query(backend.database, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


def version_1_database(database: Database) -> None:
    """A database as voisnap left it before leases: schema version 1, a queued task and
    one that was running when it stopped."""
    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    with psycopg.connect(str(database.location), connect_timeout=5) as connection:
        connection.execute(MIGRATIONS[0])
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO schema_version (version) VALUES (1)")
        connection.execute(
            "INSERT INTO sessions VALUES ('sess_1', 'acme', 'ada', 'title', %s, %s)",
            (when, when),
        )
        for n, state in [(1, "queued"), (2, "running")]:
            connection.execute(
                "INSERT INTO messages (message_id, session_id, tenant_id, user_id, role, "
                "content, created_at) VALUES (%s, 'sess_1', 'acme', 'ada', 'user', 'hi', %s)",
                (f"msg_{n}", when),
            )
            connection.execute(
                "INSERT INTO tasks (task_id, session_id, tenant_id, user_id, agent_id, "
                "message_id, state, is_streaming, created_at, started_at) "
                "VALUES (%s, 'sess_1', 'acme', 'ada', 'sophon', %s, %s, true, %s, %s)",
                (f"task_{n}", f"msg_{n}", state, when, None if state == "queued" else when),
            )


async def test_postgres_store_migrates_a_version_1_database_keeping_its_data(
    backend: Backend,
) -> None:
    version_1_database(backend.database)
    store = await backend.open()
    with trio.fail_after(CEILING):
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
        claimed = await store.claim_task("node-a", at(10), at(20))
    assert query(backend.database, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert [m.message_id for m in messages] == ["msg_1", "msg_2"]
    assert claimed is not None and (claimed.task_id, claimed.lease_owner) == ("task_1", "node-a")


async def test_postgres_store_a_task_running_before_the_migration_is_interrupted(
    backend: Backend,
) -> None:
    """A task running when the version-1 voisnap stopped has no lease: the first look for
    lapsed leases fails it, instead of leaving it running forever."""
    version_1_database(backend.database)
    store = await backend.open()
    with trio.fail_after(CEILING):
        expired = await store.expire_leases(at(100), "interrupted")
        task = await store.get_task(ADA, "task_2")
    assert [t.task_id for t in expired] == ["task_2"]
    assert task is not None and (task.state, task.error) == (TaskState.FAILED, "interrupted")


async def test_postgres_store_refuses_a_database_from_a_newer_voisnap(backend: Backend) -> None:
    query(backend.database, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    query(backend.database, "INSERT INTO schema_version (version) VALUES (%s)",
          (len(MIGRATIONS) + 1,))
    store = backend.new()
    with trio.fail_after(CEILING), pytest.raises(StoreError) as caught:
        await store.open()
    assert str(caught.value) == (
        f"The database is at schema version {len(MIGRATIONS) + 1}, newer than this voisnap "
        f"({len(MIGRATIONS)}): upgrade voisnap."
    )
    assert query(backend.database, "SELECT version FROM schema_version") == [
        (len(MIGRATIONS) + 1,)
    ]
    tables = query(backend.database,
                   "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [("schema_version",)]  # left untouched
