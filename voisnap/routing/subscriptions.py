"""Which backplane channels this process listens to: exactly those it has members for.

A process subscribes to the channel of a group, a user or a tenant while at
least one of its own connections is a member, and to each of its connections'
own channels while they live (issue 10: "Each process subscribes only to the
channels of groups and users that have members on it"). ``Subscriptions``
counts holders per channel:

- ``hold(channel, listener)`` takes a hold, and returns once the channel is
  live, so that a message published right after a ``JoinGroup`` returns reaches
  the new member. The first holder's listener is the channel's.
- ``release(channel)`` gives a hold back without waiting, because connections
  leave from places that cannot wait (an eviction in the middle of a fan-out).

One task (``run``) makes the backplane agree with the counts: it subscribes
channels that gained their first holder and unsubscribes those that lost their
last, in whatever order they changed. A channel released and held again before
the task got to it simply stays subscribed.
"""

from __future__ import annotations

import logging

import trio

from ..backplane import Backplane, BackplaneError, Listener
from ..failures import error_boundary

log = logging.getLogger(__name__)


class Subscriptions:
    def __init__(self, backplane: Backplane) -> None:
        self._backplane = backplane
        self._holders: dict[str, int] = {}
        self._listeners: dict[str, Listener] = {}
        self._live: dict[str, trio.Event] = {}  # subscribed channels (set) or on their way
        self._changed: set[str] = set()
        self._wake = trio.Event()

    def holders(self, channel: str) -> int:
        return self._holders.get(channel, 0)

    async def hold(self, channel: str, listener: Listener) -> None:
        held = self._holders.get(channel, 0)
        self._holders[channel] = held + 1
        if held == 0:
            self._listeners.setdefault(channel, listener)
            self._touch(channel)
        live = self._live.setdefault(channel, trio.Event())
        await live.wait()

    def release(self, channel: str) -> None:
        held = self._holders.get(channel, 0)
        if held <= 1:
            self._holders.pop(channel, None)
            self._touch(channel)
        else:
            self._holders[channel] = held - 1

    def _touch(self, channel: str) -> None:
        self._changed.add(channel)
        self._wake.set()

    async def run(self) -> None:
        """Subscribe and unsubscribe as the counts change, forever."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            changed, self._changed = self._changed, set()
            for channel in changed:
                with error_boundary(log, "a backplane subscription"):
                    await self._reconcile(channel)

    async def _reconcile(self, channel: str) -> None:
        wanted = channel in self._holders
        live = self._live.get(channel)
        subscribed = live is not None and live.is_set()
        if wanted and not subscribed:
            try:
                await self._backplane.subscribe(channel, self._listeners[channel])
            except BackplaneError as error:
                log.warning("could not subscribe to %s: %s", channel, error)
            # Live as far as this process can make it: the backplane makes the
            # subscription when it reconnects, if it could not now.
            self._live.setdefault(channel, trio.Event()).set()
        elif not wanted and subscribed:
            del self._live[channel]
            self._listeners.pop(channel, None)
            try:
                await self._backplane.unsubscribe(channel)
            except BackplaneError as error:
                log.warning("could not unsubscribe from %s: %s", channel, error)
        elif not wanted:
            self._listeners.pop(channel, None)
            self._live.pop(channel, None)

    @property
    def channels(self) -> int:
        return len(self._holders)
