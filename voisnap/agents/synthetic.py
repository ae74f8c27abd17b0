"""A synthetic agent for load tests: a fixed number of tokens at a fixed pace,
each one the time it was produced.

Every token is the process's monotonic clock in microseconds followed by a
space. The monotonic clock is shared by every process on the machine, so a
client on the same machine can tell how long each token took to reach it (the
bench's ``chat`` scenario does). Configure it in the agents file::

    [agents.synthetic]
    backend = "synthetic"
    tokens = 100          # per reply
    token_delay = 0.05    # seconds between tokens
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import trio

from .base import AgentEvent, AgentRequest, Final, Status, Token
from .rule_based import discussion_step


class SyntheticAgent:
    def __init__(self, agent_id: str, tokens: int, token_delay: float) -> None:
        self.agent_id = agent_id
        self._tokens = tokens
        self._delay = token_delay

    async def step(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        """One step: it never calls a tool. On a panel it speaks by rule, at its pace."""
        if request.discussion is not None:
            async for event in discussion_step(self.agent_id, request, self._delay):
                yield event
            return
        yield Status("thinking")
        parts = []
        for _ in range(self._tokens):
            token = f"{time.monotonic_ns() // 1000} "
            parts.append(token)
            yield Token(token)
            await trio.sleep(self._delay)
        yield Final("".join(parts), tokens_used=self._tokens)
