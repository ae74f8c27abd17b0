"""Where a store test's data lives, and the stores opened on it (see ``conftest``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio
import trio.testing

from tests.support.services import PostgresServer
from voisnap.storage.postgres import PostgresStore
from voisnap.storage.sql import SqlStore
from voisnap.storage.sqlite import SqliteStore

from .records import CEILING

POLL = 0.01


@attrs.frozen
class Database:
    kind: str
    location: Path | str
    """A SQLite file's path, or a PostgreSQL URL."""


class Backend:
    """Stores on one database; every store opened here is closed after the test."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.kind = database.kind
        self._opened: list[SqlStore] = []

    def new(self) -> SqlStore:
        """A store on this database, not opened yet."""
        if self.kind == "sqlite":
            store: SqlStore = SqliteStore(Path(self.database.location))
        else:
            store = PostgresStore(str(self.database.location))
        self._opened.append(store)
        return store

    async def open(self) -> SqlStore:
        store = self.new()
        with trio.fail_after(CEILING):
            await store.open()
        return store

    async def aclose(self) -> None:
        with trio.fail_after(CEILING):
            for store in reversed(self._opened):
                await store.aclose()

    def hold_write_lock(self, table: str) -> WriteLock:
        """Another connection (another process, say) holds a lock that makes writers of
        ``table`` wait, and lets readers read: on SQLite the file's write lock (every
        writer waits), on PostgreSQL ``table`` in SHARE mode."""
        if self.kind == "sqlite":
            connection: Any = sqlite3.connect(self.database.location, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
        else:
            connection = psycopg.connect(str(self.database.location), connect_timeout=5)
            connection.execute(f"LOCK TABLE {table} IN SHARE MODE")
        return WriteLock(connection)

    async def make_durable(self) -> None:
        """What was committed survives a crash of the server. The test servers run
        with ``synchronous_commit=off`` (speed): a commit reaches disk up to 0.2 s
        later, so a crash may lose it, unless a checkpoint writes it now."""
        if self.kind == "sqlite":
            return

        def checkpoint() -> None:
            with psycopg.connect(str(self.database.location), connect_timeout=5,
                                 autocommit=True) as connection:
                connection.execute("CHECKPOINT")

        await trio.to_thread.run_sync(checkpoint)

    async def wait_until_waiting(self, waiters: int) -> None:
        """Until ``waiters`` store calls wait for a lock in their threads. PostgreSQL says
        so (``pg_stat_activity``), polled; SQLite cannot tell which connection waits in its
        busy handler, so only until every trio task is blocked."""
        await trio.testing.wait_all_tasks_blocked()
        if self.kind == "sqlite":
            return
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        with psycopg.connect(str(self.database.location), connect_timeout=5,
                             autocommit=True) as connection:
            while connection.execute(query).fetchone()[0] < waiters:  # type: ignore[index]
                await trio.sleep(POLL)


class WriteLock:
    """A lock held in an open transaction; ``release`` commits it."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.held = True

    def release(self) -> None:
        self._connection.commit()  # sqlite3 and psycopg alike: COMMIT the open transaction
        self.held = False

    def close(self) -> None:
        """Roll back if still held; the connection may be dead already (a server outage)."""
        try:
            if self.held:
                self._connection.rollback()
        except (sqlite3.Error, psycopg.Error):
            pass
        finally:
            self._connection.close()


def sqlite_database(tmp_path: Path) -> Database:
    return Database("sqlite", tmp_path / "data" / "voisnap.db")


def postgres_database(server: PostgresServer) -> Database:
    """A new, empty database on the session's server (started again if a test stopped it)."""
    server.start()
    return Database("postgres", server.new_database("store"))
