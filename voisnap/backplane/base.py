"""The Backplane protocol: messages, requests and shared keys between voisnap processes.

Theory of operation
-------------------

One voisnap process is a *node*; several nodes serve one application by sharing a
backplane, the way ASP.NET Core SignalR servers share Redis through
``RedisHubLifetimeManager``. The backplane knows nothing of hubs, groups or users: it
moves opaque payloads on named channels, and the router above it decides which
channels exist and what a payload means (ASP.NET's ``RedisChannels`` names them
``{prefix}:group:{name}``, ``{prefix}:user:{id}``, ...). It offers three things:

**Publish/subscribe.** A node subscribes a ``Listener`` to each channel it has local
interest in (a group with a member here, say), one listener per channel per node.
``publish(channel, payload)`` reaches the listener of every *other* node subscribed
to the channel, never the publisher's own: the router has already delivered locally
("handle locally, then publish", as python-socketio's ``pubsub_manager`` and
ASP.NET do). Delivery is at most once, in publishing order per publishing node; a
message published while the backplane is disconnected is lost, not retried, and a
node that is disconnected misses what is published meanwhile. Redis pub/sub has
exactly these semantics; the router copes (a client reconnects and resynchronises).

**Requests.** ``request(channel, payload, timeout)`` asks *the* node subscribed to
``channel`` (a connection's own channel, typically) and waits for its reply: the
listener's ``request`` return value, or ``RequestRefused(text)`` if it refused. If
this node holds the listener, it is called directly; otherwise the request is
published with a request id and the requester's node id, and the reply comes back on
the requester's own reply channel (ASP.NET's ``internal:return:{server}``). When no
node at all is subscribed, ``NoSubscriber`` is raised at once (Redis's PUBLISH
returns how many subscribers received the message); when several are, the first
reply wins.

**Shared keys.** A small key-value store with expiry (``set``/``get``/``delete``/
``expire``, and hashes) for what nodes must agree on: negotiated connection tokens,
ownership claims (``set(..., only_if_absent=True)``), presence.

Life cycle: ``run()`` lives in the application's nursery for the server's life. It
connects, and when the connection is lost it reconnects with backoff and
re-subscribes every channel, by itself; it never raises because Redis went away.
While disconnected, ``publish``, ``request`` and the key operations raise
``BackplaneUnavailable`` promptly, ``check()`` (readiness) raises, and ``subscribe``
records the interest and returns at once (the subscription is made on reconnect).

Listeners are called by the backplane's own tasks, inside an error boundary: an
exception from ``Listener.message`` is logged and delivery goes on; one from
``Listener.request`` (other than ``RequestRefused``) is logged and the requester gets
``RequestRefused("internal error")``.

Implementations: ``memory.MemoryBackplane`` (the default, one process, and the test
double: several in-memory nodes can share one ``MemoryBroker``), and
``redis.RedisBackplane``.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio


class BackplaneError(Exception):
    """Base of every error a backplane raises."""


class BackplaneUnavailable(BackplaneError):
    """The backplane cannot be reached now (Redis is down, or this node is reconnecting)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoSubscriber(BackplaneError):
    """No node is subscribed to the channel a request was sent to."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"no node is subscribed to {channel!r}")
        self.channel = channel


class RequestRefused(BackplaneError):
    """Raised by a listener to refuse a request; the requester gets one with the same text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class RequestTimeout(BackplaneError):
    """No reply came within the request's timeout."""

    def __init__(self, channel: str, timeout: float) -> None:
        super().__init__(f"no reply on {channel!r} within {timeout} s")
        self.channel = channel
        self.timeout = timeout


class Listener(Protocol):
    """A node's receiver for one channel."""

    def message(self, payload: bytes) -> None:
        """A payload published on the channel by another node. Called in order; must
        not block (start a task, or ``send_nowait``, if there is work to wait for)."""

    async def request(self, payload: bytes) -> bytes:
        """A request sent to the channel; the return value is the reply. Raise
        ``RequestRefused(text)`` to send an error reply carrying ``text``."""
        ...


@attrs.frozen
class BackplaneStatistics:
    connected: bool
    subscriptions: int
    """Channels with a listener on this node."""
    published: int
    """Messages handed to the backplane by ``publish``."""
    received: int
    """Messages from other nodes handed to this node's listeners."""
    requests_sent: int
    """Requests sent to other nodes (the local shortcut is not counted)."""
    requests_answered: int
    """Requests from other nodes answered by this node's listeners."""
    pending_requests: int
    reconnects: int
    """Connections made after the first one."""
    dropped: int
    """Messages lost on this node: published but not sent because the connection
    failed, received for no listener, or malformed."""


class Backplane(Protocol):
    node_id: str
    """Unique per process (a uuid4 hex), carried by every message this node publishes."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, deliver, reconnect; runs until cancelled. Started once the first
        connection attempt is over (so a backplane that can connect at start-up is
        connected when ``nursery.start`` returns), whether or not it succeeded."""

    async def wait_connected(self) -> None:
        """Block until the backplane is connected and every subscription is live."""

    async def subscribe(self, channel: str, listener: Listener) -> None:
        """Deliver ``channel`` to ``listener`` from now on. Returns once the subscription
        is live, or at once if the backplane is disconnected (it is made on reconnect).
        ``BackplaneError`` if the channel already has a listener on this node."""

    async def unsubscribe(self, channel: str) -> None:
        """No more deliveries to the channel's listener once this returns."""

    async def publish(self, channel: str, payload: bytes) -> None:
        """Send ``payload`` to the listeners of ``channel`` on every other node: at most
        once, in order. Waits only while the outgoing queue is full.
        ``BackplaneUnavailable`` when disconnected."""

    async def request(self, channel: str, payload: bytes, timeout: float) -> bytes:
        """The reply of the node subscribed to ``channel``. ``NoSubscriber``,
        ``RequestRefused``, ``RequestTimeout`` or ``BackplaneUnavailable``."""

    async def set(
        self, key: str, value: bytes, ttl: float, *, only_if_absent: bool = False
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds; with ``only_if_absent``, only if ``key``
        does not exist. True if stored."""

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    async def expire(self, key: str, ttl: float) -> bool:
        """Let ``key`` (a value or a hash) live ``ttl`` seconds from now. False if there
        is no such key."""

    async def hset(self, key: str, field: str, value: bytes) -> None: ...

    async def hdel(self, key: str, field: str) -> None: ...

    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    async def check(self) -> None:
        """Readiness: ``BackplaneUnavailable(reason)`` unless reachable right now."""

    def statistics(self) -> BackplaneStatistics: ...


def milliseconds(ttl: float) -> int:
    """A time to live in whole milliseconds (Redis's PX), at least 1."""
    if not ttl > 0:
        raise ValueError(f"a time to live must be positive, not {ttl}")
    return max(1, round(ttl * 1000))
