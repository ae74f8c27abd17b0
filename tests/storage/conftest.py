"""The stores under test: one database per test, on SQLite and on a real PostgreSQL.

``database`` names where the data lives (a file in ``tmp_path``, or a new database on the
session's PostgreSQL); ``backend`` opens as many stores on it as a test asks for, as
several processes would (each its own connection or pool), and closes them afterwards;
``store`` is the first of them. Conformance tests take ``backend`` or ``store`` and run on
both kinds; the SQLite- and PostgreSQL-only modules override ``database`` with their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voisnap.storage.sql import SqlStore

from .backends import Backend, Database, postgres_database, sqlite_database


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return sqlite_database(tmp_path)
    return postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
async def backend(database: Database) -> AsyncIterator[Backend]:
    opened = Backend(database)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def store(backend: Backend) -> SqlStore:
    return await backend.open()
