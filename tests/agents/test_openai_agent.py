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

Function calling (issue 12): the agent sends its tools as ``tools`` and the task's
transcript after the user's message (per step that called tools, an assistant
message with its ``tool_calls``, then one ``tool`` message per result); a step whose
stream carries ``delta.tool_calls`` fragments (the id and the name first, the
arguments text in pieces, calls possibly interleaved by ``index``) ends with
``CallTools``, the calls assembled in index order; fragments that cannot be
assembled (no name, arguments that are not a JSON object, no index) are an
``AgentError`` naming the problem.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import trio

from tests.support.openai_endpoint import (
    CallSpec,
    Endpoint,
    Send,
    call_spec,
    event,
    serving,
    streaming,
    tool_call_chunk,
    tool_calls_answer,
)
from voisnap.agents.base import (
    AgentError,
    AgentEvent,
    AgentRequest,
    CallTools,
    Final,
    Status,
    TextPart,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
)
from voisnap.agents.builtin import tokens_of
from voisnap.agents.openai import OpenAIAgent, OpenAIConfig
from voisnap.agents.tools import SPECS, ToolSet
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


HISTORY = (
    Message("m1", "sess_1", ADA, "user", "What is 2+2?", T0),
    Message("m2", "sess_1", ADA, "assistant", "4", T0),
)


def request(content: str = "And 3+3?", history: tuple[Message, ...] = HISTORY,
            **more: Any) -> AgentRequest:
    return AgentRequest("task_1", "sess_1", ADA, content, history=history, **more)


def agent_for(base_url: str, **config: Any) -> OpenAIAgent:
    return OpenAIAgent("writer", OpenAIConfig(base_url=base_url, model="tiny-model", **config))


async def collect(agent: OpenAIAgent, into: list[AgentEvent], content: str = "And 3+3?",
                  **more: Any) -> None:
    async for item in agent.step(request(content, **more)):
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
        Final("Hello world", tokens_used=42, input_tokens=1),  # the usage's prompt_tokens
    ]
    [sent] = endpoint.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body["model"] == "tiny-model"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.5
    assert "tools" not in sent.body  # a request without tools offers none
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
            async for item in agent_for(base_url).step(request()):
                if isinstance(item, Token):
                    tokens.append(item.delta)
                    first_seen.set()
                elif isinstance(item, Final):
                    final = item
    assert tokens == ["first ", "second"]
    assert final == Final("first second", tokens_used=7, input_tokens=1)


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


# -- function calling ------------------------------------------------------------------------------


async def test_openai_agent_assembles_streamed_tool_calls() -> None:
    """Two calls, their arguments split across many chunks (3 characters each): one
    CallTools with both, in index order, arguments parsed; no Token, no Final."""
    endpoint = Endpoint(tool_calls_answer(
        call_spec("call_a", "calculator", {"expression": "12 * 7"}, piece=3),
        call_spec("call_b", "add_note", {"text": "call Ana at 5, “urgent”"}, piece=3),
        total_tokens=31,
    ))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), events)
    assert events == [
        Status("thinking"),
        CallTools(
            (
                ToolCall("call_a", "calculator", {"expression": "12 * 7"}),
                ToolCall("call_b", "add_note", {"text": "call Ana at 5, “urgent”"}),
            ),
            tokens_used=31,
        ),
    ]


async def test_openai_agent_assembles_interleaved_tool_calls_by_index() -> None:
    endpoint = Endpoint(tool_calls_answer(
        call_spec("call_a", "calculator", {"expression": "1 + 2 + 3"}, piece=2),
        call_spec("call_b", "list_notes", {}, piece=1),
        call_spec("call_c", "delete_note", {"text": "milk"}, piece=4),
        interleave=True,
    ))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), events)
    outcome = events[-1]
    assert isinstance(outcome, CallTools)
    assert outcome.calls == (
        ToolCall("call_a", "calculator", {"expression": "1 + 2 + 3"}),
        ToolCall("call_b", "list_notes", {}),
        ToolCall("call_c", "delete_note", {"text": "milk"}),
    )


async def test_openai_agent_text_before_tool_calls_is_streamed() -> None:
    """A step may write before it calls tools: its Tokens come first, then CallTools
    (the runtime keeps the text in the transcript)."""
    endpoint = Endpoint(tool_calls_answer(
        call_spec("call_1", "current_time", {}), text=("Let me ", "check."),
    ))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), events)
    assert events[:3] == [Status("thinking"), Token("Let me "), Token("check.")]
    assert events[3:] == [CallTools((ToolCall("call_1", "current_time", {}),), tokens_used=11)]


async def test_openai_agent_a_call_without_id_or_arguments_still_assembles() -> None:
    """An endpoint that sends no ``id`` gets one made from the index; no arguments
    at all means ``{}``."""
    endpoint = Endpoint(streaming(
        tool_call_chunk({"index": 0, "function": {"name": "current_time"}}),
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        event("[DONE]"),
    ))
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), events)
    outcome = events[-1]
    assert isinstance(outcome, CallTools)
    assert outcome.calls == (ToolCall("call_0", "current_time", {}),)
    assert outcome.tokens_used == len(tokens_of("And 3+3?"))  # no usage: words


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [
        (tool_calls_answer(CallSpec("call_1", "calculator", '{"expression": "1+1"')),
         "The model endpoint sent arguments for 'calculator' that are not JSON."),
        (tool_calls_answer(CallSpec("call_1", "calculator", '["1+1"]')),
         "The arguments for 'calculator' are not a JSON object."),
        (tool_calls_answer(CallSpec("call_1", None, '{"expression": "1+1"}')),
         "The model endpoint asked for a tool without naming it."),
        (streaming(tool_call_chunk({"index": "zero", "function": {"name": "x"}}), DONE),
         "The model endpoint sent a tool call without an index."),
        (streaming(tool_call_chunk({"index": 0, "function": "calculator"}), DONE),
         "The model endpoint sent a tool call without a function object."),
        (streaming(event({"choices": [{"delta": {"tool_calls": {"index": 0}}}]}), DONE),
         "The model endpoint sent 'tool_calls' that are not a list of objects."),
        (streaming(event({"choices": [{"delta": {"tool_calls": ["calculator"]}}]}), DONE),
         "The model endpoint sent 'tool_calls' that are not a list of objects."),
    ],
    ids=["arguments-not-json", "arguments-not-object", "no-name", "index-not-int",
         "function-not-object", "tool-calls-not-a-list", "tool-call-not-an-object"],
)
async def test_openai_agent_malformed_tool_calls_are_an_agent_error(
    fragments: Any, expected: str
) -> None:
    events: list[AgentEvent] = []
    with trio.fail_after(CEILING):
        async with serving(Endpoint(fragments)) as base_url:
            with pytest.raises(AgentError) as caught:
                await collect(agent_for(base_url), events)
    assert str(caught.value) == expected
    assert not [e for e in events if isinstance(e, CallTools | Final)]


async def test_openai_agent_sends_its_tools() -> None:
    endpoint = Endpoint(streaming(delta("ok"), DONE))
    tools = ToolSet(("calculator", "ask_user")).specs()
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            await collect(agent_for(base_url), [], tools=tools)
    [body] = endpoint.bodies()
    assert body["tools"] == [
        {"type": "function", "function": {"name": "calculator",
                                          "description": SPECS["calculator"].description,
                                          "parameters": SPECS["calculator"].parameters}},
        {"type": "function", "function": {"name": "ask_user",
                                          "description": SPECS["ask_user"].description,
                                          "parameters": SPECS["ask_user"].parameters}},
    ]


TRANSCRIPT: Transcript = (
    TextPart("Let me look. "),
    ToolCall("call_a", "list_notes", {}),
    ToolCall("call_b", "calculator", {"expression": "1/0"}),
    ToolResult("call_a", "list_notes", True, [{"noteId": "n1", "text": "milk"}]),
    ToolResult("call_b", "calculator", False, "Division by zero."),
    ToolCall("call_c", "delete_note", {"text": "milk"}),
    ToolResult("call_c", "delete_note", False, "The user rejected this action: keep it"),
)


async def test_openai_agent_sends_the_transcript_as_tool_calls_and_tool_messages() -> None:
    """After the user's message: one assistant message per step that called tools (its
    text, its calls with their arguments as JSON text), one ``tool`` message per
    result (the value as JSON; a failure as ``{"error": why}``)."""
    endpoint = Endpoint(streaming(delta("Kept it."), DONE))
    with trio.fail_after(CEILING):
        async with serving(endpoint) as base_url:
            events: list[AgentEvent] = []
            await collect(agent_for(base_url, system_prompt="Be brief."), events,
                          content="forget milk", transcript=TRANSCRIPT)
    # No usage reported: words are counted, the user's as read, the reply's as written.
    read = len(tokens_of("forget milk"))
    assert events[-1] == Final("Kept it.", tokens_used=read + 2, input_tokens=read)
    [body] = endpoint.bodies()
    messages = body["messages"]
    assert messages[:4] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "forget milk"},
    ]
    assert messages[4:] == [
        {"role": "assistant", "content": "Let me look. ", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "list_notes", "arguments": "{}"}},
            {"id": "call_b", "type": "function",
             "function": {"name": "calculator", "arguments": json.dumps({"expression": "1/0"})}},
        ]},
        {"role": "tool", "tool_call_id": "call_a",
         "content": json.dumps([{"noteId": "n1", "text": "milk"}])},
        {"role": "tool", "tool_call_id": "call_b",
         "content": json.dumps({"error": "Division by zero."})},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_c", "type": "function",
             "function": {"name": "delete_note", "arguments": json.dumps({"text": "milk"})}},
        ]},
        {"role": "tool", "tool_call_id": "call_c",
         "content": json.dumps({"error": "The user rejected this action: keep it"})},
    ]
    for message in messages[4:]:  # what the API requires of each
        if message["role"] == "tool":
            json.loads(message["content"])
        else:
            for call in message["tool_calls"]:
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
