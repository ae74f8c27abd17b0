"""SqliteStore only: one file shared by several stores, and its schema versions.

Everything every store does is in ``test_store.py``, run on SQLite too. Here is what
is SQLite's own: several processes on one host share the file (two ``SqliteStore``
instances, two connections, as two processes would have): each sees what the other
wrote, in WAL mode; a writer waits for the other's transaction instead of failing;
the schema's version is ``PRAGMA user_version``: a new file is brought to the latest
version, a version-1 file (before leases) is migrated to 2 with its data, a file from
a newer voisnap is refused and left untouched, two stores opening a new file at once
migrate it once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from voisnap.storage.base import Note, StoreError, TaskState
from voisnap.storage.sqlite import MIGRATIONS, migrate

from .backends import Backend, Database, sqlite_database
from .records import ADA, CEILING, accept, at, records, reply_to


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return sqlite_database(tmp_path)


@pytest.fixture
def db_path(database: Database) -> Path:
    return Path(database.location)


def pragma(path: Path, name: str) -> object:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


# -- one file, two stores --------------------------------------------------------------------------


async def test_sqlite_store_two_stores_on_one_file_see_each_others_writes(
    backend: Backend, db_path: Path
) -> None:
    first, second = await backend.open(), await backend.open()
    with trio.fail_after(CEILING):
        accepted = await accept(first, ADA, 1, client_message_id="c1")
        assert await second.get_task(ADA, "task_1") == accepted.task
        claimed = await second.claim_task("node-b", at(1), at(11))
        assert await first.get_task(ADA, "task_1") == claimed
        assert await first.claim_task("node-a", at(2), at(12)) is None
        retry = await accept(second, ADA, 2, client_message_id="c1")
        assert await first.request_cancel("task_1", "ada") is None
        assert await second.cancel_requested("task_1") == "ada"
        done = await second.complete_task("task_1", "node-b", reply=reply_to("task_1", at(3)),
                                          tokens_used=1)
        assert await first.get_task(ADA, "task_1") == done
        await first.add_note(Note("n1", ADA, "from the first", at(4)))
        assert [n.text for n in await second.list_notes(ADA)] == ["from the first"]
    assert claimed is not None and claimed.lease_owner == "node-b"
    assert not retry.created and retry.task.task_id == "task_1"
    assert done is not None and done.state is TaskState.COMPLETED
    assert pragma(db_path, "journal_mode") == "wal"


async def test_sqlite_store_a_writer_waits_for_the_other_stores_transaction(
    backend: Backend, db_path: Path
) -> None:
    """While another connection on the file holds the write lock, a store's write waits
    (busy_timeout) and then lands, instead of failing with "database is locked"."""
    store = await backend.open()
    lock = backend.hold_write_lock("tasks")
    landed: list[str] = []

    async def write() -> None:
        landed.append((await accept(store, ADA, 1)).task.task_id)

    try:
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await backend.wait_until_waiting(1)
                assert landed == []
                lock.release()
    finally:
        lock.close()
    assert landed == ["task_1"]


async def test_sqlite_store_two_stores_open_a_new_file_at_once(
    backend: Backend, db_path: Path
) -> None:
    stores = [backend.new() for _ in range(3)]
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(store.open)
        await accept(stores[0], ADA, 1)
        assert (await stores[2].get_task(ADA, "task_1")) is not None
    assert pragma(db_path, "user_version") == len(MIGRATIONS)


# -- schema versions -------------------------------------------------------------------------------


async def test_sqlite_store_migrations_bring_a_new_file_to_the_latest_version(
    backend: Backend, db_path: Path
) -> None:
    await backend.open()
    assert len(MIGRATIONS) == 10
    assert pragma(db_path, "user_version") == len(MIGRATIONS)


async def test_sqlite_store_reopening_does_not_rerun_migrations(
    backend: Backend, db_path: Path
) -> None:
    with trio.fail_after(CEILING):
        for n in range(2):
            store = await backend.open()  # a re-run would fail: the tables exist
            await accept(store, ADA, n, session_id=f"s{n}")
            assert len(await store.list_sessions(ADA)) == n + 1
            await store.aclose()
    assert pragma(db_path, "user_version") == len(MIGRATIONS)


def test_sqlite_store_migrate_trusts_user_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "marked.db", isolation_level=None)
    try:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        assert migrate(db) == len(MIGRATIONS)
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        db.close()
    assert tables == []


def version_1_file(path: Path) -> None:
    """A file as voisnap left it before leases: schema version 1, a session with two
    messages, a finished task, a queued one, and one that was running when it stopped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        session, _, _ = records(ADA, 1)
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            (session.session_id, "acme", "ada", session.title, at(0).isoformat(),
             at(0).isoformat()),
        )
        for n, state in [(1, "completed"), (2, "queued"), (3, "running")]:
            db.execute(
                "INSERT INTO messages (message_id, session_id, tenant_id, user_id, role, "
                "content, created_at) VALUES (?, 'sess_1', 'acme', 'ada', 'user', ?, ?)",
                (f"msg_{n}", f"message {n}", at(n).isoformat(timespec="microseconds")),
            )
            started = None if state == "queued" else at(n + 0.5).isoformat()
            db.execute(
                "INSERT INTO tasks (task_id, session_id, tenant_id, user_id, agent_id, "
                "message_id, state, is_streaming, channel_id, client_message_id, created_at, "
                "started_at) VALUES (?, 'sess_1', 'acme', 'ada', 'sophon', ?, ?, 1, "
                "'webchat', ?, ?, ?)",
                (f"task_{n}", f"msg_{n}", state, f"c{n}",
                 at(n).isoformat(timespec="microseconds"), started),
            )
    finally:
        db.close()


async def test_sqlite_store_migrates_a_version_1_file_keeping_its_data(
    backend: Backend, db_path: Path
) -> None:
    version_1_file(db_path)
    store = await backend.open()
    with trio.fail_after(CEILING):
        messages = await store.list_messages(ADA, "sess_1", limit=10, before=None)
        done = await store.get_task(ADA, "task_1")
        claimed = await store.claim_task("node-a", at(10), at(20))
        retry = await accept(store, ADA, 9, client_message_id="c2")
        assert await store.renew_lease("task_2", "node-a", at(30))
    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    assert [m.message_id for m in messages] == ["msg_1", "msg_2", "msg_3"]
    assert done is not None and done.state is TaskState.COMPLETED and done.lease_owner is None
    assert claimed is not None and claimed.task_id == "task_2"
    assert (claimed.lease_owner, claimed.started_at) == ("node-a", at(10))
    assert not retry.created and retry.task.task_id == "task_2"


async def test_sqlite_store_a_task_running_before_the_migration_is_interrupted(
    backend: Backend, db_path: Path
) -> None:
    """A task that was running when the version-1 voisnap stopped has no lease; no
    process runs it any more, so the first look for lapsed leases fails it (as the old
    start-up recovery did), instead of leaving it running forever."""
    version_1_file(db_path)
    store = await backend.open()
    with trio.fail_after(CEILING):
        expired = await store.expire_leases(at(100), "interrupted")
        task = await store.get_task(ADA, "task_3")
    assert [t.task_id for t in expired] == ["task_3"]
    assert task is not None and (task.state, task.error) == (TaskState.FAILED, "interrupted")


async def test_sqlite_store_refuses_a_file_from_a_newer_voisnap(
    backend: Backend, db_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    store = backend.new()
    with trio.fail_after(CEILING), pytest.raises(StoreError) as caught:
        await store.open()
    assert str(caught.value) == (
        f"The database is at schema version {len(MIGRATIONS) + 1}, newer than this voisnap "
        f"({len(MIGRATIONS)}): upgrade voisnap."
    )
    assert pragma(db_path, "user_version") == len(MIGRATIONS) + 1  # left untouched
