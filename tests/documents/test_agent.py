"""The ``search_documents`` tool (``agents.documents``) and ``sophon``'s phrasings for it:
the tool searches the caller's documents only, on a real store; the built-in agent calls
it for "search my documents for X" and "find X in my documents" and answers with the
chunks found and their document ids (docs/agents.md)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from voisnap.agents.base import AgentRequest, CallTools, Final, ToolCall, ToolResult
from voisnap.agents.builtin import BuiltinAgent
from voisnap.agents.documents import describe_found, excerpt, search_request
from voisnap.agents.tools import SPECS, Toolbox, ToolError
from voisnap.storage.base import Document, DocumentState, Owner
from voisnap.storage.sqlite import SqliteStore

CEILING = 10
ADA = Owner("acme", "ada")
BOB = Owner("acme", "bob")
T0 = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "voisnap.db")
    await opened.open()
    text = "# Zoo\n\nThe okapi is shy.\n\n## Birds\n\nThe kea is clever, like an okapi."
    await opened.add_document(
        Document(
            "doc_1",
            ADA,
            "zoo.md",
            "text/markdown",
            len(text),
            DocumentState.UPLOADED,
            T0,
            content=text,
        )
    )
    claimed = await opened.claim_document("n", T0, T0 + datetime.timedelta(minutes=1))
    assert claimed is not None
    await opened.index_document(
        "doc_1",
        "n",
        ["# Zoo\n\nThe okapi is shy.", "## Birds\n\nThe kea is clever, like an okapi."],
        T0,
    )
    yield opened
    await opened.aclose()


async def test_agent_tool_searches_the_callers_documents(store: SqliteStore) -> None:
    toolbox = Toolbox(store)
    with trio.fail_after(CEILING):
        adas = await toolbox.run(ADA, "search_documents", {"query": "kea"})
        bobs = await toolbox.run(BOB, "search_documents", {"query": "kea"})
        limited = await toolbox.run(ADA, "search_documents", {"query": "okapi", "limit": 1})
        with pytest.raises(ToolError, match="Invalid parameters for 'search_documents'"):
            await toolbox.run(ADA, "search_documents", {"query": ""})
    assert [(hit["documentId"], hit["name"], hit["chunk"]) for hit in adas] == [
        ("doc_1", "zoo.md", 2)
    ]
    assert adas[0]["content"] == "## Birds\n\nThe kea is clever, like an okapi."
    assert isinstance(adas[0]["score"], float)
    assert bobs == []
    assert len(limited) == 1
    assert "search_documents" in SPECS


@pytest.mark.parametrize(
    ("message", "query"),
    [
        ("search my documents for okapi", "okapi"),
        ("Please search my documents for “the shy okapi”?", "the shy okapi"),
        ("search in the documents for kea", "kea"),
        ("find okapi in my documents", "okapi"),
        ("look up 'kea birds' in my docs.", "kea birds"),
        ("Search my files for zoo!", "zoo"),
    ],
)
def test_agent_phrasings(message: str, query: str) -> None:
    assert search_request(message) == {"query": query, "limit": 3}


@pytest.mark.parametrize(
    "message", ["search my documents for", "find in my documents", "what is 2 + 2", "my notes"]
)
def test_agent_other_messages_are_not_searches(message: str) -> None:
    assert search_request(message) is None


def test_agent_reply_names_documents_and_excerpts() -> None:
    hits = [
        {
            "documentId": "doc_1",
            "name": "zoo.md",
            "chunk": 2,
            "content": "## Birds\n\nThe kea is clever.",
            "score": 1.0,
        }
    ]
    assert describe_found("kea")(hits) == (
        "Here is what I found in your documents:\n"
        "- “zoo.md” (doc_1), part 2: ## Birds The kea is clever."
    )
    assert describe_found("emu")([]) == "I found nothing about “emu” in your documents."


def test_agent_excerpt_is_around_the_word() -> None:
    text = "a" * 300 + " okapi " + "b" * 300
    cut = excerpt(text, "OKAPI")
    assert "okapi" in cut and cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= 162


async def test_agent_sophon_searches_then_answers(autojump_clock: MockClock) -> None:
    agent = BuiltinAgent("sophon", token_delay=0.01)
    first = [
        e
        async for e in agent.step(
            AgentRequest("task_1", "sess_1", ADA, "search my documents for kea")
        )
    ]
    assert isinstance(first[-1], CallTools)
    [call] = first[-1].calls
    assert call == ToolCall("call_1", "search_documents", {"query": "kea", "limit": 3})
    result = ToolResult(
        "call_1",
        "search_documents",
        True,
        [
            {
                "documentId": "doc_1",
                "name": "zoo.md",
                "chunk": 2,
                "content": "The kea.",
                "score": 2.0,
            }
        ],
    )
    second = [
        e
        async for e in agent.step(
            AgentRequest(
                "task_1", "sess_1", ADA, "search my documents for kea", transcript=(call, result)
            )
        )
    ]
    assert isinstance(second[-1], Final)
    assert "doc_1" in second[-1].content and "The kea." in second[-1].content
