"""Stateful reconnect, the connection's side: a client that lost its WebSocket
comes back on a new one and nothing is lost (HubProtocol.md, "Stateful Reconnect").

This is part of ``HubConnection`` (a mixin, sharing its state), kept apart
because it is one idea with its own life:

1. the reader finds its transport gone (``_receive``) and calls ``_resume``,
   which marks the connection suspended: messages for the client now only go
   into the replay buffer (``hubs.replay``);
2. the client opens a new WebSocket with the same connection token; the server
   admits it and calls ``adopt``, which hands it to the waiting reader (or cuts
   off the old transport, if the reader had not noticed it was dead yet);
3. the server sends its Sequence and resends every unacknowledged message, in
   order, including those recorded meanwhile; then it sends directly again.

If the client does not come back within ``disconnect_timeout``, or messages it
needs were dropped from the buffer, the connection ends as a normal disconnect.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import trio

from ..errors import ConnectionClosed
from ..protocol import AckMessage, CloseMessage, RemoteProtocolError, SequenceMessage
from .replay import Gap

if TYPE_CHECKING:
    from ..transports.base import Transport
    from .connection import HubConnection

log = logging.getLogger(__name__)

RESUME_GAP = "Server closed the connection: messages it sent while the client was away are lost."


class StatefulReconnect:
    __slots__ = ()

    def client_acknowledged(self: HubConnection, sequence_id: int) -> None:
        if self._replay is not None:
            self._replay.client_acknowledged(sequence_id)

    def client_resends_from(self: HubConnection, sequence_id: int) -> None:
        if self._replay is not None and not self._replay.client_resends_from(sequence_id):
            raise RemoteProtocolError("Sequence ID greater than amount of messages we've received.")

    @property
    def resumable(self: HubConnection) -> bool:
        """A stateful client may come back to this connection on a new WebSocket."""
        return self._replay is not None and not self._ended and not self._stop_requested

    async def adopt(self: HubConnection, transport: Transport) -> None:
        """The client came back on a new WebSocket (same connection token, no
        handshake): hand it to the reader, which may not even have noticed the
        old one is gone yet, and wait while the connection uses it."""
        if not self.resumable:
            return transport.abort()
        if self._coming is not None:
            self._coming[0].abort()  # an even newer one wins
        used = trio.Event()
        self._coming = (transport, used)
        if self._arrival is not None:
            self._arrival.set()
        else:
            self.transport.abort()  # the reader then finds the new transport waiting
        await used.wait()

    async def _resume(self: HubConnection) -> bool:
        """The WebSocket is gone: wait up to ``disconnect_timeout`` for the
        client to come back, then resend what it has not acknowledged. False
        if it did not come back, or cannot be made whole."""
        assert self._replay is not None and self.wire is not None
        self._suspended = True
        self._let_go()
        if self._coming is None:
            self._arrival = trio.Event()
            with trio.move_on_after(self.settings.disconnect_timeout):
                await self._arrival.wait()
            self._arrival = None
        if self._coming is None:
            self._failure = self._failure or ConnectionClosed("the client did not come back")
            return False
        transport, self._adopted = self._coming
        self._coming = None
        self._use(transport)
        self._protocol.discard_partial()
        return await self._replay_to_client()

    async def _replay_to_client(self: HubConnection) -> bool:
        """Our Sequence, then every unacknowledged message in order, including
        those recorded while we resend; then back to sending directly."""
        assert self._replay is not None and self.wire is not None
        first = self._replay.first_unacknowledged()
        if not isinstance(first, Gap):
            sequence = SequenceMessage(sequence_id=first)
            await self.transport.send(self.wire.frame(self._protocol.send(sequence)))
            resend = self._replay.frames_from(first)
            while resend and not isinstance(resend, Gap):
                for number, frame in resend:
                    await self.transport.send(frame)
                    first = number + 1
                resend = self._replay.frames_from(first)
            if not isinstance(resend, Gap):
                self._suspended = False  # caught up, with no await since the last look
                return True
        log.info("connection %s cannot resume: messages were dropped", self.connection_id)
        close = CloseMessage(error=RESUME_GAP, allow_reconnect=True)
        self._fail(close, ConnectionClosed(RESUME_GAP))
        return False

    def _acknowledge(self: HubConnection) -> None:
        """An Ack for what the client sent since the last one (the JS client and
        ASP.NET acknowledge at most once a second, too)."""
        assert self._replay is not None and self.wire is not None
        sequence_id = self._replay.ack_due()
        if sequence_id is not None:
            ack = self.wire.frame(self._protocol.send(AckMessage(sequence_id=sequence_id)))
            with contextlib.suppress(trio.WouldBlock):
                self.transport.send_nowait(ack)

    def _let_go(self: HubConnection) -> None:
        """Release the request that brought the current transport, if adopted."""
        if self._adopted is not None:
            self._adopted.set()
            self._adopted = None
