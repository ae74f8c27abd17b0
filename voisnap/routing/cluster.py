"""This process among the others: the backplane, what it listens to, who is alive.

``Cluster`` is what the hubs' ``BackplaneRouter``\\ s share: one backplane (in
memory for a single process, Redis for many), one ``Subscriptions``, one
``Presence``, and this process's own channel, on which other processes ask it
to close a user's connections (``NodeListener``). ``run()`` is a service of the
server: it runs the backplane and the tasks that keep subscriptions and presence
in step, for the server's whole life.

Presence lives in the backplane, with a time to live that each process renews
every ``REFRESH`` seconds: ``presence:nodes`` maps each live process to the Unix
time its entry lapses, and ``presence:node:<id>`` maps each of its connections
to ``hub``, tenant and user. A process that dies lapses within ``LAPSE`` seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
import trio

from ..backplane import Backplane, BackplaneError, RequestRefused
from ..failures import error_boundary
from ..protocol import CloseMessage
from . import names, remote
from .router import Recipient
from .scaled import BackplaneRouter
from .subscriptions import Subscriptions

log = logging.getLogger(__name__)

REFRESH = 5.0
LAPSE = 3 * REFRESH
PRESENCE_QUEUE = 10_000


class Cluster:
    def __init__(self, backplane: Backplane, *, timeout: float) -> None:
        self.backplane = backplane
        self.timeout = timeout
        """How long a cross-process operation may take before it fails."""
        self.subscriptions = Subscriptions(backplane)
        self.presence = Presence(backplane)
        self.routers: dict[str, BackplaneRouter] = {}

    @property
    def node_id(self) -> str:
        return self.backplane.node_id

    def router_for(self, hub: str) -> BackplaneRouter:
        router = self.routers[hub] = BackplaneRouter(hub, self)
        return router

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.backplane.run)
            nursery.start_soon(self.subscriptions.run)
            nursery.start_soon(self.presence.run)
            await self.subscriptions.hold(names.node_channel(self.node_id), NodeListener(self))
            task_status.started()

    async def ask_every_other_node(self, command: remote.CloseUser) -> int:
        """Send ``command`` to every other live process at once; the sum of their
        answers. A process that cannot answer in time is logged and skipped."""
        answers: list[int] = []
        payload = remote.encode(command)

        async def ask(node: str) -> None:
            channel = names.node_channel(node)
            try:
                reply = await self.backplane.request(channel, payload, self.timeout)
            except BackplaneError as error:
                log.warning("process %s did not close a user's connections: %s", node, error)
                return
            answer = _decoded(reply)
            if isinstance(answer, remote.Result) and isinstance(answer.value, int):
                answers.append(answer.value)

        async with trio.open_nursery() as nursery:
            for node in await self.presence.other_nodes():
                nursery.start_soon(ask, node)
        return sum(answers)

    def statistics(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "backplane": attrs.asdict(self.backplane.statistics()),
            "subscriptions": self.subscriptions.channels,
        }


class NodeListener:
    """What other processes ask of this one as a whole."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def message(self, payload: bytes) -> None:
        pass  # nothing is published to a process; it is only asked

    async def request(self, payload: bytes) -> bytes:
        command = _decoded(payload)
        if not isinstance(command, remote.CloseUser):
            raise RequestRefused("Not a command for a process.")
        router = self._cluster.routers.get(command.hub)
        if router is None:
            return remote.encode(remote.Result(0))
        message = CloseMessage(error=command.error, allow_reconnect=command.allow_reconnect)
        closed = await router.local.close_user_connections(
            command.tenant_id, command.user_id, message
        )
        return remote.encode(remote.Result(closed))


def _decoded(payload: bytes) -> remote.Command | None:
    try:
        return remote.decode(payload)
    except remote.RemoteCommandError as error:
        log.info("a malformed command from the backplane was dropped: %s", error)
        return None


class Presence:
    """Which process holds which connection, kept in the backplane."""

    def __init__(self, backplane: Backplane) -> None:
        self._backplane = backplane
        # (connection id, "hub\ntenant\nuser"), or an empty "who" when it left
        self._changes, self._pending = trio.open_memory_channel[tuple[str, str]](PRESENCE_QUEUE)

    def connected(self, hub: str, connection: Recipient) -> None:
        who = f"{hub}\n{connection.tenant_id}\n{connection.user_id}"
        self._note(connection.connection_id, who)

    def disconnected(self, connection: Recipient) -> None:
        self._note(connection.connection_id, "")

    def _note(self, connection_id: str, who: str) -> None:
        try:
            self._changes.send_nowait((connection_id, who))
        except trio.WouldBlock:
            log.warning("presence is behind: a change was dropped (the next refresh repairs it)")

    async def run(self) -> None:
        """Write changes as they come; renew this process's entries every REFRESH s."""
        key = names.node_presence_key(self._backplane.node_id)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._renew, key)
            async for connection_id, who in self._pending:
                with error_boundary(log, "recording presence"):
                    await self._write(key, connection_id, who)

    async def _write(self, key: str, connection_id: str, who: str) -> None:
        try:
            if who:
                await self._backplane.hset(key, connection_id, who.encode())
            else:
                await self._backplane.hdel(key, connection_id)
        except BackplaneError:
            pass  # the backplane is down: the process's entry lapses, as it should

    async def _renew(self, key: str) -> None:
        while True:
            with error_boundary(log, "renewing presence"):
                try:
                    lapses = f"{time.time() + LAPSE:.3f}".encode()
                    await self._backplane.hset(names.nodes_key(), self._backplane.node_id, lapses)
                    await self._backplane.expire(names.nodes_key(), LAPSE * 4)
                    await self._backplane.expire(key, LAPSE)
                except BackplaneError:
                    pass
            await trio.sleep(REFRESH)

    async def other_nodes(self) -> list[str]:
        """The other processes whose entries have not lapsed."""
        try:
            entries = await self._backplane.hgetall(names.nodes_key())
        except BackplaneError:
            return []
        now = time.time()
        alive = []
        for node, lapses in entries.items():
            try:
                if float(lapses) > now and node != self._backplane.node_id:
                    alive.append(node)
            except ValueError:
                continue
        return alive
