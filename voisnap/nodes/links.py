"""The hub path: nodes connected to this process, and the commands delivered to them.

Each hub connection of a node is a ``NodeLink`` (``apps.nodes.hub.HubLink``).
Per link, one task claims the node's queued commands whenever it is woken (a
signal that commands wait, the link's start, the sweep) and invokes
``ExecuteCommand`` for each, in a task of its own, as a client result. What the
node answers is read strictly (``answers``) and handed to ``Finish``, which
records it once; the link's task ends with the link.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from ..clock import Clock
from ..errors import HubError
from ..failures import error_boundary, report_unexpected
from ..hubs.client_results import ClientLeft, ClientResultError, ClientResultTimeout
from ..protocol.errors import EncodeError
from ..storage.base import COMMAND_FAILED, COMMAND_SUCCEEDED, NodeCommand, NodeStore
from .answers import Accepted, Invalid, Outcome, read_answer

log = logging.getLogger(__name__)

CLAIM_LIMIT = 50
GOODBYE_TIMEOUT = 1.0
REVOKED = "This node's access has been revoked."


class NodeLink(Protocol):
    """A node's hub connection on this process."""

    node_id: str
    connection_id: str

    async def invoke(self, method: str, payload: dict[str, Any], timeout: float) -> Any:
        """A client result; ``ClientResultError`` (or a subclass) if none comes."""

    async def send(self, method: str, payload: dict[str, Any]) -> None: ...

    def close(self, error: str) -> None: ...


Finish = Callable[..., Awaitable[Any]]
"""``finish(command, status, *, result=None, error)``: record an outcome once."""


@attrs.define(eq=False)
class _Local:
    """A link and its delivery task."""

    link: NodeLink
    wake: trio.Event = attrs.Factory(trio.Event)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)


class Links:
    def __init__(self, store: NodeStore, clock: Clock, finish: Finish) -> None:
        self._store = store
        self._clock = clock
        self._finish = finish
        self._links: dict[str, dict[str, _Local]] = {}  # node id -> connection id -> link
        self._nursery: trio.Nursery | None = None

    def attach(self, nursery: trio.Nursery) -> None:
        """Where the links' tasks run (the node service's nursery)."""
        self._nursery = nursery

    def add(self, link: NodeLink) -> None:
        """Deliver the node's commands over ``link`` from now on (from a task
        that starts after the caller's next checkpoint)."""
        assert self._nursery is not None, "attach() a nursery first"
        local = _Local(link)
        self._links.setdefault(link.node_id, {})[link.connection_id] = local
        self._nursery.start_soon(self._deliver, local)
        local.wake.set()

    def remove(self, node_id: str, connection_id: str) -> None:
        links = self._links.get(node_id, {})
        local = links.pop(connection_id, None)
        if not links:
            self._links.pop(node_id, None)
        if local is not None:
            local.scope.cancel()

    def connection_of(self, node_id: str) -> str | None:
        """A connection of the node on this process, if it has one."""
        links = self._links.get(node_id)
        return next(iter(links), None) if links else None

    def wake(self, node_id: str | None = None) -> None:
        """Look for the node's commands (every node's, for None)."""
        for local in self._locals(node_id):
            local.wake.set()

    def refresh_scopes(self, node_id: str, scopes: tuple[str, ...]) -> None:
        for local in self._locals(node_id):
            self._soon(local.link.send, "RefreshScopes", {"scopes": list(scopes)})

    def revoke(self, node_id: str) -> None:
        for local in self._locals(node_id):
            self._soon(_revoke, local.link)

    def statistics(self) -> dict[str, int]:
        return {
            "connected": len(self._links),
            "connections": sum(len(links) for links in self._links.values()),
        }

    def _locals(self, node_id: str | None) -> list[_Local]:
        chosen = self._links.values() if node_id is None else [self._links.get(node_id, {})]
        return [local for links in chosen for local in links.values()]

    def _soon(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(_bounded, work, args)

    async def _deliver(self, local: _Local) -> None:
        """Claim the node's queued commands for this link whenever told to, and
        run each in its own task; ends when the link goes."""
        link = local.link
        with local.scope:
            async with trio.open_nursery() as running:
                while True:
                    await local.wake.wait()
                    local.wake = trio.Event()
                    with error_boundary(log, "delivering commands to a node"):
                        claimed = await self._store.claim_commands(
                            link.node_id, link.connection_id, self._clock.now(), limit=CLAIM_LIMIT
                        )
                        for command in claimed:
                            running.start_soon(self._execute, link, command)
                        if len(claimed) == CLAIM_LIMIT:
                            local.wake.set()  # there may be more

    async def _execute(self, link: NodeLink, command: NodeCommand) -> None:
        """Deliver one command, in its own error boundary: whatever goes wrong
        (a value the node's protocol cannot carry, a store that refuses)
        fails this command, and nothing else."""
        try:
            await self._deliver_one(link, command)
        except Exception as error:
            report_unexpected(log, f"delivering command {command.command_id}", error)
            with error_boundary(log, "failing a command that could not be delivered"):
                text = f"The command could not be delivered to the node: {error}"
                await self._finish(command, COMMAND_FAILED, error=text)

    async def _deliver_one(self, link: NodeLink, command: NodeCommand) -> None:
        payload = {
            "commandId": command.command_id,
            "command": command.command,
            "params": command.params,
        }
        left = max(0.001, (command.deadline - self._clock.now()).total_seconds())
        try:
            answer = await link.invoke("ExecuteCommand", payload, left)
        except (ClientLeft, ClientResultTimeout):
            return  # the link's end releases it; the deadline times it out
        except ClientResultError as error:  # the node threw: its error text
            await self._finish(command, COMMAND_FAILED, error=str(error))
            return
        except EncodeError as error:  # JSON took it; this node's protocol cannot carry it
            text = f"The command cannot be sent in this node's hub protocol: {error}"
            await self._finish(command, COMMAND_FAILED, error=text)
            return
        except HubError:
            return  # the connection is gone from the router already
        match read_answer(answer):
            case Accepted():
                await self._store.accept_command(command.command_id, link.connection_id)
            case Outcome() as outcome:
                status = COMMAND_SUCCEEDED if outcome.ok else COMMAND_FAILED
                await self._finish(command, status, result=outcome.result, error=outcome.error)
            case Invalid(text=text):
                log.info("node %s answered ExecuteCommand with garbage", link.node_id)
                await self._finish(command, COMMAND_FAILED, error=text)


async def _revoke(link: NodeLink) -> None:
    """``RevokeAccess``, then the connection is closed, whether the node heard it or not."""
    with trio.move_on_after(GOODBYE_TIMEOUT):
        await link.send("RevokeAccess", {})
    link.close(REVOKED)


async def _bounded(work: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
    """A signal's work for one link: its own error boundary, so that one link
    that fails cannot stop the service."""
    with error_boundary(log, "telling a node"):
        await work(*args)
