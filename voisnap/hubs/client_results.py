"""Client results: the server invokes a client method and waits for its answer.

HubProtocol.md, "Invocation": an Invocation *with* an invocation id asks for a
Completion. ASP.NET Core numbers the server's ids ``s1``, ``s2``... so they can
never collide with the ids a client gives its own upload streams, and routes an
incoming Completion to a pending client result or, failing that, to an upload
stream; a Completion for an id nobody waits for is ignored, so a late answer
(after a timeout) cannot kill the connection.

ASP.NET has no default timeout for a client result; voisnap has one
(``client_result_timeout``), because some clients (signalrcore) never answer.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import trio

from ..errors import HubError
from ..protocol import CompletionMessage


class ClientResultError(HubError):
    """The client answered with an error, did not answer in time, or left.
    A ``HubError``, so its text reaches the hub method's own caller."""


class ClientResultTimeout(ClientResultError):
    """No answer in time: the client may still be working on it."""


class ClientLeft(ClientResultError):
    """The connection closed before the client answered."""


@attrs.define
class _Waiter:
    done: trio.Event = attrs.Factory(trio.Event)
    completion: CompletionMessage | None = None
    failure: str | None = None


class ClientResults:
    """The client results one connection is waiting for."""

    # one per connection: slots keep idle connections small
    __slots__ = ("_ids", "_waiting")

    def __init__(self, ids: itertools.count) -> None:
        self._ids = ids  # shared by a hub's connections: "s1", "s2", ... as in ASP.NET
        self._waiting: dict[str, _Waiter] = {}

    def new_id(self) -> str:
        return f"s{next(self._ids)}"

    async def wait_for(self, invocation_id: str, timeout: float) -> Any:
        """Wait for the Completion of ``invocation_id``; the Invocation must be
        sent after this is registered (see ``register``)."""
        waiter = self._waiting[invocation_id]
        try:
            with trio.move_on_after(timeout):
                await waiter.done.wait()
        finally:
            del self._waiting[invocation_id]
        if waiter.failure is not None:
            raise ClientLeft(waiter.failure)
        if waiter.completion is None:
            raise ClientResultTimeout("Invocation canceled by the server.")
        if waiter.completion.error is not None:
            raise ClientResultError(waiter.completion.error)
        return waiter.completion.result

    def register(self, invocation_id: str) -> None:
        self._waiting[invocation_id] = _Waiter()

    def complete(self, message: CompletionMessage) -> bool:
        """Hand a client's Completion to its waiter; False if nobody waits for it."""
        waiter = self._waiting.get(message.invocation_id)
        if waiter is None or waiter.done.is_set():
            return False
        waiter.completion = message
        waiter.done.set()
        return True

    def fail_all(self, reason: str) -> None:
        """The connection is gone: every waiter fails with ``reason``."""
        for waiter in self._waiting.values():
            if not waiter.done.is_set():
                waiter.failure = reason
                waiter.done.set()
