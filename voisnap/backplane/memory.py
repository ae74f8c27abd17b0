"""The in-memory backplane: the one-process default, and the test double for many nodes.

``MemoryBroker`` stands in for the Redis server: it knows which node is subscribed to
which channel and holds the shared keys. ``MemoryBackplane`` is one node on it. A
lone ``MemoryBackplane()`` gets a private broker, which is what a single voisnap
process runs on: there is no other node, so ``publish`` finds no other subscriber
and returns after one dictionary lookup (it sits on the fan-out path), and a
``request`` either has its listener here (called directly) or raises
``NoSubscriber``. Tests of several nodes give them one broker::

    broker = MemoryBroker()
    a, b = MemoryBackplane(broker), MemoryBackplane(broker)

Envelopes travel as objects, not bytes (nothing leaves the process), into the
receiving node's inbox, a bounded channel that its ``run()`` task drains, so that
listeners are called by the receiving node's task, as with Redis, and never inside
the publisher's call. An inbox that is full drops the message (counted in
``dropped``): a slow node loses messages, it does not slow the publisher down.

Keys expire by ``trio.current_time()``, so a test with ``MockClock`` sees a 60-second
time to live pass in no time. ``MemoryBroker.stop()`` and ``start()`` simulate the
Redis server going away and coming back, for tests of what sits above a backplane:
while stopped, every node raises ``BackplaneUnavailable`` (subscriptions and keys
survive, as with a Redis server that persists its data).
"""

from __future__ import annotations

import math
import uuid

import attrs
import trio

from .base import (
    BackplaneError,
    BackplaneStatistics,
    BackplaneUnavailable,
    Listener,
    NoSubscriber,
    RequestTimeout,
    milliseconds,
)
from .envelope import ErrorReply, Message, Reply, Request
from .listeners import Listeners

INBOX_SIZE = 10_000


@attrs.define
class _Entry:
    value: bytes | dict[str, bytes]
    deadline: float = math.inf


class MemoryBroker:
    """What Redis is to RedisBackplane nodes, for MemoryBackplane nodes in one trio run."""

    def __init__(self) -> None:
        self._subscribers: dict[str, dict[str, MemoryBackplane]] = {}
        self._nodes: dict[str, MemoryBackplane] = {}
        self._entries: dict[str, _Entry] = {}
        self._up = trio.Event()
        self._up.set()

    # -- availability ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._up.is_set()

    def stop(self) -> None:
        """Simulate the server going away: every node is disconnected until ``start()``."""
        if self.available:
            self._up = trio.Event()
            for node in self._nodes.values():
                node.disconnected()

    def start(self) -> None:
        self._up.set()

    async def wait_available(self) -> None:
        await self._up.wait()

    def require_available(self) -> None:
        if not self.available:
            raise BackplaneUnavailable("the memory broker is stopped")

    # -- channels --------------------------------------------------------------------------------

    def attach(self, node: MemoryBackplane) -> None:
        self._nodes[node.node_id] = node

    def subscribe(self, channel: str, node: MemoryBackplane) -> None:
        self._subscribers.setdefault(channel, {})[node.node_id] = node

    def unsubscribe(self, channel: str, node: MemoryBackplane) -> None:
        nodes = self._subscribers.get(channel)
        if nodes is not None and nodes.pop(node.node_id, None) is not None and not nodes:
            del self._subscribers[channel]

    def has_other_subscribers(self, channel: str, node_id: str) -> bool:
        nodes = self._subscribers.get(channel)
        return bool(nodes) and (len(nodes) > 1 or node_id not in nodes)

    def publish(self, channel: str, envelope: Message | Request) -> int:
        """Deliver to every subscriber but the origin; how many it reached (PUBLISH's answer)."""
        receivers = [
            node
            for node_id, node in self._subscribers.get(channel, {}).items()
            if node_id != envelope.origin
        ]
        for node in receivers:
            node.deliver_nowait(channel, envelope)
        return len(receivers)

    def send_reply(self, node_id: str, reply: Reply | ErrorReply) -> None:
        node = self._nodes.get(node_id)
        if node is not None and self.available:
            node.reply_arrived(reply)

    # -- keys ------------------------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float, only_if_absent: bool) -> bool:
        deadline = trio.current_time() + milliseconds(ttl) / 1000
        if only_if_absent and self._live(key) is not None:
            return False
        self._entries[key] = _Entry(value, deadline)
        return True

    def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        if not isinstance(entry.value, bytes):
            raise BackplaneError(f"{key!r} holds a hash, not a value")
        return entry.value

    def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def expire(self, key: str, ttl: float) -> bool:
        entry = self._live(key)
        if entry is None:
            return False
        entry.deadline = trio.current_time() + milliseconds(ttl) / 1000
        return True

    def hash(self, key: str, create: bool = False) -> dict[str, bytes]:
        entry = self._live(key)
        if entry is None:
            if not create:
                return {}
            entry = self._entries[key] = _Entry({})
        if not isinstance(entry.value, dict):
            raise BackplaneError(f"{key!r} holds a value, not a hash")
        return entry.value

    def hdel(self, key: str, field: str) -> None:
        fields = self.hash(key)
        fields.pop(field, None)
        if not fields:
            self._entries.pop(key, None)  # Redis removes an emptied hash

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.deadline <= trio.current_time():
            del self._entries[key]
            return None
        return entry


class MemoryBackplane:
    """One node on a ``MemoryBroker`` (a private one by default)."""

    def __init__(self, broker: MemoryBroker | None = None, *, inbox_size: int = INBOX_SIZE) -> None:
        self.node_id = uuid.uuid4().hex
        self._broker = broker if broker is not None else MemoryBroker()
        self._listeners = Listeners(self.node_id)
        self._inbox_in, self._inbox = trio.open_memory_channel[tuple[str, Message | Request]](
            inbox_size
        )
        self._published = 0
        self._requests_sent = 0
        self._broker.attach(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Requests are answered by tasks in this nursery, so that the next message
        # is not held up behind a slow request.
        async with trio.open_nursery() as handlers:
            task_status.started()
            async for channel, envelope in self._inbox:
                self._listeners.receive(channel, envelope, handlers, self._broker.send_reply)

    async def wait_connected(self) -> None:
        await self._broker.wait_available()

    # -- called by the broker --------------------------------------------------------------------

    def deliver_nowait(self, channel: str, envelope: Message | Request) -> None:
        try:
            self._inbox_in.send_nowait((channel, envelope))
        except trio.WouldBlock:
            self._listeners.dropped += 1

    def reply_arrived(self, reply: Reply | ErrorReply) -> None:
        self._listeners.pending.resolve(reply)

    def disconnected(self) -> None:
        self._listeners.pending.fail_all(BackplaneUnavailable("the memory broker stopped"))

    # -- channels --------------------------------------------------------------------------------

    async def subscribe(self, channel: str, listener: Listener) -> None:
        self._listeners.add(channel, listener)
        self._broker.subscribe(channel, self)

    async def unsubscribe(self, channel: str) -> None:
        if self._listeners.remove(channel) is not None:
            self._broker.unsubscribe(channel, self)

    async def publish(self, channel: str, payload: bytes) -> None:
        self._broker.require_available()
        self._published += 1
        # The one-process case stops here: nobody else to tell.
        if self._broker.has_other_subscribers(channel, self.node_id):
            self._broker.publish(channel, Message(self.node_id, payload))
            # Let the receivers run, as a Redis publisher waits for its writer
            # now and then: a burst should not simply overflow their inboxes.
            await trio.lowlevel.checkpoint()

    async def request(self, channel: str, payload: bytes, timeout: float) -> bytes:
        listener = self._listeners.get(channel)
        if listener is not None:
            return await self._listeners.call(channel, listener, payload, timeout)
        self._broker.require_available()
        with self._listeners.pending.open() as waiter:
            request = Request(self.node_id, waiter.request_id, timeout, payload)
            if self._broker.publish(channel, request) == 0:
                raise NoSubscriber(channel)
            self._requests_sent += 1
            with trio.move_on_after(timeout):
                return await waiter.wait()
        raise RequestTimeout(channel, timeout)

    # -- keys ------------------------------------------------------------------------------------

    async def set(
        self, key: str, value: bytes, ttl: float, *, only_if_absent: bool = False
    ) -> bool:
        self._broker.require_available()
        return self._broker.set(key, value, ttl, only_if_absent)

    async def get(self, key: str) -> bytes | None:
        self._broker.require_available()
        return self._broker.get(key)

    async def delete(self, key: str) -> None:
        self._broker.require_available()
        self._broker.delete(key)

    async def expire(self, key: str, ttl: float) -> bool:
        self._broker.require_available()
        return self._broker.expire(key, ttl)

    async def hset(self, key: str, field: str, value: bytes) -> None:
        self._broker.require_available()
        self._broker.hash(key, create=True)[field] = value

    async def hdel(self, key: str, field: str) -> None:
        self._broker.require_available()
        self._broker.hdel(key, field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        self._broker.require_available()
        return dict(self._broker.hash(key))

    async def check(self) -> None:
        self._broker.require_available()

    def statistics(self) -> BackplaneStatistics:
        return BackplaneStatistics(
            connected=self._broker.available,
            subscriptions=len(self._listeners),
            published=self._published,
            received=self._listeners.received,
            requests_sent=self._requests_sent,
            requests_answered=self._listeners.answered,
            pending_requests=len(self._listeners.pending),
            reconnects=0,
            dropped=self._listeners.dropped,
        )
