"""The Redis backplane: nodes share channels and keys through one Redis server (coredis).

Theory of operation (the contract is in ``base``; this is how Redis provides it):

- ``run()`` owns the coredis client for the server's life and loops over *sessions*.
  A session is one pub/sub connection: it subscribes this node's reply channel and
  every channel with a listener, starts the writer, marks the node connected, and
  then reads messages until the connection fails. The loop then waits (0.1 s,
  doubling to 2 s, back to 0.1 s after a session that connected) and starts another,
  which subscribes everything again: Redis forgets a connection's subscriptions, so
  a reconnect must restore them. A failing session is logged; ``run()`` does not
  raise for it.
- ``subscribe``/``unsubscribe`` record the interest in the node's ``Listeners``
  first, then, if a session is live, send the command on its pub/sub connection and
  wait for Redis's acknowledgement, so that a publish made after ``subscribe``
  returns is delivered. Without a session they return at once: the next session
  subscribes from ``Listeners``. Deliveries look the listener up when a message
  arrives, so one removed by ``unsubscribe`` gets nothing more.
- ``publish`` encodes the envelope and hands it to the session's writer
  (``redis_writer.PublishWriter``) through a bounded queue; the one writer takes
  everything queued and sends it as one pipeline of PUBLISH commands, in order,
  then the next. A request goes the same
  way, and learns from PUBLISH's answer (how many subscribers received it) whether
  any node is listening. Replies come back on ``{prefix}reply:{node id}``.
- Delivery is at most once: what is queued or in flight when a session fails is
  dropped (and counted), and what is published while no session is live raises
  ``BackplaneUnavailable``; Redis does not keep pub/sub messages for a node that
  is not connected, so a node misses what was published while it was away.
- Key operations use the client's pooled connections, bounded by ``timeout``.

Names: every channel and key carries ``prefix`` (default ``voisnap:``), built in one
place, ``RedisNames``, as ASP.NET Core builds them in ``RedisChannels``.

coredis 6 is written on anyio, so it runs under trio as it is: ``Redis`` (entered as
an async context manager, which anchors its connection pool in ``run()``'s task),
its ``pubsub()`` (with coredis's own retries turned off: reconnecting is this
module's job) and ``pipeline(transaction=False)``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import coredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import RedisError
from coredis.patterns.pubsub import PubSub
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from .base import (
    BackplaneError,
    BackplaneStatistics,
    BackplaneUnavailable,
    Listener,
    NoSubscriber,
    RequestTimeout,
    milliseconds,
)
from .envelope import EnvelopeError, ErrorReply, Message, Reply, Request, decode, encode
from .listeners import Listeners
from .redis_writer import PublishWriter

log = logging.getLogger(__name__)
# coredis logs every dropped connection at INFO with an empty traceback; the
# backplane says what matters itself (one warning per outage).
logging.getLogger("coredis").setLevel(logging.WARNING)

T = TypeVar("T")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0

# What a failing connection can raise: coredis's own errors (ConnectionError,
# TimeoutError on an unanswered command), and the OS's.
CONNECTION_FAILURES = (RedisConnectionError, OSError, TimeoutError, trio.TooSlowError)


class RedisNames:
    """Every Redis name the backplane uses, built in one place (ASP.NET's ``RedisChannels``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._channel_prefix = f"{prefix}channel:".encode()

    def channel(self, name: str) -> bytes:
        return self._channel_prefix + name.encode()

    def channel_name(self, channel: bytes) -> str | None:
        """The caller's name for a Redis channel, or None if it is not one of ours."""
        if not channel.startswith(self._channel_prefix):
            return None
        return channel[len(self._channel_prefix) :].decode(errors="replace")

    def reply_channel(self, node_id: str) -> bytes:
        return f"{self.prefix}reply:{node_id}".encode()

    def key(self, name: str) -> str:
        return self.prefix + name


class RedisBackplane:
    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "voisnap:",
        timeout: float = 1.0,
        keepalive: float = 10.0,
        queue_size: int = 1000,
    ) -> None:
        """``timeout`` bounds what a caller waits for while Redis misbehaves (a key
        operation, a full publish queue, a connection attempt); an idle pub/sub
        connection is PINGed every ``keepalive`` seconds, and a connection on which a
        command stays unanswered that long is given up."""
        self.node_id = uuid.uuid4().hex
        self.names = RedisNames(prefix)
        self._reply_channel = self.names.reply_channel(self.node_id)
        self._timeout = timeout
        self._keepalive = keepalive
        self._queue_size = queue_size
        self._client = coredis.Redis.from_url(
            url, retry_policy=NoRetryPolicy(), stream_timeout=keepalive, connect_timeout=timeout
        )
        self._listeners = Listeners(self.node_id)
        self._handlers: trio.Nursery | None = None
        self._announce: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        # The current session, while there is one:
        self._pubsub: PubSub[bytes] | None = None
        self._writer: PublishWriter | None = None
        self._session_scope: trio.CancelScope | None = None
        self._bound_to_session: set[trio.CancelScope] = set()
        self._connected = trio.Event()
        self._sessions = 0
        self._outage_logged = False
        self._published = 0
        self._requests_sent = 0
        self._dropped_by_writers = 0

    # -- life ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._announce = task_status
        # The client's pool lives here; request handlers too, because a request
        # may still be answered after the session that brought it has failed.
        async with self._client, trio.open_nursery() as handlers:
            self._handlers = handlers
            delay = BACKOFF_FIRST
            while True:
                connected = await self._session_guarded()
                self._started()
                delay = BACKOFF_FIRST if connected else min(delay * 2, BACKOFF_MAX)
                await trio.sleep(delay)

    def _started(self) -> None:
        """Tell ``nursery.start`` we are started, the first time only."""
        self._announce.started()
        self._announce = trio.TASK_STATUS_IGNORED

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _session_guarded(self) -> bool:
        """One session, its failure logged; True if it got connected."""
        sessions_before = self._sessions
        try:
            await self._session()
        except* CONNECTION_FAILURES as failures:
            # Once per outage at warning level; its further attempts at debug.
            level = logging.DEBUG if self._outage_logged else logging.WARNING
            log.log(level, "Redis backplane disconnected: %s", _describe(failures))
            self._outage_logged = True
        except* Exception as failures:
            if trio.current_effective_deadline() == -math.inf:
                # Shutting down: coredis's pub/sub may raise ClosedResourceError
                # while it is torn down under cancellation.
                log.debug("Redis backplane session ended: %s", _describe(failures))
            else:
                # Not a known way for Redis to fail, so maybe a bug; still, the
                # backplane must outlive it.
                log.error("Redis backplane session failed", exc_info=failures)
        return self._sessions > sessions_before

    async def _session(self) -> None:
        writer = PublishWriter(self._client, self._queue_size, self._timeout)
        try:
            async with self._open_pubsub() as pubsub, trio.open_nursery() as session:
                # From here on subscribe() and unsubscribe() talk to this connection,
                # so every channel is either in this snapshot or subscribed by them.
                self._pubsub, self._session_scope = pubsub, session.cancel_scope
                channels = map(self.names.channel, self._listeners.channels())
                await pubsub.subscribe(self._reply_channel, *channels)
                self._writer = writer
                session.start_soon(writer.run)
                self._set_connected()
                await self._read(pubsub)
        finally:
            self._set_disconnected()
            writer.close()
            self._dropped_by_writers += writer.dropped

    def _open_pubsub(self) -> PubSub[bytes]:
        return self._client.pubsub(
            ignore_subscribe_messages=True,
            retry_policy=NoRetryPolicy(),
            subscription_timeout=self._keepalive,
            max_idle_seconds=self._keepalive,
        )

    def _set_connected(self) -> None:
        self._sessions += 1
        self._outage_logged = False
        if self._sessions > 1:
            log.info("Redis backplane reconnected; %d channels subscribed", len(self._listeners))
        self._connected.set()
        self._started()

    def _set_disconnected(self) -> None:
        self._pubsub = self._writer = self._session_scope = None
        if self._connected.is_set():
            self._connected = trio.Event()
        for scope in self._bound_to_session:
            scope.cancel()
        self._listeners.pending.fail_all(BackplaneUnavailable("the connection to Redis was lost"))

    def _drop_session(self, reason: str) -> None:
        if self._session_scope is not None:
            log.warning("Redis backplane: dropping the connection (%s)", reason)
            self._session_scope.cancel()

    @contextmanager
    def _session_bound(self) -> Iterator[trio.CancelScope]:
        """A cancel scope that the end of the current session cancels (at once if none)."""
        scope = trio.CancelScope()
        if self._pubsub is None:
            scope.cancel()
        self._bound_to_session.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._bound_to_session.discard(scope)

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self, pubsub: PubSub[bytes]) -> None:
        while True:
            message = await pubsub.get_message()
            if message is not None and message["type"] == "message":
                self._arrived(message["channel"], message["data"])

    def _arrived(self, channel: Any, data: Any) -> None:
        try:
            envelope = decode(data)
        except EnvelopeError as error:
            self._listeners.dropped += 1
            log.info("dropped a malformed envelope on %r: %s", channel, error)
            return
        if channel == self._reply_channel:
            if isinstance(envelope, Reply | ErrorReply):
                self._listeners.pending.resolve(envelope)
            else:
                self._listeners.dropped += 1
            return
        name = self.names.channel_name(channel)
        if name is not None and self._handlers is not None:
            self._listeners.receive(name, envelope, self._handlers, self._send_reply)

    def _send_reply(self, node_id: str, reply: Reply | ErrorReply) -> None:
        if self._writer is None:
            self._listeners.dropped += 1  # the session that brought the request is gone
        else:
            self._writer.send_nowait(self.names.reply_channel(node_id), encode(reply))

    def _current_writer(self) -> PublishWriter:
        if self._writer is None:
            raise BackplaneUnavailable("not connected to Redis")
        return self._writer

    def _writer_dropped(self) -> int:
        return 0 if self._writer is None else self._writer.dropped

    # -- channels --------------------------------------------------------------------------------

    async def subscribe(self, channel: str, listener: Listener) -> None:
        self._listeners.add(channel, listener)
        pubsub = self._pubsub
        if pubsub is None:
            return  # the next session subscribes it
        with self._session_bound():
            try:
                await pubsub.subscribe(self.names.channel(channel))
            except RedisConnectionError:
                pass  # the session is ending; the next one subscribes it
            except (TimeoutError, RedisError) as error:
                # The subscription may or may not exist now: start again from a clean slate.
                self._drop_session(f"SUBSCRIBE {channel!r} failed: {error!r}")

    async def unsubscribe(self, channel: str) -> None:
        if self._listeners.remove(channel) is None:
            return
        pubsub = self._pubsub
        if pubsub is None:
            return
        with self._session_bound():
            try:
                await pubsub.unsubscribe(self.names.channel(channel))
            except RedisConnectionError:
                pass  # a new session will not subscribe it

    async def publish(self, channel: str, payload: bytes) -> None:
        data = encode(Message(self.node_id, payload))
        await self._current_writer().send(self.names.channel(channel), data)
        self._published += 1

    async def request(self, channel: str, payload: bytes, timeout: float) -> bytes:
        listener = self._listeners.get(channel)
        if listener is not None:
            return await self._listeners.call(channel, listener, payload, timeout)
        with self._listeners.pending.open() as waiter, trio.move_on_after(timeout):
            data = encode(Request(self.node_id, waiter.request_id, timeout, payload))
            writer = self._current_writer()
            receivers = await writer.send_counted(self.names.channel(channel), data)
            self._requests_sent += 1
            if receivers == 0:
                raise NoSubscriber(channel)
            return await waiter.wait()
        raise RequestTimeout(channel, timeout)

    # -- keys ------------------------------------------------------------------------------------

    async def set(
        self, key: str, value: bytes, ttl: float, *, only_if_absent: bool = False
    ) -> bool:
        condition = PureToken.NX if only_if_absent else None
        command = self._client.set(
            self.names.key(key), value, px=milliseconds(ttl), condition=condition
        )
        return bool(await self._call(command))

    async def get(self, key: str) -> bytes | None:
        return await self._call(self._client.get(self.names.key(key)))

    async def delete(self, key: str) -> None:
        await self._call(self._client.delete([self.names.key(key)]))

    async def expire(self, key: str, ttl: float) -> bool:
        return await self._call(self._client.pexpire(self.names.key(key), milliseconds(ttl)))

    async def hset(self, key: str, field: str, value: bytes) -> None:
        await self._call(self._client.hset(self.names.key(key), {field: value}))

    async def hdel(self, key: str, field: str) -> None:
        await self._call(self._client.hdel(self.names.key(key), [field]))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        fields = await self._call(self._client.hgetall(self.names.key(key)))
        return {name.decode(errors="replace"): value for name, value in fields.items()}

    async def check(self) -> None:
        await self._call(self._client.ping())

    async def _call(self, command: Awaitable[T]) -> T:
        """Run one command; Redis's failures become the backplane's errors."""
        if not self._connected.is_set():
            raise BackplaneUnavailable("not connected to Redis")
        try:
            with trio.fail_after(self._timeout):
                return await command
        except CONNECTION_FAILURES as error:
            raise BackplaneUnavailable(f"Redis did not answer: {error!r}") from error
        except RedisError as error:
            raise BackplaneError(f"Redis refused: {error}") from error

    def statistics(self) -> BackplaneStatistics:
        return BackplaneStatistics(
            connected=self._connected.is_set(),
            subscriptions=len(self._listeners),
            published=self._published,
            received=self._listeners.received,
            requests_sent=self._requests_sent,
            requests_answered=self._listeners.answered,
            pending_requests=len(self._listeners.pending),
            reconnects=max(0, self._sessions - 1),
            dropped=self._listeners.dropped + self._dropped_by_writers + self._writer_dropped(),
        )


def _describe(group: BaseExceptionGroup) -> str:
    """The leaves of an exception group, for one log line."""
    leaves: list[str] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.append(_describe(error))
        else:
            leaves.append(repr(error))
    return "; ".join(leaves)
