"""Documents, their chunks and their full-text index (issue 14; docs/documents.md).

A document is stored as uploaded (state ``uploaded``); an indexer of any
process claims it (``claim_document``: ``indexing``, with a lease, in one
conditional update, so one process indexes it), chunks it, and stores the
chunks and their index entries with the state ``indexed`` in one transaction
(``index_document``, conditional on still holding the lease). A claim whose
lease lapsed (its process died mid-way) is claimed again.

The search index is each database's own, behind three methods the store
classes supply (as they supply ``_skip_locked``):

- SQLite: an FTS5 table, ``document_search`` (porter stemming), beside
  ``document_chunks``: its rows are added and removed with the chunks', in
  the same transaction; ranked by ``bm25``;
- PostgreSQL: the generated ``tsvector`` column ``document_chunks.search``
  (English stemming; a GIN index): nothing to add or remove; ranked by
  ``ts_rank``.

A query is the user's text, never syntax: ``search_terms`` keeps its words
(letters and digits; at most ``MAX_TERMS``; not common English words such as
"the", which PostgreSQL would drop and FTS5 would find everywhere), and each
dialect matches any of them, as a quoted FTS5 string or as one
``plainto_tsquery`` each. Every read and search is scoped by the owner's
tenant and user.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import Any

from .base import Document, DocumentState, Owner, SearchHit

DOCUMENT_COLUMNS = (
    "document_id, tenant_id, user_id, name, content_type, size, state, chunks, error, "
    "created_at, indexed_at"
)
CHUNK_COLUMNS = "document_id, chunk_number, tenant_id, user_id, content"
CHUNK_ROWS_PER_INSERT = 100

WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 32
# PostgreSQL's English stop words (its ``english.stop``, Snowball's list): words so common
# that PostgreSQL leaves them out of a query, and that FTS5 would find in every chunk.
ENGLISH_STOP_WORDS = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which who
    whom this that these those am is are was were be been being have has had having do does did
    doing a an the and but if or because as until while of at by for with about against between
    into through during before after above below to from up down in out on off over under again
    further then once here there when where why how all any both each few more most other some
    such no nor not only own same so than too very s t can will just don should now"""
STOPWORDS = frozenset(ENGLISH_STOP_WORDS.split())


def search_terms(query: str) -> list[str]:
    """The words of ``query`` to search for: lower case, each once, in order."""
    words = dict.fromkeys(word.lower() for word in WORD.findall(query))
    return [word for word in words if word not in STOPWORDS][:MAX_TERMS]


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression for any of ``terms``, each a quoted string (a
    ``"`` inside doubled), so that no word is read as an operator (``NEAR``,
    ``AND``), a column filter (``x:``), a prefix (``*``) or a group."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


class DocumentQueries:
    """The documents half of ``SqlStore`` (it supplies ``_run``, ``dialect`` and
    ``_skip_locked``; the store classes the three search methods below)."""

    dialect: Any
    _run: Callable[..., Any]
    _skip_locked: Callable[[], str]

    # -- the index: each database's own ---------------------------------------------------------

    def _add_search_entries(self, db: Any, document_id: str) -> None:
        """Index the document's chunks (stored already, in this transaction)."""
        raise NotImplementedError

    def _remove_search_entries(self, db: Any, document_id: str) -> None:
        """Remove the document's chunks from the index (before the chunks go)."""
        raise NotImplementedError

    def _search_rows(self, db: Any, owner: Owner, terms: Sequence[str], limit: int) -> list:
        """``(document_id, name, chunk_number, content, score)`` of the owner's
        chunks that match any of ``terms``, best (highest score) first."""
        raise NotImplementedError

    # -- documents ------------------------------------------------------------------------------

    async def add_document(self, document: Document) -> None:
        time_in = self.dialect.time_in
        row = (
            document.document_id,
            document.owner.tenant_id,
            document.owner.user_id,
            document.name,
            document.content_type,
            document.size,
            document.state.value,
            document.chunks,
            document.error,
            time_in(document.created_at),
            time_in(document.indexed_at),
            document.content,
        )
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO documents ({DOCUMENT_COLUMNS}, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def get_document(
        self, owner: Owner, document_id: str, *, content: bool = False
    ) -> Document | None:
        def work(db: Any) -> Document | None:
            return self._get_document(db, document_id, owner, content=content)

        return await self._run(work)

    async def list_documents(
        self, owner: Owner, *, limit: int, before: str | None = None
    ) -> list[Document] | None:
        def work(db: Any) -> list[Document] | None:
            bound, parameters = "", [owner.tenant_id, owner.user_id]
            if before is not None:
                cursor = db.execute(
                    "SELECT created_at FROM documents "
                    "WHERE document_id = ? AND tenant_id = ? AND user_id = ?",
                    (before, *parameters),
                ).fetchone()
                if cursor is None:
                    return None
                bound = "AND (created_at < ? OR (created_at = ? AND document_id < ?))"
                parameters += [cursor[0], cursor[0], before]
            rows = db.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = ? AND user_id = ? "
                f"{bound} ORDER BY created_at DESC, document_id DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
            return [self._document(row) for row in rows]

        return await self._run(work)

    async def delete_document(self, owner: Owner, document_id: str) -> bool:
        """The document, its chunks and their index entries, in one transaction;
        False if the owner has no such document."""

        def work(db: Any) -> bool:
            if self._get_document(db, document_id, owner) is None:
                return False
            self._remove_search_entries(db, document_id)
            db.execute("DELETE FROM document_chunks WHERE document_id = ?", (document_id,))
            db.execute("DELETE FROM documents WHERE document_id = ?", (document_id,))
            return True

        return await self._run(work)

    # -- indexing -------------------------------------------------------------------------------

    async def claim_document(
        self, node: str, now: datetime.datetime, lease_until: datetime.datetime
    ) -> Document | None:
        """The oldest document waiting to be indexed (uploaded, or claimed by a
        process whose lease lapsed), now ``indexing`` on ``node`` until
        ``lease_until``, with its content; None if none waits. One conditional
        update: two processes never claim the same document."""

        def work(db: Any) -> Document | None:
            moment = self.dialect.time_in(now)
            waiting = "(state = ? OR (state = ? AND lease_until < ?))"
            waiting_parameters = (
                DocumentState.UPLOADED.value,
                DocumentState.INDEXING.value,
                moment,
            )
            row = db.execute(
                "UPDATE documents SET state = ?, lease_owner = ?, lease_until = ? "
                f"WHERE {waiting} AND document_id = (SELECT document_id FROM documents "
                f"WHERE {waiting} ORDER BY created_at LIMIT 1{self._skip_locked()}) "
                "RETURNING document_id",
                (
                    DocumentState.INDEXING.value,
                    node,
                    self.dialect.time_in(lease_until),
                    *waiting_parameters,
                    *waiting_parameters,
                ),
            ).fetchone()
            return None if row is None else self._get_document(db, row[0], content=True)

        return await self._run(work)

    async def index_document(
        self, document_id: str, node: str, chunks: list[str], now: datetime.datetime
    ) -> Document | None:
        """Store ``chunks`` (numbered from 1) and their index entries, and mark the
        document ``indexed``, in one transaction; None (nothing stored) if ``node``
        no longer holds its claim, or the document was deleted."""

        def work(db: Any) -> Document | None:
            changed = db.execute(
                "UPDATE documents SET state = ?, chunks = ?, indexed_at = ?, error = NULL, "
                "lease_owner = NULL, lease_until = NULL "
                "WHERE document_id = ? AND state = ? AND lease_owner = ?",
                (
                    DocumentState.INDEXED.value,
                    len(chunks),
                    self.dialect.time_in(now),
                    document_id,
                    DocumentState.INDEXING.value,
                    node,
                ),
            ).rowcount
            if changed != 1:
                return None
            document = self._get_document(db, document_id)
            assert document is not None
            self._store_chunks(db, document, chunks)
            return document

        return await self._run(work)

    def _store_chunks(self, db: Any, document: Document, chunks: Sequence[str]) -> None:
        """Replace the document's chunks (a claim that lapsed may have left none,
        but never leaves half: it is one transaction) and index them."""
        self._remove_search_entries(db, document.document_id)
        db.execute("DELETE FROM document_chunks WHERE document_id = ?", (document.document_id,))
        owner = document.owner
        rows = [
            (document.document_id, number, owner.tenant_id, owner.user_id, text)
            for number, text in enumerate(chunks, start=1)
        ]
        # Many rows per statement: a 5 MiB document has thousands of chunks.
        for start in range(0, len(rows), CHUNK_ROWS_PER_INSERT):
            batch = rows[start : start + CHUNK_ROWS_PER_INSERT]
            values = ", ".join("(?, ?, ?, ?, ?)" for _ in batch)
            db.execute(
                f"INSERT INTO document_chunks ({CHUNK_COLUMNS}) VALUES {values}",
                tuple(value for row in batch for value in row),
            )
        self._add_search_entries(db, document.document_id)

    async def fail_document(self, document_id: str, node: str, error: str) -> Document | None:
        """``indexing`` -> ``failed`` with ``error``, if ``node`` still holds the claim."""

        def work(db: Any) -> Document | None:
            changed = db.execute(
                "UPDATE documents SET state = ?, error = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE document_id = ? AND state = ? AND lease_owner = ?",
                (
                    DocumentState.FAILED.value,
                    error,
                    document_id,
                    DocumentState.INDEXING.value,
                    node,
                ),
            ).rowcount
            return self._get_document(db, document_id) if changed == 1 else None

        return await self._run(work)

    # -- search ---------------------------------------------------------------------------------

    async def search_documents(self, owner: Owner, query: str, *, limit: int) -> list[SearchHit]:
        """The owner's chunks that match any word of ``query``, best first."""
        terms = search_terms(query)
        if not terms:
            return []
        rows = await self._run(lambda db: self._search_rows(db, owner, terms, limit))
        return [
            SearchHit(document_id, name, chunk_number, content, float(score))
            for document_id, name, chunk_number, content, score in rows
        ]

    # -- rows -----------------------------------------------------------------------------------

    def _get_document(
        self, db: Any, document_id: str, owner: Owner | None = None, *, content: bool = False
    ) -> Document | None:
        columns = f"{DOCUMENT_COLUMNS}, content" if content else DOCUMENT_COLUMNS
        sql = f"SELECT {columns} FROM documents WHERE document_id = ?"
        parameters: tuple[str, ...] = (document_id,)
        if owner is not None:
            sql += " AND tenant_id = ? AND user_id = ?"
            parameters += (owner.tenant_id, owner.user_id)
        row = db.execute(sql, parameters).fetchone()
        return None if row is None else self._document(row)

    def _document(self, row: tuple) -> Document:
        time_out = self.dialect.time_out
        return Document(
            document_id=row[0],
            owner=Owner(row[1], row[2]),
            name=row[3],
            content_type=row[4],
            size=row[5],
            state=DocumentState(row[6]),
            chunks=row[7] or 0,
            error=row[8],
            created_at=time_out(row[9]),
            indexed_at=time_out(row[10]),
            content=row[11] if len(row) > 11 else None,
        )
