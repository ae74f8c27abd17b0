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


class TimeoutWatch(Protocol):
    def client_pinged(self) -> None:
        """The client sent a Ping: from now on, silence means it is gone."""


class Dispatcher:
    def __init__(
        self, invocations: Invocations, client_results: ClientResults, watch: TimeoutWatch
    ) -> None:
        self._invocations = invocations
        self._client_results = client_results
        self._watch = watch

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
                self._watch.client_pinged()
            case CloseMessage():
                raise ClientClosed(message.error or "")
            case AckMessage() | SequenceMessage():
                # Stateful reconnect only; a connection that did not negotiate
                # it has nothing to acknowledge or resume.
                pass

    async def _completion(self, message: CompletionMessage) -> None:
        """A Completion ends an upload stream or answers a client result. One
        for an id nobody waits for is ignored: a late client result after a
        timeout must not kill the connection (as in ASP.NET Core)."""
        if await self._invocations.upload_completed(message):
            return
        if not self._client_results.complete(message):
            log.debug("completion for unknown invocation %r ignored", message.invocation_id)
