"""Documents, their chunks and the full-text search: the store's half of issue 14.

Every test runs on SQLite (FTS5) and on a real PostgreSQL (``tsvector``), ``conftest``.
What is checked is what the documents app and the ``search_documents`` tool rely on
(``storage.sql_documents``): a document is its owner's only (read, listed, deleted, found);
indexing stores chunks that the search then finds, best match first; deleting a document
takes it out of the search in the same transaction; a waiting document is claimed by exactly
one of several stores (processes), also when they claim at once, and claimed again once its
claimer's lease lapsed; a query is text, never syntax, whatever it holds.

Times are fixed (``records.at``). No test sleeps.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from voisnap.storage.base import Document, DocumentState, Owner
from voisnap.storage.sql import SqlStore
from voisnap.storage.sql_documents import fts5_query, search_terms

from .backends import Backend
from .records import ADA, ADA_ELSEWHERE, BOB, CEILING, at

LEASE = 60


def document(n: int, owner: Owner = ADA, content: str = "hello", name: str | None = None):
    return Document(
        document_id=f"doc_{n}",
        owner=owner,
        name=name or f"doc {n}.md",
        content_type="text/markdown",
        size=len(content.encode()),
        state=DocumentState.UPLOADED,
        created_at=at(n),
        content=content,
    )


async def add_and_index(store: SqlStore, doc: Document, chunks: list[str]) -> Document:
    """Store ``doc``, claim it (it must be the one waiting) and index it as ``chunks``."""
    await store.add_document(doc)
    claimed = await store.claim_document("node-a", at(100), at(100 + LEASE))
    assert claimed is not None and claimed.document_id == doc.document_id
    indexed = await store.index_document(doc.document_id, "node-a", chunks, at(101))
    assert indexed is not None
    return indexed


async def found(store: SqlStore, owner: Owner, query: str, limit: int = 10) -> list[tuple]:
    hits = await store.search_documents(owner, query, limit=limit)
    return [(hit.document_id, hit.chunk_number) for hit in hits]


# -- records ------------------------------------------------------------------------------------


async def test_store_documents_add_get_list_delete_are_the_owners(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        for n, owner in ((1, ADA), (2, BOB), (3, ADA), (4, ADA_ELSEWHERE), (5, ADA)):
            await store.add_document(document(n, owner, content=f"text {n}"))
        listed = await store.list_documents(ADA, limit=50)
        page = await store.list_documents(ADA, limit=1, before="doc_3")
        unknown_cursor = await store.list_documents(ADA, limit=1, before="doc_2")  # Bob's
        plain = await store.get_document(ADA, "doc_1")
        full = await store.get_document(ADA, "doc_1", content=True)
        bobs = await store.get_document(ADA, "doc_2")
        elsewhere = await store.get_document(ADA, "doc_4")
        deleted_by_bob = await store.delete_document(BOB, "doc_1")
        deleted = await store.delete_document(ADA, "doc_1")
        again = await store.delete_document(ADA, "doc_1")
        after = await store.list_documents(ADA, limit=50)
    assert [d.document_id for d in listed or []] == ["doc_5", "doc_3", "doc_1"]
    assert all(d.content is None for d in listed or [])
    assert [d.document_id for d in page or []] == ["doc_1"]
    assert unknown_cursor is None
    assert plain == attrs.evolve(document(1, content="text 1"), content=None)
    assert full is not None and full.content == "text 1" and full.state is DocumentState.UPLOADED
    assert (bobs, elsewhere) == (None, None)
    assert (deleted_by_bob, deleted, again) == (False, True, False)
    assert [d.document_id for d in after or []] == ["doc_5", "doc_3"]


# -- indexing and search ------------------------------------------------------------------------


async def test_store_documents_indexed_chunks_are_found_best_first(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        indexed = await add_and_index(
            store,
            document(1, content="..."),
            [
                "The zebrafish is a small freshwater fish.",
                "Zebrafish embryos are transparent; zebrafish research uses them. Zebrafish!",
                "Nothing about fish here, only birds.",
            ],
        )
        await add_and_index(store, document(2, content="..."), ["Running a marathon."])
        best = await found(store, ADA, "zebrafish")
        stemmed = await found(store, ADA, "runs")
        either = await found(store, ADA, "marathon zebrafish")
        stored = await store.get_document(ADA, "doc_1")
    assert indexed.state is DocumentState.INDEXED and indexed.chunks == 3
    assert indexed.indexed_at == at(101)
    assert stored is not None and stored.state is DocumentState.INDEXED and stored.chunks == 3
    assert best == [("doc_1", 2), ("doc_1", 1)]  # the chunk that says it most, first
    assert stemmed == [("doc_2", 1)]  # "runs" and "Running": one stem
    assert set(either) == {("doc_1", 1), ("doc_1", 2), ("doc_2", 1)}
    hits = await store.search_documents(ADA, "zebrafish", limit=1)
    assert hits[0].name == "doc 1.md" and hits[0].content.startswith("Zebrafish embryos")
    assert hits[0].score > 0


async def test_store_documents_search_finds_the_owners_only(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await add_and_index(store, document(1, ADA), ["ada's secret okapi"])
        await add_and_index(store, document(2, BOB), ["bob's okapi"])
        await add_and_index(store, document(3, ADA_ELSEWHERE), ["another tenant's okapi"])
        searches = {
            owner: await found(store, owner, "okapi")
            for owner in (ADA, BOB, ADA_ELSEWHERE, Owner("acme", "carol"))
        }
    assert searches == {
        ADA: [("doc_1", 1)],
        BOB: [("doc_2", 1)],
        ADA_ELSEWHERE: [("doc_3", 1)],
        Owner("acme", "carol"): [],
    }


async def test_store_documents_delete_removes_from_search(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await add_and_index(store, document(1), ["quokka one", "quokka two"])
        await add_and_index(store, document(2), ["quokka three"])
        before = await found(store, ADA, "quokka")
        assert await store.delete_document(ADA, "doc_1")
        after = await found(store, ADA, "quokka")
    assert len(before) == 3
    assert after == [("doc_2", 1)]


@pytest.mark.parametrize(
    "query",
    [
        'quokka"',
        '"quokka',
        "quokka AND",
        "NEAR(quokka wombat)",
        "quokka*",
        "* ) ( :",
        "content: quokka",
        "-quokka OR",
        "quokka & | ! <-> :*",
        "quokka'; DROP TABLE documents; --",
        "",
        "   ",
        "the",
        "日本語 quokka",
    ],
)
async def test_store_documents_query_is_text_never_syntax(store: SqlStore, query: str) -> None:
    with trio.fail_after(CEILING):
        await add_and_index(store, document(1), ["The quokka and the wombat."])
        hits = await found(store, ADA, query)
    expected = [("doc_1", 1)] if "quokka" in query else []
    assert hits == expected, query


async def test_store_documents_indexing_many_chunks(store: SqlStore) -> None:
    chunks = [f"chunk number {n} of many, about capybara {n}" for n in range(1, 351)]
    with trio.fail_after(CEILING):
        indexed = await add_and_index(store, document(1), chunks)
        hits = await found(store, ADA, "capybara 337")
    assert indexed.chunks == 350
    assert hits[0] == ("doc_1", 337)


# -- claims -------------------------------------------------------------------------------------


async def test_store_documents_claim_oldest_once(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await store.add_document(document(2))
        await store.add_document(document(1))
        first = await store.claim_document("node-a", at(10), at(10 + LEASE))
        second = await store.claim_document("node-b", at(10), at(10 + LEASE))
        none = await store.claim_document("node-a", at(10), at(10 + LEASE))
    assert first is not None and first.document_id == "doc_1" and first.content == "hello"
    assert first.state is DocumentState.INDEXING
    assert second is not None and second.document_id == "doc_2"
    assert none is None


async def test_store_documents_lapsed_claim_is_claimed_again(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await store.add_document(document(1))
        await store.claim_document("node-a", at(10), at(10 + LEASE))
        early = await store.claim_document("node-b", at(10 + LEASE - 1), at(10 + 2 * LEASE))
        late = await store.claim_document("node-b", at(11 + LEASE), at(11 + 2 * LEASE))
        stale = await store.index_document("doc_1", "node-a", ["late"], at(12 + LEASE))
        failed_by_stale = await store.fail_document("doc_1", "node-a", "no")
        done = await store.index_document("doc_1", "node-b", ["fresh"], at(13 + LEASE))
    assert early is None
    assert late is not None and late.document_id == "doc_1"
    assert (stale, failed_by_stale) == (None, None)
    assert done is not None and done.state is DocumentState.INDEXED and done.chunks == 1


async def test_store_documents_fail_and_deleted_while_indexing(store: SqlStore) -> None:
    with trio.fail_after(CEILING):
        await store.add_document(document(1))
        await store.add_document(document(2))
        await store.claim_document("node-a", at(10), at(10 + LEASE))
        failed = await store.fail_document("doc_1", "node-a", "The document could not be indexed.")
        await store.claim_document("node-a", at(10), at(10 + LEASE))
        await store.delete_document(ADA, "doc_2")
        gone = await store.index_document("doc_2", "node-a", ["x"], at(11))
        nothing_waits = await store.claim_document("node-a", at(10_000), at(10_100))
    assert failed is not None and failed.state is DocumentState.FAILED
    assert failed.error == "The document could not be indexed."
    assert gone is None and nothing_waits is None


async def test_store_documents_claimed_once_by_racing_stores(backend: Backend) -> None:
    """Four stores (processes) claim at once, over and over: each document goes to one."""
    stores = [await backend.open() for _ in range(4)]
    for n in range(1, 21):
        await stores[0].add_document(document(n))
    claimed: list[str] = []

    async def claimer(store: SqlStore, node: str) -> None:
        while (got := await store.claim_document(node, at(50), at(50 + LEASE))) is not None:
            claimed.append(got.document_id)

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for number, store in enumerate(stores):
                nursery.start_soon(claimer, store, f"node-{number}")
    assert sorted(claimed) == sorted(f"doc_{n}" for n in range(1, 21))


# -- the query, before any database sees it -----------------------------------------------------


def test_store_documents_search_terms_are_words() -> None:
    assert search_terms('The "Quick" brown-fox, NEAR(x y)* AND the quick') == [
        "quick",
        "brown",
        "fox",
        "near",
        "x",
        "y",
    ]
    assert search_terms("the of and") == []  # common words only: nothing to look for
    assert search_terms("*()^:-\"'") == []
    assert search_terms("foo_bar") == ["foo", "bar"]
    assert len(search_terms(" ".join(f"w{n}" for n in range(100)))) == 32


def test_store_documents_fts5_query_quotes_every_term() -> None:
    assert fts5_query(["near", "x"]) == '"near" OR "x"'
    assert fts5_query(['a"b']) == '"a""b"'
