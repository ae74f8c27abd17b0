"""A real SQLite store for a test: opened on a file, closed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from voisnap.storage.sqlite import SqliteStore

CEILING = 10.0


@asynccontextmanager
async def sqlite_store(path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path)
    with trio.fail_after(CEILING):
        await store.open()
    try:
        yield store
    finally:
        with trio.fail_after(CEILING):
            await store.aclose()
