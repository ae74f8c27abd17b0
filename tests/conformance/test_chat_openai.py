"""The chat hub with an agent backed by an OpenAI-compatible endpoint, end to end.

A fake chat-completions endpoint (tests/support/openai_endpoint.py) runs in the
test on 127.0.0.1; a real ``voisnap serve`` is configured by an agents file to
use it; the official JS client chats with that agent. The endpoint's streamed
deltas reach the client as StreamChunks, in order, and the stored reply (REST)
is the same text (seed 000, "Chat hub"; issue: "The OpenAI-compatible adapter
streams from a local test endpoint that speaks that API over HTTP").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.node import run_scenario
from tests.support.openai_endpoint import chat_completions, serving
from tests.support.server import ServerProcess

PIECES = ["Hello", ", ", "world", " from", " the", " endpoint."]


async def test_chat_openai_agent_streams_the_endpoints_reply(
    start_server: Callable[..., ServerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRITER_KEY", "sekret")  # the agents file names the variable
    endpoint = chat_completions(PIECES, total_tokens=17)
    with trio.fail_after(60):
        async with serving(endpoint) as base_url:
            agents = tmp_path / "agents.toml"
            agents.write_text(
                f'[agents.writer]\nbackend = "openai"\nbase_url = "{base_url}"\n'
                f'model = "tiny-model"\napi_key_env = "WRITER_KEY"\n'
            )
            server = start_server(settings={"agents_file": str(agents)})
            token = server.token()
            outcome = await trio.to_thread.run_sync(partial(
                run_scenario, "chat_openai.mjs", url=f"{server.url}/hubs/chat", token=token,
                agentId="writer", content="Say hello.", keepAliveMs=1000,
            ))
            async with httpx.AsyncClient() as http:
                messages = (await http.get(
                    f"{server.url}/sessions/{outcome['sent']['sessionId']}/messages",
                    headers={"Authorization": f"Bearer {token}"},
                )).json()

    reply = "".join(PIECES)
    assert outcome["deltas"] == reply
    names = [event["name"] for event in outcome["events"]]
    assert names[0] == "TaskQueued" and names[-1] == "TaskCompleted"
    chunks = [e["payload"] for e in outcome["events"] if e["name"] == "StreamChunk"]
    assert [c["delta"] for c in chunks if c["delta"]] == PIECES
    assert chunks[-1]["isFinal"] is True
    completed = outcome["events"][-1]["payload"]
    assert completed["tokensUsed"] == 17
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "Say hello."), ("assistant", reply)
    ]
    # The endpoint saw the model, the user's message, streaming, and the key.
    (request,) = endpoint.requests
    assert request.body["model"] == "tiny-model"
    assert request.body["stream"] is True
    assert request.body["messages"][-1] == {"role": "user", "content": "Say hello."}
    assert request.headers["authorization"] == "Bearer sekret"
