"""An OpenAI-compatible agent searches the user's documents (issue 14: "the OpenAI-compatible
agent too"), end to end.

A fake chat-completions endpoint (tests/support/openai_endpoint.py) runs in the test; a real
``voisnap serve`` is configured by an agents file with an agent ``researcher`` whose only tool
is ``search_documents``; the official JS client chats with it. The model asks for
``search_documents`` with a word of Ana's document, then replies. What the endpoint was sent
proves the rest: the tool was offered with its schema, and its result, the next request's
``tool`` message, holds Ana's chunk and document id when Ana asks, and nothing when Bob asks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.cluster import wait_until
from tests.support.node import run_scenario
from tests.support.openai_endpoint import (
    Endpoint,
    call_spec,
    in_turn,
    reply_answer,
    serving,
    tool_calls_answer,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

CEILING = 60
INDEXED_WITHIN = 10.0


def indexed(server: ServerProcess, bearer: str, document_id: str) -> dict[str, Any]:
    """The document once indexed: REST, polled with a deadline (``wait_until``; the event
    that says so goes to the notifications hub, and this test's client is the chat hub's)."""

    def document() -> dict[str, Any] | None:
        found = httpx.get(
            f"{server.url}/documents/{document_id}",
            timeout=5.0,
            headers={"Authorization": f"Bearer {bearer}"},
            trust_env=False,
        ).json()
        return found if found["state"] == "indexed" else None

    return wait_until(document, INDEXED_WITHIN, f"document {document_id} indexed")


def chat(server: ServerProcess, bearer: str, content: str) -> dict[str, Any]:
    return run_scenario(
        "chat_openai.mjs",
        url=f"{server.url}/hubs/chat",
        token=bearer,
        agentId="researcher",
        content=content,
        keepAliveMs=1000,
    )


async def test_openai_agent_searches_the_users_documents(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    word = f"pangolin{uuid.uuid4().hex[:6]}"
    search = call_spec("call_1", "search_documents", {"query": word, "limit": 2})
    endpoint = Endpoint(
        in_turn(
            tool_calls_answer(search),
            reply_answer("Done."),
            tool_calls_answer(search),
            reply_answer("Done."),
        )
    )
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            agents = tmp_path / "agents.toml"
            agents.write_text(
                f'[agents.researcher]\nbackend = "openai"\nbase_url = "{base_url}"\n'
                f'model = "tiny-model"\napi_key = "k"\ntools = ["search_documents"]\n'
            )
            server = start_server(settings={"agents_file": str(agents)})
            ana, bob = server.token("ana"), server.token("bob")
            uploaded = httpx.post(
                f"{server.url}/documents",
                params={"name": "field.txt"},
                content=f"We saw a {word} at night.".encode(),
                headers={"Authorization": f"Bearer {ana}", "Content-Type": "text/plain"},
                trust_env=False,
            ).json()
            document = await trio.to_thread.run_sync(indexed, server, ana, uploaded["documentId"])
            await trio.to_thread.run_sync(partial(chat, server, ana, f"Find the {word}."))
            await trio.to_thread.run_sync(partial(chat, server, bob, f"Find the {word}."))

    assert document["state"] == "indexed", document
    offered = endpoint.requests[0].body["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["search_documents"]
    assert offered[0]["function"]["parameters"]["required"] == ["query"]
    results = [
        json.loads(request.body["messages"][-1]["content"])
        for request in (endpoint.requests[1], endpoint.requests[3])
    ]
    assert results[0] == [
        {
            "documentId": uploaded["documentId"],
            "name": "field.txt",
            "chunk": 1,
            "content": f"We saw a {word} at night.",
            "score": results[0][0]["score"],
        }
    ]
    assert results[1] == []  # Bob's search: Ana's document is not his
