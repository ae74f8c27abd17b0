"""An agent backed by any OpenAI-compatible chat-completions endpoint, streaming.

``POST {base_url}/chat/completions`` with ``"stream": true`` answers with
Server-Sent Events: ``data: {json chunk}`` lines, each chunk's
``choices[0].delta.content`` a piece of the reply, ending with
``data: [DONE]``; with ``stream_options.include_usage`` the last chunk carries
``usage.total_tokens``. The request carries the session's history, oldest
first, then the user's message.

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

from .base import AgentContext, AgentError, AgentEvent, AgentRequest, Final, Status, Token
from .builtin import tokens_of

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

    async def run(self, request: AgentRequest, context: AgentContext) -> AsyncIterator[AgentEvent]:
        yield Status("thinking")
        parts: list[str] = []
        usage: int | None = None
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
                    usage = _usage(chunk) or usage
        except httpx.HTTPError as error:
            raise AgentError(f"The model endpoint could not be reached: {error}") from None
        content = "".join(parts)
        if usage is None:  # an endpoint that does not report usage: count words instead
            usage = len(tokens_of(request.content)) + len(tokens_of(content))
        yield Final(content, tokens_used=usage)

    def _url(self) -> str:
        return self._config.base_url.rstrip("/") + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        key = self._config.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, request: AgentRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if self._config.system_prompt:
            messages.append({"role": "system", "content": self._config.system_prompt})
        messages += [{"role": m.role, "content": m.content} for m in request.history]
        messages.append({"role": "user", "content": request.content})
        body: dict[str, Any] = {
            "model": self._config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self._config.temperature is not None:
            body["temperature"] = self._config.temperature
        return body


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


def _usage(chunk: dict[str, Any]) -> int | None:
    usage = chunk.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
        return usage["total_tokens"]
    return None
