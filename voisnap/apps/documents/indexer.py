"""The indexer: uploaded documents become searchable chunks, each by one process.

Theory of operation (docs/documents.md, "Indexing"): one ``Indexer`` runs in
every process's nursery, for the server's whole life. It claims the oldest
document waiting (``DocumentStore.claim_document``: a conditional update, so
of several processes exactly one gets it, with a lease of ``LEASE`` seconds),
chunks it in a worker thread (``chunking``: CPU work must not hold the trio
loop), stores the chunks with their index entries and the state ``indexed``
in one transaction (``index_document``, only while the claim is still its
own), then publishes ``DocumentIndexed`` to the owner. Then the next, until
none waits; then it sleeps until woken.

It is woken at once by an upload in its own process (``wake``, from the REST
route), and every ``poll_interval`` seconds (1) it looks anyway: that is how
it sees the uploads of other processes, and the claims of a process that died
mid-way, whose lease lapsed.

Errors stay inside: a store that fails (``StoreError``) is logged and tried
again at the next look; a document whose indexing raises anything else is
marked ``failed`` with a reason, so it is not tried for ever; and the loop
itself runs in an error boundary.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import trio

from ...failures import error_boundary, report_unexpected
from ...storage.base import USER, Audience, Document, DocumentStore, StoreError, utc_now
from ..notifications.events import DocumentIndexed
from ..notifications.publisher import Notifications
from .chunking import chunk_text
from .upload import MARKDOWN

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
LEASE = datetime.timedelta(seconds=60)
"""How long a claim holds: far longer than indexing 5 MiB takes."""
FAILED = "The document could not be indexed."


class Indexer:
    def __init__(
        self,
        store: DocumentStore,
        notifications: Notifications,
        node: str,
        *,
        poll_interval: float = POLL_INTERVAL,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._node = node
        self._poll_interval = poll_interval
        self._now = now
        self._woken = trio.Event()

    def wake(self) -> None:
        """A document was uploaded here: look now, not at the next poll."""
        self._woken.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            # A new event before looking: a wake-up during the look is not lost.
            self._woken = trio.Event()
            with error_boundary(log, "the document indexer"):
                await self.index_waiting()
            with trio.move_on_after(self._poll_interval):
                await self._woken.wait()

    async def index_waiting(self) -> int:
        """Index documents until none waits; how many this process indexed."""
        indexed = 0
        while True:
            now = self._now()
            try:
                document = await self._store.claim_document(self._node, now, now + LEASE)
            except StoreError as error:
                log.warning("cannot claim a document to index: %s", error)
                return indexed
            if document is None:
                return indexed
            indexed += await self._index(document)

    async def _index(self, document: Document) -> int:
        """Index one claimed document; 1 if this process did."""
        try:
            chunks = await trio.to_thread.run_sync(
                lambda: chunk_text(
                    document.content or "", markdown=document.content_type == MARKDOWN
                )
            )
            done = await self._store.index_document(
                document.document_id, self._node, chunks, self._now()
            )
        except StoreError as error:
            # The claim lapses and the document is tried again, here or elsewhere.
            log.warning("cannot index document %s: %s", document.document_id, error)
            return 0
        except Exception as error:
            report_unexpected(log, f"indexing document {document.document_id}", error)
            await self._fail(document)
            return 0
        if done is None:  # deleted meanwhile, or the claim lapsed and went elsewhere
            return 0
        await self._announce(done)
        return 1

    async def _fail(self, document: Document) -> None:
        try:
            await self._store.fail_document(document.document_id, self._node, FAILED)
        except StoreError as error:
            log.warning("cannot mark document %s failed: %s", document.document_id, error)

    async def _announce(self, document: Document) -> None:
        owner = document.owner
        event = DocumentIndexed(document.document_id, document.chunks)
        try:
            await self._notifications.publish(
                owner.tenant_id, Audience(USER, owner.user_id), "DocumentIndexed", event
            )
        except StoreError as error:
            log.warning("cannot announce document %s: %s", document.document_id, error)
