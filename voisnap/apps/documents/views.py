"""A document as the REST routes show it (docs/documents.md, "The document"): the
store's ``Document`` in the wire's camelCase, times as ISO-8601 UTC strings."""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from ...hubs.binder import unstructure
from ...storage.base import Document


@attrs.frozen
class DocumentView:
    document_id: str
    name: str
    content_type: str
    size: int
    state: str
    chunks: int
    error: str | None
    created_at: datetime.datetime
    indexed_at: datetime.datetime | None


def document_view(document: Document) -> dict[str, Any]:
    """The document's fields, and its ``content`` when it was read with it."""
    view = unstructure(
        DocumentView(
            document.document_id,
            document.name,
            document.content_type,
            document.size,
            document.state.value,
            document.chunks,
            document.error,
            document.created_at,
            document.indexed_at,
        )
    )
    if document.content is not None:
        view["content"] = document.content
    return view
