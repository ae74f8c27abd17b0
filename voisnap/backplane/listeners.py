"""The node-local half of every backplane: listeners, their error boundary, pending requests.

Whatever carries envelopes between nodes (a ``MemoryBroker``, Redis), what a node
does with one that arrives is the same, so both implementations share this:

- ``Listeners.receive`` hands a ``Message`` to its channel's listener (unless this
  node published it), and starts a task that answers a ``Request``;
- every listener call goes through one error boundary (``_deliver``, ``_serve``): a
  failing ``message`` is logged and delivery goes on; a failing ``request`` becomes
  ``ErrorReply("internal error")``; ``RequestRefused(text)`` becomes
  ``ErrorReply(text)``;
- ``PendingRequests`` matches a ``Reply`` to the request waiting for it, by id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

from .base import BackplaneError, Listener, RequestRefused, RequestTimeout
from .envelope import Envelope, ErrorReply, Message, Reply, Request

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error"

SendReply = Callable[[str, Reply | ErrorReply], None]
"""How a node sends a reply to the node (by id) that made the request."""


class ReplyWaiter:
    """One request's wait for its reply: the first outcome set is the one."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._outcome: Reply | ErrorReply | BackplaneError | None = None
        self._done = trio.Event()

    def set(self, outcome: Reply | ErrorReply | BackplaneError) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._done.set()

    async def wait(self) -> bytes:
        await self._done.wait()
        return unwrap(self._outcome)


def unwrap(outcome: Reply | ErrorReply | BackplaneError | None) -> bytes:
    match outcome:
        case Reply(payload=payload):
            return payload
        case ErrorReply(text=text):
            raise RequestRefused(text)
        case BackplaneError() as error:
            raise error
    raise AssertionError(f"no outcome: {outcome!r}")


class PendingRequests:
    """This node's requests that wait for a reply from another node, by request id."""

    def __init__(self) -> None:
        self._next_id = 0
        self._waiting: dict[int, ReplyWaiter] = {}

    @contextmanager
    def open(self) -> Iterator[ReplyWaiter]:
        """A waiter with a fresh request id, registered for the ``with`` block."""
        self._next_id += 1
        waiter = ReplyWaiter(self._next_id)
        self._waiting[waiter.request_id] = waiter
        try:
            yield waiter
        finally:
            del self._waiting[waiter.request_id]

    def resolve(self, reply: Reply | ErrorReply) -> bool:
        """Hand ``reply`` to its waiter; False if nobody waits for it any more."""
        waiter = self._waiting.get(reply.request_id)
        if waiter is None:
            return False
        waiter.set(reply)
        return True

    def fail_all(self, error: BackplaneError) -> None:
        """The connection that would carry the replies is gone."""
        for waiter in self._waiting.values():
            waiter.set(error)

    def __len__(self) -> int:
        return len(self._waiting)


class Listeners:
    """One node's listeners by channel, and what it does with an envelope that arrives."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.pending = PendingRequests()
        self._by_channel: dict[str, Listener] = {}
        self.received = 0
        self.answered = 0
        self.dropped = 0

    def add(self, channel: str, listener: Listener) -> None:
        if channel in self._by_channel:
            raise BackplaneError(f"channel {channel!r} already has a listener on this node")
        self._by_channel[channel] = listener

    def remove(self, channel: str) -> Listener | None:
        return self._by_channel.pop(channel, None)

    def get(self, channel: str) -> Listener | None:
        return self._by_channel.get(channel)

    def channels(self) -> list[str]:
        return list(self._by_channel)

    def __len__(self) -> int:
        return len(self._by_channel)

    def receive(
        self, channel: str, envelope: Envelope, handlers: trio.Nursery, send_reply: SendReply
    ) -> None:
        """An envelope arrived on ``channel``. Requests are answered by a task in
        ``handlers`` (the backplane's nursery: a request may take a while, and the
        next message must not wait for it)."""
        listener = self._by_channel.get(channel)
        match envelope:
            case Message(origin=origin) if origin == self.node_id:
                pass  # our own publish: the router delivered it locally already
            case Message(payload=payload) if listener is not None:
                self.received += 1
                _deliver(channel, listener, payload)
            case Request() if listener is not None:
                handlers.start_soon(self._answer, channel, listener, envelope, send_reply)
            case _:
                self.dropped += 1
                log.debug("dropped %s on %r (no listener here)", type(envelope).__name__, channel)

    async def _answer(
        self, channel: str, listener: Listener, request: Request, send_reply: SendReply
    ) -> None:
        # The requester gives up after request.timeout; so does the answer.
        with trio.move_on_after(request.timeout):
            reply = await _serve(channel, listener, request.request_id, request.payload)
            self.answered += 1
            send_reply(request.origin, reply)

    async def call(self, channel: str, listener: Listener, payload: bytes, timeout: float) -> bytes:
        """The local shortcut: a request to a listener on this node, with no backplane."""
        with trio.move_on_after(timeout):
            return unwrap(await _serve(channel, listener, 0, payload))
        raise RequestTimeout(channel, timeout)


def _deliver(channel: str, listener: Listener, payload: bytes) -> None:
    try:
        listener.message(payload)
    except Exception:
        log.exception("the listener of %r failed on a message", channel)


async def _serve(
    channel: str, listener: Listener, request_id: int, payload: bytes
) -> Reply | ErrorReply:
    try:
        reply = await listener.request(payload)
    except RequestRefused as refused:
        return ErrorReply(request_id, refused.text)
    except Exception:
        log.exception("the listener of %r failed on a request", channel)
        return ErrorReply(request_id, INTERNAL_ERROR)
    if not isinstance(reply, bytes):
        log.error("the listener of %r replied with a %s, not bytes", channel, type(reply).__name__)
        return ErrorReply(request_id, INTERNAL_ERROR)
    return Reply(request_id, reply)
