"""The Redis backplane's one writer: PUBLISH commands, pipelined, in order.

``publish`` must be cheap, so it only puts the encoded envelope on a bounded queue
(``send``); one task (``run``) takes everything queued and sends it to Redis as one
pipeline (n ``PUBLISH`` commands, no MULTI), waits for the answers, and takes the next
batch. One writer and one pipeline at a time keep a node's messages in the order it
published them; batching makes a burst cost one round trip, not one per message.
A caller waits only while the queue is full, and not longer than ``timeout``.

A request needs PUBLISH's answer (how many subscribers received it, so that nobody
listening is ``NoSubscriber`` at once): ``send_counted`` waits for it.

A writer lives as long as one connection (a session of ``RedisBackplane``). When
the pipeline fails, ``run`` drops its batch and raises, which ends the session;
``close`` then drops whatever is still queued. Nothing is retried: delivery is at
most once. Dropped commands are counted in ``dropped``.
"""

from __future__ import annotations

from typing import Any

import attrs
import coredis
import trio

from .base import BackplaneError, BackplaneUnavailable

BATCH_MAX = 512
"""Most PUBLISH commands in one pipeline."""


class _Receivers:
    """How many subscribers a PUBLISH reached, once the writer knows."""

    def __init__(self) -> None:
        self._count: int | BackplaneError = 0
        self._known = trio.Event()

    def set(self, count: int | BackplaneError) -> None:
        self._count = count
        self._known.set()

    async def wait(self) -> int:
        await self._known.wait()
        if isinstance(self._count, BackplaneError):
            raise self._count
        return self._count


@attrs.frozen
class _Outgoing:
    channel: bytes
    data: bytes
    receivers: _Receivers | None = None


class PublishWriter:
    def __init__(self, client: coredis.Redis[Any], queue_size: int, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._in, self._queue = trio.open_memory_channel[_Outgoing](queue_size)
        self.dropped = 0

    def send_nowait(self, channel: bytes, data: bytes) -> bool:
        """Queue a PUBLISH unless the queue is full (then it is dropped): for replies,
        which a listener task sends and which must not wait."""
        try:
            self._in.send_nowait(_Outgoing(channel, data))
            return True
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            return False

    async def send(self, channel: bytes, data: bytes) -> None:
        await self._put(_Outgoing(channel, data))

    async def send_counted(self, channel: bytes, data: bytes) -> int:
        """Queue a PUBLISH and wait for its answer: how many subscribers received it."""
        receivers = _Receivers()
        await self._put(_Outgoing(channel, data, receivers))
        return await receivers.wait()

    async def _put(self, item: _Outgoing) -> None:
        try:
            self._in.send_nowait(item)
            return
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError:
            raise BackplaneUnavailable("the connection to Redis was lost") from None
        with trio.move_on_after(self._timeout):
            try:
                await self._in.send(item)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise BackplaneUnavailable("the connection to Redis was lost") from None
            return
        raise BackplaneUnavailable(f"the publish queue stayed full for {self._timeout} s")

    async def run(self) -> None:
        """The writer task: one pipeline of everything queued, in order, then the next."""
        async for first in self._queue:
            batch = [first, *self._take(BATCH_MAX - 1)]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.publish(item.channel, item.data)
            except BaseException:
                self._drop(batch)
                raise
            for item, receivers in zip(batch, pipe.results or (), strict=True):
                if item.receivers is not None:
                    item.receivers.set(receivers)

    def close(self) -> None:
        """The connection is gone: refuse new commands and drop the queued ones."""
        self._in.close()
        self._drop(self._take(None))
        self._queue.close()

    def _take(self, most: int | None) -> list[_Outgoing]:
        items: list[_Outgoing] = []
        while most is None or len(items) < most:
            try:
                items.append(self._queue.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return items

    def _drop(self, items: list[_Outgoing]) -> None:
        self.dropped += len(items)
        for item in items:
            if item.receivers is not None:
                item.receivers.set(BackplaneUnavailable("the connection to Redis was lost"))
