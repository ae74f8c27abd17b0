"""OpenAIAgent against a local OpenAI-compatible endpoint over real HTTP on 127.0.0.1.

The endpoint is a tiny ASGI app served by hypercorn's trio worker inside the
test (port 0, torn down with the test's nursery). It records each request and
streams ``data: {chunk}`` Server-Sent Events the way the chat-completions API
does: ``choices[0].delta.content`` pieces, a final ``usage`` chunk, then
``data: [DONE]``, each event its own HTTP body write (and one event split
across two writes). The agent must send the model, the history then the user's
message, ``stream: true`` and the key; yield Tokens as they arrive (one test
holds the stream open until the first Token is seen); and end with a Final
whose content is the Tokens joined and whose ``tokens_used`` is the endpoint's
count. Every failure — an error status, a malformed chunk, nobody listening — is
an ``AgentError`` whose text is safe to show the user.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import trio

from tests.support.openai_endpoint import Endpoint, Send, event, serving, streaming
from voisnap.agents.base import (
    AgentError,
    AgentEvent,
    AgentRequest,
    Decision,
    Final,
    Status,
    Token,
)
from voisnap.agents.builtin import tokens_of
from voisnap.agents.openai import OpenAIAgent, OpenAIConfig
from voisnap.storage.base import Message, Owner

CEILING = 10
ADA = Owner("acme", "ada")
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


def delta(content: str) -> bytes:
    return event({"id": "c1", "object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]})


def usage(total: int) -> bytes:
    return event({"id": "c1", "choices": [],
                  "usage": {"prompt_tokens": 1, "completion_tokens": total - 1,
                            "total_tokens": total}})


DONE = event("[DONE]")


class NoQuestions:
    async def request_approval(self, action: str, details: dict[str, Any]) -> Decision:
        raise AssertionError("unexpected approval request")

    async def ask_user(self, question: str) -> str:
        raise AssertionError("unexpected question")


HISTORY = (
    Message("m1", "sess_1", ADA, "user", "What is 2+2?", T0),
    Message("m2", "sess_1", ADA, "assistant", "4", T0),
)


def request(content: str = "And 3+3?", history: tuple[Message, ...] = HISTORY) -> AgentRequest:
    return AgentRequest("task_1", "sess_1", ADA, content, history=history)


def agent_for(base_url: str, **config: Any) -> OpenAIAgent:
    return OpenAIAgent("writer", OpenAIConfig(base_url=base_url, model="tiny-model", **config))


async def collect(agent: OpenAIAgent, into: list[AgentEvent], content: str = "And 3+3?") -> None:
    async for item in agent.run(request(content), NoQuestions()):
        into.append(item)


# -- a streamed reply ------------------------------------------------------------------------------


async def test_openai_agent_streams_tokens_and_a_final_reply() -> None:
    endpoint = Endpoint(streaming(
        event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        b": keep-alive comment\n\n",
        delta("Hel"),
        delta("lo"),
        delta(" world"),
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        usage(42),
        DONE,
    ))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            agent = agent_for(base_url + "/", api_key="sk-test", system_prompt="Be brief.",
                              temperature=0.5)
            await collect(agent, events)

    assert events == [
        Status("thinking"),
        Token("Hel"),
        Token("lo"),
        Token(" world"),
        Final("Hello world", tokens_used=42),
    ]
    [sent] = endpoint.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body["model"] == "tiny-model"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.5
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]


async def test_openai_agent_yields_each_token_as_it_arrives() -> None:
    """The endpoint holds the rest of the stream until the agent has yielded the
    first Token: an agent that buffered the response would never see it."""
    first_seen = trio.Event()

    async def answer(send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": delta("first "), "more_body": True})
        await first_seen.wait()
        for part in (delta("second"), usage(7), DONE):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    tokens: list[str] = []
    final: Final | None = None
    with trio.fail_after(CEILING):
        async with serving(Endpoint(answer)) as base_url:
            async for item in agent_for(base_url).run(request(), NoQuestions()):
                if isinstance(item, Token):
                    tokens.append(item.delta)
                    first_seen.set()
                elif isinstance(item, Final):
                    final = item
    assert tokens == ["first ", "second"]
    assert final == Final("first second", tokens_used=7)


async def test_openai_agent_joins_an_event_split_across_writes() -> None:
    whole = delta("split")
    endpoint = Endpoint(streaming(whole[:13], whole[13:], delta(" ok"), DONE))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), events)
    assert [e.delta for e in events if isinstance(e, Token)] == ["split", " ok"]
    assert isinstance(events[-1], Final) and events[-1].content == "split ok"


async def test_openai_agent_counts_words_without_usage_and_sends_no_key() -> None:
    endpoint = Endpoint(streaming(delta("Six, "), delta("of course."), DONE))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), events, content="And 3+3?")
    final = events[-1]
    assert isinstance(final, Final) and final.content == "Six, of course."
    assert final.tokens_used == len(tokens_of("And 3+3?")) + len(tokens_of("Six, of course."))
    [sent] = endpoint.requests
    assert "authorization" not in sent.headers
    assert sent.body["messages"][0] == {"role": "user", "content": "What is 2+2?"}  # no system
    assert "temperature" not in sent.body


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b'{"error": {"message": "bad key"}}', "The model endpoint answered 401: "),
        (500, b"internal trouble", "The model endpoint answered 500: internal trouble"),
        (404, b"x" * 1000, "The model endpoint answered 404: " + "x" * 300),
    ],
)
async def test_openai_agent_error_status_is_an_agent_error(
    status: int, body: bytes, expected: str
) -> None:
    endpoint = Endpoint(streaming(body, status=status, content_type=b"application/json"))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            with pytest.raises(AgentError) as caught:
                await collect(agent_for(base_url, api_key="sk-bad"), events)
    message = str(caught.value)
    assert message.startswith(expected)
    assert len(message) <= len("The model endpoint answered 404: ") + 300
    if status == 401:
        assert "bad key" in message
    assert events == [Status("thinking")]


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (event("{not json"), "The model endpoint sent a chunk that is not JSON."),
        (event({"error": {"message": "overloaded"}}), "The model endpoint reported an error: "),
        (event({"choices": [{"delta": "Hel"}]}), "The model endpoint"),
        (event({"choices": 5}), "The model endpoint"),
    ],
    ids=["not-json", "error-chunk", "delta-not-an-object", "choices-not-a-list"],
)
async def test_openai_agent_malformed_chunk_is_an_agent_error(chunk: bytes, expected: str) -> None:
    endpoint = Endpoint(streaming(delta("Hel"), chunk, delta("lo"), DONE))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            with pytest.raises(AgentError) as caught:
                await collect(agent_for(base_url), events)
    assert str(caught.value).startswith(expected)
    assert events == [Status("thinking"), Token("Hel")]


async def test_openai_agent_error_chunk_text_is_reported() -> None:
    endpoint = Endpoint(streaming(event({"error": {"message": "overloaded"}}), DONE))
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            with pytest.raises(AgentError, match="overloaded"):
                await collect(agent_for(base_url), [])


async def test_openai_agent_unreachable_endpoint_is_an_agent_error() -> None:
    # A bound socket that never listens: connecting to it is refused at once,
    # and holding it keeps anyone else from taking the port meanwhile.
    with trio.socket.socket() as reserved:
        await reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        events: list[AgentEvent] = []
        with trio.fail_after(CEILING), pytest.raises(AgentError) as caught:
            await collect(agent_for(f"http://127.0.0.1:{port}/v1"), events)
    assert str(caught.value).startswith("The model endpoint could not be reached: ")
    assert events == [Status("thinking")]
