"""Long polling: the client asks for messages with GET, sends with POST, ends with DELETE.

TransportProtocols.md, "Long Polling (Server-to-Client only)":

- a poll (GET) is held until there are messages, which it returns (200, the raw
  records, several at once), or until ``long_polling_timeout`` passes (200,
  empty), after which the client polls again;
- 204 means "this poll is over for good": the connection ended, a DELETE ended
  it, or a newer poll replaced this one;
- a POST carries client-to-server records; DELETE ends the connection (202).

The connection outlives every request, so its messages wait in the outbox for
the next poll (there is no writer task: the poll takes the batch). The polls
are its keep-alive: no Pings are sent, no client timeout applies; instead a
connection with no poll in flight for ``disconnect_timeout`` is gone
(``idle_seconds``, checked by the heartbeat), as in ASP.NET Core.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Awaitable, Callable

import trio

from ..protocol import TransferFormat
from .base import QueuedTransport, TransportInfo, TransportType
from .frames import Frame, RecordFramer
from .outbox import Outbox
from .posts import PostedBytes

# A poll body is the records themselves, raw (no base64 for binary).
RAW_RECORDS = RecordFramer()


class PollEnd(enum.Enum):
    REPLACED = "a newer poll took over"
    CLOSED = "the connection is over"


class LongPolling(QueuedTransport):
    info = TransportInfo(
        kind=TransportType.LONG_POLLING,
        transfer_format=TransferFormat.BINARY,
        resumable=False,
        polled=True,
        text_framer=RAW_RECORDS,
        binary_framer=RAW_RECORDS,
    )

    def __init__(self, *, capacity: int, max_bytes: int, poll_timeout: float) -> None:
        self.outbox: Outbox[Frame] = Outbox(capacity, max_bytes)
        self.posts = PostedBytes()
        self.frames_accepted = 0
        self.on_closed: Callable[[], None] | None = None
        self._poll_timeout = poll_timeout
        self._closed = False
        self._arrived = trio.lowlevel.ParkingLot()  # the poll in flight waits here
        self._poll: trio.CancelScope | None = None
        self._polling_socket: socket.socket | None = None
        self._idle_since: float | None = trio.current_time()

    # No writer task (``_start`` does nothing): each poll takes what is queued.

    def _idle_seconds(self, now: float) -> float:
        return 0.0 if self._idle_since is None else now - self._idle_since

    # -- polls --------------------------------------------------------------------------------

    async def poll(
        self, respond: Callable[[bytes], Awaitable[None]], sock: socket.socket | None = None
    ) -> PollEnd | None:
        """One poll: wait (at most ``poll_timeout``) for messages, then hand them
        (or nothing, on timeout) to ``respond``, which writes the 200 response.
        Returns why this poll ends with 204 instead, if it does."""
        if self._poll is not None:
            self._poll.cancel()  # the older poll answers 204
        scope = self._poll = trio.CancelScope()
        self._idle_since = None
        self._polling_socket = sock
        try:
            with scope, trio.move_on_after(self._poll_timeout):
                while not self.outbox.queued and not self._closed:
                    await self._arrived.park()
            if scope.cancelled_caught:
                return PollEnd.REPLACED
            if self._closed:
                return PollEnd.CLOSED
            frames = self.outbox.take_all()
            try:
                await respond(b"".join(frame.data for frame in frames))
            finally:
                self.outbox.done()
            return None
        finally:
            if self._poll is scope:
                self._poll = None
                self._polling_socket = None
                self._idle_since = trio.current_time()

    # -- the Transport interface --------------------------------------------------------------

    async def receive_some(self) -> bytes:
        return await self.posts.receive_some()

    def _queued(self) -> None:
        self._arrived.unpark_all()  # the poll in flight, if any, takes it

    # A long poll's goodbye is its last message, taken by a poll (``aclose``
    # waits for the outbox to empty); later polls answer 204.

    def _socket(self) -> socket.socket | None:
        return self._polling_socket  # a poll stuck writing to a stalled client

    def end_poll(self) -> None:
        """The client of the poll in flight is gone (it was relayed from another
        process): end it with 204, before it takes any message."""
        if self._poll is not None:
            self._poll.cancel()

    def delete(self) -> None:
        """The client's DELETE: the connection is over."""
        self._mark_closed()

    def _release(self) -> None:
        self.posts.close()
        self._arrived.unpark_all()
