"""Stateful reconnect, the connection's side: a client that lost its WebSocket
comes back on a new one and nothing is lost (HubProtocol.md, "Stateful Reconnect").

``Resumption`` is a collaborator of ``HubConnection`` that owns everything
stateful reconnect needs and nothing else: the replay buffer (``hubs.replay``),
and the hand-over of a new transport. The connection keeps its own state
(``SUSPENDED`` while the client is away) and asks this object the questions:

1. the reader finds its transport gone and calls ``wait_for_client``, which
   waits up to ``disconnect_timeout`` for a new transport (None if none came);
2. the client opens a new WebSocket with the same connection token; the server
   admits it and calls ``adopt``, which hands it to the waiting reader (or cuts
   off the old transport, if the reader had not noticed it was dead yet) and
   waits while the connection uses it;
3. ``replay`` sends the server's Sequence and every unacknowledged message, in
   order, including those recorded meanwhile; False if messages the client
   needs were dropped from the buffer (the connection then closes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from ..protocol import HubMessage, RemoteProtocolError
from .replay import Gap, ReplayBuffer, is_tracked

if TYPE_CHECKING:
    from ..transports.base import Transport
    from ..transports.frames import Frame


class Resumption:
    # one per stateful connection: slots keep connections small
    __slots__ = ("_adopted", "_arrival", "_coming", "_timeout", "replay")

    def __init__(self, buffer_size: int, timeout: float) -> None:
        self.replay = ReplayBuffer(buffer_size)
        self._timeout = timeout
        self._coming: tuple[Transport, trio.Event] | None = None  # the new transport
        self._arrival: trio.Event | None = None  # set when a new transport arrives
        self._adopted: trio.Event | None = None  # set once the current transport is let go

    # -- what the client sends ------------------------------------------------------------------

    def is_copy(self, message: HubMessage) -> bool:
        """A tracked message a resuming client sent again (to be dropped)."""
        return is_tracked(message) and not self.replay.accept()

    def client_acknowledged(self, sequence_id: int) -> None:
        self.replay.client_acknowledged(sequence_id)

    def client_resends_from(self, sequence_id: int) -> None:
        if not self.replay.client_resends_from(sequence_id):
            raise RemoteProtocolError("Sequence ID greater than amount of messages we've received.")

    # -- the client comes back ------------------------------------------------------------------

    async def adopt(self, transport: Transport, current: Transport) -> None:
        """The client came back on ``transport`` (same connection token, no
        handshake); wait while the connection uses it."""
        if self._coming is not None:
            self._coming[0].abort()  # an even newer one wins
        used = trio.Event()
        self._coming = (transport, used)
        if self._arrival is not None:
            self._arrival.set()
        else:
            current.abort()  # the reader then finds the new transport waiting
        await used.wait()

    async def wait_for_client(self) -> Transport | None:
        """The transport is gone: the new one, once the client comes back
        within the timeout; None if it does not."""
        self.let_go()
        if self._coming is None:
            self._arrival = trio.Event()
            with trio.move_on_after(self._timeout):
                await self._arrival.wait()
            self._arrival = None
        if self._coming is None:
            return None
        transport, self._adopted = self._coming
        self._coming = None
        return transport

    async def replay_to(
        self, send: Callable[[Frame], Awaitable[None]], sequence: Callable[[int], Frame]
    ) -> bool:
        """Our Sequence, then every unacknowledged message in order, including
        those recorded while we resend; False if some were dropped."""
        first = self.replay.first_unacknowledged()
        if isinstance(first, Gap):
            return False
        await send(sequence(first))
        resend = self.replay.frames_from(first)
        while resend and not isinstance(resend, Gap):
            for number, frame in resend:
                await send(frame)
                first = number + 1
            resend = self.replay.frames_from(first)
        return not isinstance(resend, Gap)

    def let_go(self) -> None:
        """Release the request that brought the current transport, if adopted."""
        if self._adopted is not None:
            self._adopted.set()
            self._adopted = None

    def abandon(self) -> None:
        """The connection is over: a transport still on its way is turned away."""
        if self._coming is not None:
            transport, used = self._coming
            self._coming = None
            transport.abort()
            used.set()
        self.let_go()
