"""The reader's switchboard: each incoming hub message to the part that handles it.

This is the only ``match`` over message types in voisnap (HubProtocol.md,
"Message Types"; ASP.NET Core's ``DefaultHubDispatcher.DispatchMessageAsync``).
It runs in the connection's reader task, so no arm may wait for a hub method:
invocations are queued or started in their own tasks, and only an upload's
backpressure (its buffer of ``stream_buffer_capacity`` items is full) or a full
invocation queue makes the reader wait, which pushes back on the client.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..protocol import (
    AckMessage,
    CancelInvocationMessage,
    CloseMessage,
    CompletionMessage,
    HubMessage,
    InvocationMessage,
    PingMessage,
    SequenceMessage,
    StreamInvocationMessage,
    StreamItemMessage,
)
from .client_results import ClientResults
from .invocations import Invocations

log = logging.getLogger(__name__)


class ClientClosed(Exception):
    """The client sent a Close message: the connection ends, without error."""


class ConnectionHooks(Protocol):
    """What the dispatcher tells the connection itself."""

    def client_pinged(self) -> None:
        """The client sent a Ping: from now on, silence means it is gone."""

    def client_acknowledged(self, sequence_id: int) -> None:
        """Stateful reconnect: the client processed our messages up to here."""

    def client_resends_from(self, sequence_id: int) -> None:
        """Stateful reconnect: after a reconnect, the client resends from here."""


class Dispatcher:
    def __init__(
        self, invocations: Invocations, client_results: ClientResults, hooks: ConnectionHooks
    ) -> None:
        self._invocations = invocations
        self._client_results = client_results
        self._hooks = hooks

    async def dispatch(self, message: HubMessage) -> None:
        match message:
            case InvocationMessage():
                await self._invocations.start_invocation(message)
            case StreamInvocationMessage():
                await self._invocations.start_stream(message)
            case StreamItemMessage():
                if not await self._invocations.upload_item(message):
                    log.debug("stream item for unknown stream %r ignored", message.invocation_id)
            case CompletionMessage():
                await self._completion(message)
            case CancelInvocationMessage():
                self._invocations.cancel(message.invocation_id)
            case PingMessage():
                self._hooks.client_pinged()
            case CloseMessage():
                raise ClientClosed(message.error or "")
            case AckMessage():
                self._hooks.client_acknowledged(message.sequence_id)
            case SequenceMessage():
                self._hooks.client_resends_from(message.sequence_id)

    async def _completion(self, message: CompletionMessage) -> None:
        """A Completion ends an upload stream or answers a client result. One
        for an id nobody waits for is ignored: a late client result after a
        timeout must not kill the connection (as in ASP.NET Core)."""
        if await self._invocations.upload_completed(message):
            return
        if not self._client_results.complete(message):
            log.debug("completion for unknown invocation %r ignored", message.invocation_id)
