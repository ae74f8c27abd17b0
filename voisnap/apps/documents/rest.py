"""The documents over REST (docs/rest.md, "Documents"; docs/documents.md).

- ``POST /documents``: a document of the caller's, from the raw body or a
  multipart ``file`` part (``upload``); 201 with it, ``DocumentUploaded`` to
  the caller's connections, and the indexer woken. The route reads bodies up
  to ``--max-document-size`` plus ``MULTIPART_OVERHEAD`` (the server refuses a
  larger declared or chunked body with 413 before this runs); the document
  itself is held to ``--max-document-size`` here;
- ``GET /documents?limit=&before=``: the caller's documents, newest first,
  without their content;
- ``GET /documents/{id}?content=true``: one, with its content when asked;
- ``DELETE /documents/{id}``: 204; its chunks and index entries go with it.

Another user's document answers 404 like an unknown one. Every refusal is
``{"error": ...}`` saying why.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from ...server.routes import RestRequest, Route
from ...storage.base import USER, Audience, Document, DocumentState, DocumentStore, Owner, utc_now
from ..chat.rest import MAX_LIMIT, page_limit
from ..notifications.events import DocumentUploaded
from ..notifications.publisher import Notifications
from .upload import MULTIPART_OVERHEAD, UploadError, read_upload
from .views import document_view

FLAGS = {"true": True, "false": False}


class Waker(Protocol):
    def wake(self) -> None: ...


class DocumentsRest:
    def __init__(
        self,
        store: DocumentStore,
        notifications: Notifications,
        indexer: Waker,
        max_document_size: int,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._indexer = indexer
        self._max_size = max_document_size

    def routes(self) -> list[Route]:
        body_limit = self._max_size + MULTIPART_OVERHEAD
        return [
            Route.of("POST", "/documents", self.upload, max_body=body_limit),
            Route.of("GET", "/documents", self.list_documents),
            Route.of("GET", "/documents/{document_id}", self.get_document),
            Route.of("DELETE", "/documents/{document_id}", self.delete_document),
        ]

    async def upload(self, request: RestRequest) -> tuple[int, Any]:
        read = partial(
            read_upload,
            request.content_type,
            request.body,
            request.query.get("name"),
            self._max_size,
        )
        try:
            # Parsing and decoding megabytes is CPU work: off the event loop, which
            # serves every other connection meanwhile.
            upload = await trio.to_thread.run_sync(read)
        except UploadError as error:
            return error.status, {"error": error.text}
        owner = _owner(request)
        document = Document(
            document_id="doc_" + uuid.uuid4().hex,
            owner=owner,
            name=upload.name,
            content_type=upload.content_type,
            size=upload.size,
            state=DocumentState.UPLOADED,
            created_at=utc_now(),
            content=upload.text,
        )
        await self._store.add_document(document)
        uploaded = DocumentUploaded(document.document_id, document.name, document.size)
        await self._notifications.publish(
            owner.tenant_id, Audience(USER, owner.user_id), "DocumentUploaded", uploaded
        )
        self._indexer.wake()
        # The answer does not echo the upload back.
        return 201, document_view(attrs.evolve(document, content=None))

    async def list_documents(self, request: RestRequest) -> tuple[int, Any]:
        limit = page_limit(request.query.get("limit"))
        if limit is None:
            return 400, {"error": f"'limit' must be an integer from 1 to {MAX_LIMIT}."}
        before = request.query.get("before") or None
        found = await self._store.list_documents(_owner(request), limit=limit, before=before)
        if found is None:
            return 400, {"error": f"'before' names no document of yours: {before!r}."}
        return 200, [document_view(document) for document in found]

    async def get_document(self, request: RestRequest) -> tuple[int, Any]:
        content = FLAGS.get(request.query.get("content", "false"))
        if content is None:
            return 400, {"error": "'content' must be true or false."}
        document_id = request.params["document_id"]
        document = await self._store.get_document(_owner(request), document_id, content=content)
        if document is None:
            return 404, _unknown(document_id)
        return 200, document_view(document)

    async def delete_document(self, request: RestRequest) -> tuple[int, Any]:
        document_id = request.params["document_id"]
        if not await self._store.delete_document(_owner(request), document_id):
            return 404, _unknown(document_id)
        return 204, None


def _unknown(document_id: str) -> dict[str, str]:
    return {"error": f"Document '{document_id}' does not exist."}


def _owner(request: RestRequest) -> Owner:
    return Owner(request.principal.tenant_id, request.principal.user_id)
