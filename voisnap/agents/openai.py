"""An agent backed by any OpenAI-compatible chat-completions endpoint, streaming,
with function calling.

``POST {base_url}/chat/completions`` with ``"stream": true`` answers with
Server-Sent Events: ``data: {json chunk}`` lines, each chunk's
``choices[0].delta.content`` a piece of the reply, ending with
``data: [DONE]``; with ``stream_options.include_usage`` the last chunk carries
``usage.total_tokens``. The request carries the session's history, oldest
first, the user's message, then the task's transcript: each step that called
tools as an assistant message with its ``tool_calls``, each result as a
``tool`` message. The agent's tools go in ``tools``.

One request is one step (``Agent.step``): a reply streams ``content`` deltas
and ends the task (``Final``); a request for tools streams
``delta.tool_calls`` fragments (each with its ``index``; the first carries the
``id`` and ``function.name``, later ones more of ``function.arguments``, a JSON
text), assembled here into ``CallTools``. The runtime runs the tools and asks
for the next step, within its step budget.

The HTTP client is httpx, which runs under trio (through anyio): no asyncio is
bridged in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import attrs
import httpx
import trio

from .base import (
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
from .builtin import tokens_of
from .panel_prompts import discussion_messages

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0


@attrs.frozen
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None


class OpenAIAgent:
    def __init__(self, agent_id: str, config: OpenAIConfig) -> None:
        self.agent_id = agent_id
        self._config = config

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        parts: list[str] = []
        calls = ToolCallParts()
        usage: tuple[int, int] | None = None  # (total, prompt)
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream(
                    "POST", self._url(), json=self._body(request), headers=self._headers()
                ) as response,
            ):
                if response.status_code != 200:
                    body = (await response.aread()).decode(errors="replace")[:300]
                    raise AgentError(f"The model endpoint answered {response.status_code}: {body}")
                async for chunk in _chunks(response):
                    delta = _delta(chunk)
                    if delta:
                        parts.append(delta)
                        yield Token(delta)
                    calls.add(_tool_call_deltas(chunk))
                    usage = _usage(chunk) or usage
        except httpx.HTTPError as error:
            raise AgentError(f"The model endpoint could not be reached: {error}") from None
        content = "".join(parts)
        if usage is None:  # an endpoint that does not report usage: count words instead
            read = len(tokens_of(request.content))
            usage = (read + len(tokens_of(content)), read)
        total, read = usage
        if calls:
            yield CallTools(calls.assemble(), tokens_used=total, input_tokens=read)
        else:
            yield Final(content, tokens_used=total, input_tokens=read)

    def _url(self) -> str:
        return self._config.base_url.rstrip("/") + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        key = self._config.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, request: AgentRequest) -> dict[str, Any]:
        messages = self._messages(request)
        body: dict[str, Any] = {
            "model": self._config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
        if self._config.temperature is not None:
            body["temperature"] = self._config.temperature
        return body

    def _messages(self, request: AgentRequest) -> list[dict[str, Any]]:
        if request.discussion is not None:  # a panel's turn or verdict: no chat history
            return discussion_messages(request.discussion, self._config.system_prompt)
        messages: list[dict[str, Any]] = []
        if self._config.system_prompt:
            messages.append({"role": "system", "content": self._config.system_prompt})
        context = client_context(request)
        if context:
            messages.append({"role": "system", "content": context})
        messages += [{"role": m.role, "content": m.content} for m in request.history]
        messages.append({"role": "user", "content": request.content})
        return messages + transcript_messages(request.transcript)


def client_context(request: AgentRequest) -> str | None:
    """What the user's client said at connect, for the model to take into account."""
    lines = []
    if request.language:
        lines.append(f"Reply in the language of BCP 47 tag {request.language}.")
    if request.client_metadata:
        metadata = json.dumps(request.client_metadata, ensure_ascii=False, sort_keys=True)
        lines.append(f"The user's client sent this metadata about the conversation: {metadata}")
    if request.message_metadata:
        metadata = json.dumps(request.message_metadata, ensure_ascii=False, sort_keys=True)
        lines.append(f"The user's client attached this metadata to the message: {metadata}")
    return "\n".join(lines) or None


async def _chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of a Server-Sent Events body, until ``[DONE]``."""
    async with aclosing(response.aiter_lines()) as lines:
        async for line in lines:
            if not line.startswith("data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield _chunk(data)
            await trio.lowlevel.checkpoint()


def _chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise AgentError("The model endpoint sent a chunk that is not JSON.") from None
    if not isinstance(chunk, dict):
        raise AgentError("The model endpoint sent a chunk that is not a JSON object.")
    if "error" in chunk:
        raise AgentError(f"The model endpoint reported an error: {chunk['error']}")
    return chunk


def _delta(chunk: dict[str, Any]) -> str:
    """``choices[0].delta.content``, or "" when the chunk carries none."""
    choices = chunk.get("choices")
    if choices is None or choices == []:
        return ""
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise AgentError(
            "The model endpoint sent a chunk whose 'choices' is not a list of objects."
        )
    delta = choices[0].get("delta") or {}
    if not isinstance(delta, dict):
        raise AgentError("The model endpoint sent a chunk whose 'delta' is not an object.")
    content = delta.get("content")
    return content if isinstance(content, str) else ""


def _usage(chunk: dict[str, Any]) -> tuple[int, int] | None:
    """``usage``'s (total_tokens, prompt_tokens), the prompt's 0 if not given."""
    usage = chunk.get("usage")
    if not isinstance(usage, dict) or not _is_count(usage.get("total_tokens")):
        return None
    prompt = usage.get("prompt_tokens")
    return usage["total_tokens"], prompt if _is_count(prompt) else 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# -- function calling -----------------------------------------------------------------------------


def transcript_messages(transcript: Transcript) -> list[dict[str, Any]]:
    """The transcript as Chat Completions messages: per step that called tools,
    one assistant message (its text, its calls), then one tool message per result."""
    messages: list[dict[str, Any]] = []
    text = ""
    for step in transcript:
        match step:
            case TextPart(content=content):
                text += content
            case ToolCall():
                if not messages or messages[-1].get("role") != "assistant" or text:
                    step_message = {"role": "assistant", "content": text or None, "tool_calls": []}
                    messages.append(step_message)
                    text = ""
                messages[-1]["tool_calls"].append(
                    {
                        "id": step.call_id,
                        "type": "function",
                        "function": {"name": step.name, "arguments": json.dumps(step.arguments)},
                    }
                )
            case ToolResult():
                content = step.content if step.ok else {"error": step.content}
                messages.append(
                    {"role": "tool", "tool_call_id": step.call_id, "content": json.dumps(content)}
                )
    return messages


def _tool_call_deltas(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return []
    delta = choices[0].get("delta")
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    if calls is None:
        return []
    if not isinstance(calls, list) or not all(isinstance(call, dict) for call in calls):
        raise AgentError("The model endpoint sent 'tool_calls' that are not a list of objects.")
    return calls


class ToolCallParts:
    """Tool calls as their fragments arrive: by ``index``, the ``id`` and the
    function's name once, the ``arguments`` text in pieces."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, deltas: list[dict[str, Any]]) -> None:
        for delta in deltas:
            index = delta.get("index", len(self._calls))
            if not isinstance(index, int):
                raise AgentError("The model endpoint sent a tool call without an index.")
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function = delta.get("function") or {}
            if not isinstance(function, dict):
                raise AgentError("The model endpoint sent a tool call without a function object.")
            call["id"] = call["id"] or str(delta.get("id") or "")
            call["name"] = call["name"] or str(function.get("name") or "")
            call["arguments"] += str(function.get("arguments") or "")

    def assemble(self) -> tuple[ToolCall, ...]:
        calls = []
        for index in sorted(self._calls):
            part = self._calls[index]
            if not part["name"]:
                raise AgentError("The model endpoint asked for a tool without naming it.")
            try:
                arguments = json.loads(part["arguments"] or "{}")
            except json.JSONDecodeError:
                raise AgentError(
                    f"The model endpoint sent arguments for '{part['name']}' that are not JSON."
                ) from None
            if not isinstance(arguments, dict):
                raise AgentError(f"The arguments for '{part['name']}' are not a JSON object.")
            calls.append(ToolCall(part["id"] or f"call_{index}", part["name"], arguments))
        return tuple(calls)
