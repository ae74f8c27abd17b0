"""The reference node: its state, and the loop that keeps it connected.

docs/hubs/node.md, "The reference node": the node "heartbeats, reconnects with
backoff (0, 2, 10, 30 s, then every 30 s) and keeps the results of the last
1,000 ``commandId``s". ``ReferenceNode.run`` owns one nursery for the node's
lifetime, where commands run (so they outlive a connection), and runs one
session at a time, hub (``hub_session.py``) or polling
(``polling_session.py``), each until it fails:

- ``NodeStopped`` (access revoked, token refused) ends the node with exit
  status 3: retrying cannot help;
- any other failure is logged, and the next session starts after the next
  backoff delay; a session that connected resets the backoff.
"""

from __future__ import annotations

import logging

import httpx
import trio

from .backoff import Backoff
from .commands import NodeCommands, NodeScopes
from .config import NodeConfig
from .errors import NodeStopped
from .executor import CommandExecutor
from .hub_session import HubSession
from .polling_session import PollingSession
from .results import ResultsMemory
from .token import NodeIdentity, read_node_identity

logger = logging.getLogger(__name__)


class ReferenceNode:
    """``await node.run()`` until the node stops; ``run`` returns the exit status.

    Started with ``nursery.start(node.run)``, it hands back itself once its
    nursery is open; ``wait_connected(n)`` then waits for the n-th connection.
    """

    def __init__(
        self,
        config: NodeConfig,
        identity: NodeIdentity | None = None,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        # Tests answer the HTTP requests (negotiate, polling) with httpx.MockTransport.
        self._http_transport = http_transport
        self.identity = identity or read_node_identity(config.token)
        self.scopes = NodeScopes(self.identity.scopes)
        self.memory = ResultsMemory()
        self.connections = 0
        self.stop_reason: str | None = None
        self._started_at = 0.0
        self._connected = trio.Event()
        self._backoff = Backoff(config.backoff_delays)
        self.transport = config.transport
        self._session_scope: trio.CancelScope | None = None

    def uptime(self) -> float:
        """Seconds since the node started, as ``Heartbeat`` and ``system_info`` say."""
        return trio.current_time() - self._started_at

    def switch_transport(self, transport: str) -> None:
        """End the current session and go on over ``transport`` (websockets or
        polling), at once: as a node does whose network starts or stops letting
        WebSockets through. Commands still running go on, and their outcomes are
        sent over the new transport; a command delivered again runs once."""
        self.transport = transport
        self._backoff.reset()
        if self._session_scope is not None:
            self._session_scope.cancel()

    async def wait_connected(self, count: int = 1) -> None:
        while self.connections < count:
            await self._connected.wait()

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> int:
        self._started_at = trio.current_time()
        commands = NodeCommands(
            self.config.root, self.scopes, allow_shell=self.config.allow_shell, uptime=self.uptime
        )
        async with trio.open_nursery() as nursery:
            executor = CommandExecutor(commands, self.memory, nursery)
            task_status.started(self)
            status = await self._stay_connected(executor)
            # Commands still running die with the node.
            nursery.cancel_scope.cancel()
        return status

    async def _stay_connected(self, executor: CommandExecutor) -> int:
        while True:
            await trio.sleep(self._backoff.next_delay())
            try:
                with trio.CancelScope() as self._session_scope:
                    await self._session(executor).run()
            except Exception as error:
                stopped = _node_stopped(error)
                if stopped is not None:
                    self.stop_reason = str(stopped)
                    logger.error("the node stops: %s", stopped)
                    return stopped.exit_status
                logger.warning("connection lost: %s", _describe(error))
                logger.debug("the failure in full", exc_info=error)

    def _session(self, executor: CommandExecutor) -> HubSession | PollingSession:
        if self.transport == "polling":
            return PollingSession(
                self.config,
                self.scopes,
                executor,
                uptime=self.uptime,
                on_connected=self._on_connected,
                http_transport=self._http_transport,
            )
        return HubSession(
            self.config,
            self.identity,
            self.scopes,
            executor,
            uptime=self.uptime,
            on_connected=self._on_connected,
            http_transport=self._http_transport,
        )

    def _on_connected(self) -> None:
        self._backoff.reset()
        self.connections += 1
        self._connected.set()
        self._connected = trio.Event()


async def run_reference_node(
    config: NodeConfig, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED
) -> int:
    """Run a node until it stops; ``nursery.start`` hands back the ``ReferenceNode``."""
    return await ReferenceNode(config).run(task_status=task_status)


def _node_stopped(error: BaseException) -> NodeStopped | None:
    """The NodeStopped in ``error``, looking inside exception groups (nurseries raise them)."""
    if isinstance(error, NodeStopped):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _node_stopped(inner)) is not None:
                return found
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return str(error) or type(error).__name__
