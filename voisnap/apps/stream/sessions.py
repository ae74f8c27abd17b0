"""Who watches which session, in this process, and how a session's events reach them.

A ``/v1/stream`` connection watches the sessions it submitted to, started or
resumed. The runner of a task publishes each event once (``publish``): to
this process's watchers of the session at once, and on the session's backplane
channel for the other processes, each of which holds that channel exactly while
one of its connections watches the session (``routing.subscriptions``). The
event is serialized once, by the runner, and framed once per kind of socket.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ...backplane import BackplaneError, RequestRefused
from ...failures import report_client_error
from ...routing import names
from ...routing.cluster import Cluster
from .events import StreamEvent

log = logging.getLogger(__name__)


class Watcher(Protocol):
    def show(self, session_id: str, event: StreamEvent) -> None:
        """An event of a watched session; must not block."""


class StreamSessions:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._watchers: dict[str, set[Watcher]] = {}

    @property
    def node_id(self) -> str:
        return self._cluster.node_id

    async def watch(self, tenant_id: str, session_id: str, watcher: Watcher) -> None:
        """``watcher`` sees the session's events from when this returns."""
        channel = names.stream_channel(tenant_id, session_id)
        watchers = self._watchers.setdefault(channel, set())
        if watcher in watchers:
            return
        watchers.add(watcher)
        listener = _SessionListener(self, channel, session_id)
        await self._cluster.subscriptions.hold(channel, listener)

    def unwatch(self, tenant_id: str, session_id: str, watcher: Watcher) -> None:
        channel = names.stream_channel(tenant_id, session_id)
        watchers = self._watchers.get(channel)
        if watchers is None or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[channel]
        self._cluster.subscriptions.release(channel)

    async def publish(self, tenant_id: str, session_id: str, event: StreamEvent) -> None:
        """``event`` to every watcher of the session, here and in other processes."""
        channel = names.stream_channel(tenant_id, session_id)
        self.deliver(channel, session_id, event)
        try:
            await self._cluster.backplane.publish(channel, event.packed())
        except BackplaneError as error:
            report_client_error(log, "a stream event was not told to other processes", str(error))

    def deliver(self, channel: str, session_id: str, event: StreamEvent) -> None:
        for watcher in tuple(self._watchers.get(channel, ())):
            watcher.show(session_id, event)

    @property
    def watched(self) -> int:
        return len(self._watchers)


class _SessionListener:
    """A session's channel, in this process."""

    def __init__(self, sessions: StreamSessions, channel: str, session_id: str) -> None:
        self._sessions = sessions
        self._channel = channel
        self._session_id = session_id

    def message(self, payload: bytes) -> None:
        event = StreamEvent.unpacked(payload)
        if event is None:
            log.info("a malformed event on a stream channel was dropped")
        else:
            self._sessions.deliver(self._channel, self._session_id, event)

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("A stream channel takes no requests.")
