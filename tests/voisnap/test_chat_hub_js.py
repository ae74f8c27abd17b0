"""Voisnap's ChatHub with the official ``@microsoft/signalr`` client (issue 17,
``voisnap_chat.mjs``): the seed's flow, resume, cancel, and the seed's React
hook logic rendering exactly the stored replies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.node import run_scenario
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.02"}
    with ServerProcess(tmp_path_factory.mktemp("voisnap-chat") / "data", settings) as started:
        yield started


def chat_url(server: ServerProcess, **query: str) -> str:
    return str(httpx.URL(f"{server.url}/voisnap/hubs/chat", params={"agentId": "sophon", **query}))


def stored(server: ServerProcess, token: str, session_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.url}/sessions/{session_id}/messages",
        headers={"authorization": f"Bearer {token}"}, timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()


def named(events: list[list[Any]], name: str) -> list[dict[str, Any]]:
    return [payload for event, payload in events if event == name]


def test_the_seeds_flow_and_the_hook_render_the_stored_replies(server: ServerProcess) -> None:
    token = server.token("hook-user")
    seen = run_scenario(
        "voisnap_chat.mjs", timeout=60, url=chat_url(server), token=token,
        steps=["send:Hi, I need help with my account", "send:What is 2 + 3?", "end"],
    )
    events = seen["events"]
    assert events[0][0] == "SessionStarted"
    started = seen["started"]
    session_id = started["sessionId"]
    assert started == {"sessionId": session_id, "agentId": "sophon", "resumed": False}
    replies = [m for m in stored(server, token, session_id) if m["role"] == "assistant"]
    assert len(replies) == 2
    # The hook renders exactly the stored replies, under their stored ids.
    assert seen["rendered"] == [{"id": m["messageId"], "content": m["content"]} for m in replies]
    messages = named(events, "MessageReceived")
    for reply in replies:
        mine = [m for m in messages if m["messageId"] == reply["messageId"]]
        chunks, finals = mine[:-1], mine[-1:]
        assert chunks and all(m["isChunk"] and not m["isFinal"] for m in chunks)
        assert "".join(m["content"] for m in chunks) == reply["content"]
        assert finals == [{**finals[0], "isChunk": False, "isFinal": True,
                           "content": reply["content"]}]
    typing = [p["isTyping"] for p in named(events, "TypingIndicator")]
    assert typing == [True, False, True, False]
    # Typing goes off only after the final.
    names = [name for name, _ in events]
    last_final = max(
        i for i, (n, p) in enumerate(events) if n == "MessageReceived" and p["isFinal"])
    assert names.index("TypingIndicator", last_final) > last_final
    # EndSessionAsync: SessionEnded, ConversationEnded (on which the hook
    # stops its connection), then the close.
    assert names[-2:] == ["SessionEnded", "ConversationEnded"]
    assert named(events, "ConversationEnded") == [
        {"conversationId": session_id, "reason": "ended_by_user"}]
    assert named(events, "SessionEnded") == [{"sessionId": session_id, "reason": "ended_by_user"}]
    assert seen["state"] == "Disconnected"
    assert named(events, "Error") == []
    # A Voisnap conversation is a session like any other.
    sessions = httpx.get(f"{server.url}/sessions", headers={"authorization": f"Bearer {token}"},
                         timeout=5).json()
    assert session_id in [s["sessionId"] for s in sessions]


def test_a_session_resumes_with_its_id_and_history_and_not_once_ended(
    server: ServerProcess,
) -> None:
    token = server.token("resumer")
    first = run_scenario("voisnap_chat.mjs", timeout=60, url=chat_url(server), token=token,
                         steps=["send:remember the word giraffe"])
    session_id = first["sessionId"]
    again = run_scenario("voisnap_chat.mjs", timeout=60,
                         url=chat_url(server, sessionId=session_id), token=token,
                         steps=["send:hello again", "end"])
    assert again["started"] == {"sessionId": session_id, "agentId": "sophon", "resumed": True}
    messages = stored(server, token, session_id)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    gone = run_scenario("voisnap_chat.mjs", timeout=30, expectRefusal=True,
                        url=chat_url(server, sessionId=session_id), token=token)
    assert [name for name, _ in gone["events"]] == ["Error"]
    error = named(gone["events"], "Error")[0]
    assert error["code"] == "RECONNECT_FAILED" and error["recoverable"] is False
    assert session_id in error["message"]
    assert "RECONNECT_FAILED" in gone["closeError"]


def test_cancel_mid_reply_ends_with_what_was_produced(tmp_path: Any) -> None:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.2"}  # slow enough to cancel midway
    with ServerProcess(tmp_path / "data", settings) as slow:
        token = slow.token("canceller")
        seen = run_scenario(
            "voisnap_chat.mjs", timeout=60, url=chat_url(slow), token=token,
            steps=["cancel:Tell me a long story about the sea and its ships please"],
        )
    messages = named(seen["events"], "MessageReceived")
    final = messages[-1]
    assert final["isFinal"] and not final["isChunk"]
    chunks = [m for m in messages[:-1] if m["messageId"] == final["messageId"]]
    assert chunks and final["content"] == "".join(m["content"] for m in chunks)
    assert [p["isTyping"] for p in named(seen["events"], "TypingIndicator")] == [True, False]
    assert seen["rendered"] == [{"id": final["messageId"], "content": final["content"]}]
