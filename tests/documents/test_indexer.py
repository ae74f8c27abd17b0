"""The indexer (``apps.documents.indexer``) in one process, on a real SQLite store and the
notifications hub's real publisher: a document uploaded is indexed and announced once, also
with two indexers (two processes) on one database; woken by an upload, it indexes without
waiting for its poll; a failure to index marks the document failed instead of trying it for
ever; a store that fails is logged, not fatal.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.support.fakes import make_endpoint
from voisnap.apps.documents import Indexer
from voisnap.apps.documents import indexer as indexer_module
from voisnap.apps.notifications import Notifications, NotificationsHub
from voisnap.storage.base import (
    Document,
    DocumentState,
    Owner,
    Reader,
    StoreError,
    utc_now,
)
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
ADA = Owner("acme", "ada")
T0 = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC)


def uploaded(n: int, content: str = "# Okapi\n\nThe okapi lives in forests.") -> Document:
    return Document(
        f"doc_{n}",
        ADA,
        f"doc {n}.md",
        "text/markdown",
        len(content),
        DocumentState.UPLOADED,
        T0 + datetime.timedelta(seconds=n),
        content=content,
    )


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    with trio.fail_after(CEILING):
        await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await open_store(tmp_path / "voisnap.db")
    yield opened
    await opened.aclose()


def indexer_on(store: SqliteStore, node: str, poll_interval: float = 3600) -> Indexer:
    notifications = Notifications(store, make_endpoint(NotificationsHub).router)
    return Indexer(store, notifications, node, poll_interval=poll_interval)


async def indexed_events(store: SqliteStore) -> list[dict]:
    feed = await store.list_notifications(Reader("acme", "ada"), limit=200)
    return [n.payload for n in feed or [] if n.event == "DocumentIndexed"]


async def test_indexer_indexes_and_announces(store: SqliteStore) -> None:
    indexer = indexer_on(store, "node-a")
    with trio.fail_after(CEILING):
        await store.add_document(uploaded(1))
        assert await indexer.index_waiting() == 1
        assert await indexer.index_waiting() == 0
        document = await store.get_document(ADA, "doc_1")
        hits = await store.search_documents(ADA, "forest", limit=5)
    assert document is not None and document.state is DocumentState.INDEXED
    assert document.chunks == 1
    assert [hit.document_id for hit in hits] == ["doc_1"]
    assert await indexed_events(store) == [{"documentId": "doc_1", "chunks": 1}]


class WatchedStore(SqliteStore):
    """Says when a document was indexed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.indexed = trio.Event()

    async def index_document(self, *args: Any) -> Document | None:
        done = await super().index_document(*args)
        self.indexed.set()
        return done


async def test_indexer_woken_by_an_upload_does_not_wait_for_its_poll(tmp_path: Path) -> None:
    store = WatchedStore(tmp_path / "voisnap.db")
    await store.open()
    indexer = indexer_on(store, "node-a", poll_interval=3600)  # it would not look again
    try:
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                await nursery.start(indexer.run)
                await trio.testing.wait_all_tasks_blocked()  # it looked, and sleeps
                await store.add_document(uploaded(1))
                indexer.wake()
                await store.indexed.wait()
                nursery.cancel_scope.cancel()
            document = await store.get_document(ADA, "doc_1")
    finally:
        await store.aclose()
    assert document is not None and document.state is DocumentState.INDEXED


async def test_indexer_two_processes_index_each_document_once(tmp_path: Path) -> None:
    stores = [await open_store(tmp_path / "shared.db") for _ in range(2)]
    indexers = [indexer_on(s, f"node-{n}") for n, s in enumerate(stores)]
    try:
        with trio.fail_after(CEILING):
            for n in range(1, 11):
                await stores[0].add_document(uploaded(n))
            counts: list[int] = []

            async def drain(indexer: Indexer) -> None:
                counts.append(await indexer.index_waiting())

            async with trio.open_nursery() as nursery:
                for indexer in indexers:
                    nursery.start_soon(drain, indexer)
            events = await indexed_events(stores[0])
    finally:
        for s in stores:
            await s.aclose()
    assert sum(counts) == 10
    assert sorted(e["documentId"] for e in events) == sorted(f"doc_{n}" for n in range(1, 11))


async def test_indexer_failure_marks_the_document_failed(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(text: str, *, markdown: bool) -> list[str]:
        raise RuntimeError("a bug in chunking")

    monkeypatch.setattr(indexer_module, "chunk_text", broken)
    indexer = indexer_on(store, "node-a")
    with trio.fail_after(CEILING):
        await store.add_document(uploaded(1))
        assert await indexer.index_waiting() == 0
        document = await store.get_document(ADA, "doc_1")
    assert document is not None and document.state is DocumentState.FAILED
    assert document.error == "The document could not be indexed."
    assert await indexed_events(store) == []


class FailingStore:
    """A store whose database is down."""

    async def claim_document(self, *args: object) -> None:
        raise StoreError("The database is unavailable: down")


async def test_indexer_store_failure_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    indexer = Indexer(FailingStore(), None, "node-a")  # type: ignore[arg-type]
    with trio.fail_after(CEILING):
        assert await indexer.index_waiting() == 0
    assert "cannot claim a document to index: The database is unavailable" in caplog.text


async def test_indexer_takes_over_the_claim_of_a_process_that_died(store: SqliteStore) -> None:
    """A process claimed the document and died: once its lease has lapsed, another process's
    indexer claims it again and indexes it (its clock is a minute and more past the claim)."""
    claimed_at = utc_now()
    later = claimed_at + indexer_module.LEASE + datetime.timedelta(seconds=1)
    notifications = Notifications(store, make_endpoint(NotificationsHub).router)
    survivor = Indexer(store, notifications, "node-b", now=lambda: later)
    with trio.fail_after(CEILING):
        await store.add_document(uploaded(1))
        dead = await store.claim_document("node-a", claimed_at, claimed_at + indexer_module.LEASE)
        assert dead is not None
        assert await indexer_on(store, "node-c").index_waiting() == 0  # still node-a's
        assert await survivor.index_waiting() == 1
        document = await store.get_document(ADA, "doc_1")
    assert document is not None and document.state is DocumentState.INDEXED
    assert await indexed_events(store) == [{"documentId": "doc_1", "chunks": 1}]
