"""The ``search_documents`` tool, and how the built-in agent is asked to use it
(docs/agents.md, "The tools"; docs/documents.md, "Searching").

The tool searches the user's own documents (the store scopes every search by
tenant and user: another user's documents are never found) and returns the
best chunks first: ``[{documentId, name, chunk, content, score}]``. The query
is the user's text, never search syntax (``storage.sql_documents``).

``sophon`` calls it for "search my documents for X" and "find X in my
documents" (``search_request``), and answers with the best chunks, each with
its document's name and id and an excerpt around the first word found
(``describe_found``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..storage.base import DocumentStore, Owner
from .base import ToolSpec

NAME = "search_documents"
MAX_QUERY = 500
DEFAULT_LIMIT = 5
MAX_LIMIT = 20
AGENT_LIMIT = 3
EXCERPT = 160

SPEC = ToolSpec(
    NAME,
    "Search the user's uploaded documents (plain text and Markdown) by words: the best "
    "matching passages first, each with its document's id and name.",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)


async def search_documents(
    store: DocumentStore, owner: Owner, query: str, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    hits = await store.search_documents(owner, query, limit=limit)
    return [
        {
            "documentId": hit.document_id,
            "name": hit.name,
            "chunk": hit.chunk_number,
            "content": hit.content,
            "score": round(hit.score, 6),
        }
        for hit in hits
    ]


# -- the built-in agent's phrasing ----------------------------------------------------------------

_DOCUMENTS = r"(?:my|the)\s+(?:documents?|docs|files)"
PHRASINGS = (
    re.compile(
        rf"^\s*(?:please\s+)?search\s+(?:in\s+|through\s+)?{_DOCUMENTS}\s+for\s+"
        r"(?P<query>.+?)\s*[.?!]*\s*$",
        re.I | re.S,
    ),
    re.compile(
        rf"^\s*(?:please\s+)?(?:find|look\s+up|look\s+for|search\s+for)\s+(?P<query>.+?)\s+"
        rf"in\s+{_DOCUMENTS}\s*[.?!]*\s*$",
        re.I | re.S,
    ),
)
QUOTES = "\"'\u201c\u201d\u2018\u2019"  # straight and curly quotes
WORD = re.compile(r"[^\W_]+")


def search_request(content: str) -> dict[str, Any] | None:
    """The tool's arguments if ``content`` asks to search the documents."""
    for phrasing in PHRASINGS:
        found = phrasing.match(content)
        query = found.group("query").strip().strip(QUOTES).strip() if found else ""
        if query:
            return {"query": query[:MAX_QUERY], "limit": AGENT_LIMIT}
    return None


def describe_found(query: str) -> Callable[[list[dict[str, Any]]], str]:
    """The reply to the tool's result: the chunks found, each with its document."""

    def reply(hits: list[dict[str, Any]]) -> str:
        if not hits:
            return f"I found nothing about “{query}” in your documents."
        lines = [
            f"- “{hit['name']}” ({hit['documentId']}), part {hit['chunk']}: "
            f"{excerpt(hit['content'], query)}"
            for hit in hits
        ]
        return "Here is what I found in your documents:\n" + "\n".join(lines)

    return reply


def excerpt(content: str, query: str, width: int = EXCERPT) -> str:
    """About ``width`` characters of ``content`` around the first word of
    ``query`` it contains (its start if none: stemming matched a form of it)."""
    text = " ".join(content.split())
    lowered = text.lower()
    positions = [lowered.find(word.lower()) for word in WORD.findall(query)]
    first = min((p for p in positions if p >= 0), default=0)
    start = max(0, first - width // 3)
    end = min(len(text), start + width)
    return ("…" if start else "") + text[start:end].strip() + ("…" if end < len(text) else "")
