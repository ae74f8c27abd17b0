"""Nodes: a user's machines, the commands sent to them, and their presence.

docs/hubs/node.md is the contract; this is the one door to it. The REST
routes, the node hub, the polling routes and the agent's ``run_on_node`` tool
are faces of it, and none keeps state of its own: nodes and commands live in
the store, so that any process may take a command, deliver it, record its
outcome or notice a node has gone, and exactly one does each.

How a command travels:

1. ``dispatch`` checks the caller's node and the scope, stores the command
   (``queued``) and says so (``NodeSignals``: every process hears it).
2. A process that holds a hub connection of the node (a ``NodeLink``,
   ``links``) claims the node's queued commands (``queued`` -> ``sent``, one conditional update:
   exactly one claimer) and invokes ``ExecuteCommand`` on the node, each in
   its own task; a poll claims them the same way and hands them out.
3. The node's answer, a later ``CommandResult`` or a polled result is recorded
   by one conditional update from an open status (exactly one outcome), and
   its waiters, wherever they are, are woken.
4. ``dispatch`` returns the finished command; at its deadline it marks it timed out
   (unless an outcome came first).

A delivery that goes away (the hub connection closes, a polling node goes
quiet) sends queued commands back to the queue for the next delivery, with
the same ``commandId``; the others fail with "node disconnected".
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import uuid
from typing import Any, Protocol

import trio

from ..clock import Clock
from ..failures import error_boundary
from ..principal import Principal
from ..server.auth import JwksAuthority, TokenAuthority
from ..storage.base import (
    COMMAND_FAILED,
    COMMAND_QUEUED,
    COMMAND_SUCCEEDED,
    COMMAND_TIMED_OUT,
    ONLINE,
    POLLED,
    Node,
    NodeCommand,
    NodeStore,
    Owner,
    Presence,
)
from .answers import MAX_ERROR, Invalid, Outcome, read_outcome, storable_text
from .credentials import NodeError, node_id_of
from .links import REVOKED, Links, NodeLink
from .registration import register_node
from .signals import NodeSignals
from .wakeups import Wakeups

log = logging.getLogger(__name__)

RECHECK = 1.0
"""Seconds a waiter waits for a signal before it reads the store itself."""
CLAIM_LIMIT = 50
"""Commands one poll hands out at most."""
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
MAX_POLL_WAIT = 60.0
MISSED_HEARTBEATS = 2.5
"""A node is offline this many heartbeat intervals after it was last heard from."""
MAX_PARAMS_BYTES = 16 * 1024
MAX_PARAMS_DEPTH = 32
MAX_OPEN_COMMANDS = 1000
"""Commands a node may have waiting or running; more are refused (429) until some end."""
MAX_WAITING_POLLS = 4
"""Polls of one node that may wait at once in one process; more are refused (429)."""
WEBSOCKETS, POLLING = "websockets", "polling"


def check_params(params: Any) -> None:
    """NodeError 400 unless ``params`` fit in an ``ExecuteCommand`` and in the
    node's answer that may echo them: a hub message holds 32 KiB (by default)
    nested 64 deep, and the invocation and the Completion wrap them in levels
    and bytes of their own."""
    try:
        size = len(json.dumps(params, separators=(",", ":")))
    except (TypeError, ValueError):
        raise NodeError(400, "'params' must be JSON data.") from None
    if size > MAX_PARAMS_BYTES:
        raise NodeError(400, f"'params' may take {MAX_PARAMS_BYTES} bytes as JSON, not {size}.")
    if _depth(params) > MAX_PARAMS_DEPTH:
        raise NodeError(400, f"'params' may be nested {MAX_PARAMS_DEPTH} levels deep.")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a stack: no recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


class PresenceSink(Protocol):
    """Who is told that a node came online or went offline (the notifications)."""

    async def online(self, node: Node, at: datetime.datetime) -> None: ...

    async def offline(self, node: Node, at: datetime.datetime) -> None: ...


class Nodes:
    def __init__(
        self,
        store: NodeStore,
        authority: TokenAuthority | JwksAuthority,
        signals: NodeSignals,
        presence: PresenceSink,
        clock: Clock,
        heartbeat_interval: float,
    ) -> None:
        self._store = store
        self._authority = authority
        self._signals = signals
        self._presence = presence
        self._clock = clock
        self.heartbeat_interval = heartbeat_interval
        self._links = Links(store, clock, self._finish)
        self._wakeups = Wakeups()
        self._polls: dict[str, int] = {}  # node id -> its polls waiting here

    # -- the owner's side: registering, listing, scopes, revoking ---------------------------------

    async def register(
        self, owner: Owner, name: str, scopes: tuple[str, ...], ttl: float
    ) -> tuple[Node, str]:
        """A new node of ``owner``'s and its token; NodeError 409 for a name in use."""
        return await register_node(
            self._store, self._authority, owner, name, scopes, ttl=ttl, now=self._clock.now()
        )

    async def list(self, owner: Owner) -> list[Node]:
        return await self._store.list_nodes(owner)

    async def get(self, owner: Owner, node_id: str) -> Node:
        """The owner's node, not revoked; NodeError 404 for any other."""
        node = await self._store.get_node(node_id)
        if node is None or node.owner != owner or node.revoked_at is not None:
            raise NodeError(404, f"Node '{node_id}' does not exist.")
        return node

    async def set_scopes(self, owner: Owner, node_id: str, scopes: tuple[str, ...]) -> Node:
        await self.get(owner, node_id)
        node = await self._store.set_node_scopes(node_id, scopes)
        if node is None:
            raise NodeError(404, f"Node '{node_id}' does not exist.")
        await self._signals.scopes_changed(node_id, scopes)
        return node

    async def revoke(self, owner: Owner, node_id: str) -> None:
        await self.get(owner, node_id)
        now = self._clock.now()
        revoked = await self._store.revoke_node(node_id, now)
        if revoked is None:
            raise NodeError(404, f"Node '{node_id}' does not exist.")
        node, was_online = revoked
        await self._signals.revoked(node_id)
        for command in await self._store.release_commands(node_id, None, now, fail_unqueued=True):
            await self._signals.command_finished(command.command_id)
        for command in await self._store.fail_open_commands(node_id, REVOKED, now):
            await self._signals.command_finished(command.command_id)
        if was_online:
            await self._presence.offline(node, now)

    async def is_admitted(self, principal: Principal) -> bool:
        """The token is a node's, and its node is registered to the token's
        user and tenant, and not revoked."""
        node_id = node_id_of(principal)
        if node_id is None:
            return False
        node = await self._store.get_node(node_id)
        return (
            node is not None
            and node.revoked_at is None
            and node.owner == Owner(principal.tenant_id, principal.user_id)
        )

    # -- dispatch ----------------------------------------------------------------------------------

    async def dispatch(
        self,
        owner: Owner,
        node_id: str,
        command: str,
        params: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        queue: bool = False,
    ) -> NodeCommand:
        """Run ``command`` on the owner's node; the finished command (its
        status says how it went). NodeError 404, 403 (scope), 409 (offline)."""
        check_params(params)
        node = await self.get(owner, node_id)
        if command not in node.scopes:
            raise NodeError(403, f"The scope '{command}' is not granted to node '{node.name}'.")
        if node.status != ONLINE and not queue:
            raise NodeError(409, f"Node '{node.name}' is offline.")
        if await self._store.count_open_commands(node_id) >= MAX_OPEN_COMMANDS:
            raise NodeError(
                429, f"Node '{node.name}' has {MAX_OPEN_COMMANDS} commands waiting or running."
            )
        now = self._clock.now()
        pending = NodeCommand(
            command_id="cmd_" + uuid.uuid4().hex,
            node_id=node_id,
            owner=owner,
            command=command,
            params=params,
            status=COMMAND_QUEUED,
            queued=queue,
            timeout_seconds=timeout,
            deadline=now + datetime.timedelta(seconds=timeout),
            created_at=now,
        )
        await self._store.add_command(pending)
        await self._signals.commands_waiting(node_id)
        return await self._outcome(pending)

    async def _outcome(self, pending: NodeCommand) -> NodeCommand:
        command_id = pending.command_id
        while True:
            command = await self._store.get_command(command_id)
            if command is None:  # cannot happen: commands are never deleted
                raise NodeError(500, f"Command '{command_id}' was lost.")
            if not command.is_open:
                return command
            left = (command.deadline - self._clock.now()).total_seconds()
            if left <= 0:
                timed_out = await self._finish(command, COMMAND_TIMED_OUT, error=None)
                if timed_out is not None:
                    return timed_out
                continue  # an outcome came first: read it
            await self._wakeups.wait(("command", command_id), min(left, RECHECK))

    async def history(self, owner: Owner, node_id: str, limit: int) -> list[NodeCommand]:
        await self.get(owner, node_id)
        return await self._store.list_commands(node_id, limit=limit)

    async def _finish(
        self, command: NodeCommand, status: str, *, result: Any = None, error: str | None
    ) -> NodeCommand | None:
        if status == COMMAND_TIMED_OUT:
            error = f"The node did not answer within {command.timeout_seconds:g} seconds."
        if error is not None:
            error = storable_text(error)[:MAX_ERROR]
        finished = await self._store.finish_command(
            command.command_id,
            command.node_id,
            status,
            self._clock.now(),
            result=result,
            error=error,
        )
        if finished is not None:
            await self._signals.command_finished(command.command_id)
        return finished

    # -- the node's side: results, heartbeats, scopes ----------------------------------------------

    async def record_result(self, node_id: str, payload: Any) -> NodeCommand:
        """``{commandId, ok, result?, error?}`` from the node. NodeError 404 for
        a command that is not the node's, 409 for one answered already, 400 for
        a malformed result: the recorded outcome never changes."""
        command_id = payload.get("commandId") if isinstance(payload, dict) else None
        if not isinstance(command_id, str):
            raise NodeError(400, "A result needs a 'commandId'.")
        outcome = read_outcome(payload, mend=False)
        if isinstance(outcome, Invalid):
            raise NodeError(400, f"The result is not valid: {outcome.text}")
        return await self._record(node_id, command_id, outcome)

    async def _record(self, node_id: str, command_id: str, outcome: Outcome) -> NodeCommand:
        command = await self._store.get_command(command_id)
        if command is None or command.node_id != node_id:
            raise NodeError(404, f"Command '{command_id}' is unknown.")
        status = COMMAND_SUCCEEDED if outcome.ok else COMMAND_FAILED
        finished = await self._finish(command, status, result=outcome.result, error=outcome.error)
        if finished is None:
            raise NodeError(409, f"Command '{command_id}' has been answered already.")
        return finished

    async def heard(
        self, node_id: str, transport: str, connection_id: str | None, uptime: float | None
    ) -> Node:
        """The node is alive (connected, or a heartbeat). NodeError 401 if revoked."""
        if uptime is not None:
            uptime = float(uptime)  # an int too large for a database integer is a float too
            if not (math.isfinite(uptime) and uptime >= 0):
                raise NodeError(400, "'uptime' must be a number of seconds, 0 or more.")
        now = self._clock.now()
        until = now + datetime.timedelta(seconds=self.heartbeat_interval * MISSED_HEARTBEATS)
        seen = await self._store.node_heard(
            node_id, Presence(transport, connection_id, now, until, uptime)
        )
        if seen is None:
            raise NodeError(401, REVOKED)
        node, came_online = seen
        if came_online:
            await self._presence.online(node, now)
        return node

    async def scopes_acknowledged(self, node_id: str, scopes: Any) -> None:
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise NodeError(400, "'scopes' must be a list of command names.")
        await self._store.set_node_scopes(node_id, tuple(scopes), acknowledged=True)

    # -- the hub path: links on this process -------------------------------------------------------

    async def connected(self, link: NodeLink) -> None:
        """A node connected to the hub here. Call it last in ``on_connected``:
        its commands are delivered from a task that starts after it."""
        try:
            await self.heard(link.node_id, WEBSOCKETS, link.connection_id, None)
        except NodeError:
            link.close(REVOKED)
            return
        # Commands it was handed by polling and may have lost: again, here.
        now = self._clock.now()
        await self._store.release_commands(link.node_id, POLLED, now, fail_unqueued=False)
        self._links.add(link)

    async def disconnected(self, node_id: str, connection_id: str) -> None:
        self._links.remove(node_id, connection_id)
        now = self._clock.now()
        failed = await self._store.release_commands(node_id, connection_id, now, fail_unqueued=True)
        for command in failed:
            await self._signals.command_finished(command.command_id)
        # Another connection of the node here (it reconnected before the old one
        # closed) carries its presence on; else it is offline.
        successor = self._links.connection_of(node_id)
        offline = await self._store.node_disconnected(node_id, connection_id, successor)
        if offline is not None:
            await self._presence.offline(offline, now)
        # Queued commands it had went back to the queue: a poll may take them now.
        await self._signals.commands_waiting(node_id)

    # -- the polling path -------------------------------------------------------------------------

    async def poll(self, node_id: str, wait: float) -> tuple[list[NodeCommand], tuple[str, ...]]:
        """The node's waiting commands, handed out to it (at once, or when one
        comes within ``wait`` seconds), and its scopes. NodeError 401 if revoked."""
        if self._polls.get(node_id, 0) >= MAX_WAITING_POLLS:
            raise NodeError(429, f"This node has {MAX_WAITING_POLLS} polls waiting already.")
        self._polls[node_id] = self._polls.get(node_id, 0) + 1
        try:
            return await self._poll(node_id, min(max(wait, 0.0), MAX_POLL_WAIT))
        finally:
            self._polls[node_id] -= 1
            if not self._polls[node_id]:
                del self._polls[node_id]

    async def _poll(self, node_id: str, wait: float) -> tuple[list[NodeCommand], tuple[str, ...]]:
        deadline = trio.current_time() + wait
        while True:
            node = await self._store.get_node(node_id)
            if node is None or node.revoked_at is not None:
                raise NodeError(401, REVOKED)
            claimed = await self._store.claim_commands(
                node_id, POLLED, self._clock.now(), limit=CLAIM_LIMIT
            )
            await self._keep_unless_cancelled(claimed)
            left = deadline - trio.current_time()
            if claimed or left <= 0:
                return claimed, node.scopes
            await self._wakeups.wait(("node", node_id), min(left, RECHECK))

    async def _keep_unless_cancelled(self, claimed: list[NodeCommand]) -> None:
        """A claim runs to its end in its thread even when the poll is cancelled
        meanwhile (its client went away): then the commands go back, undelivered."""
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            if claimed:
                with trio.CancelScope(shield=True):
                    await self._store.unclaim_commands([c.command_id for c in claimed], POLLED)
                await self._signals.commands_waiting(claimed[0].node_id)
            raise

    # -- what other processes (and this one) say: ``signals.SignalHandler`` -----------------------

    def commands_waiting(self, node_id: str) -> None:
        self._links.wake(node_id)
        self._wakeups.wake(("node", node_id))

    def command_finished(self, command_id: str) -> None:
        self._wakeups.wake(("command", command_id))

    def scopes_changed(self, node_id: str, scopes: tuple[str, ...]) -> None:
        self._links.refresh_scopes(node_id, scopes)

    def revoked(self, node_id: str) -> None:
        self._links.revoke(node_id)
        self._wakeups.wake(("node", node_id))

    def statistics(self) -> dict[str, int]:
        """For ``GET /stats``: this process's node connections and waiting polls."""
        return {**self._links.statistics(), "polls_waiting": sum(self._polls.values())}

    # -- the service: signals, and the sweep ------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen to the other processes, and sweep every half heartbeat
        interval: nodes whose presence lapsed go offline, commands past their
        deadline time out, links look for commands a lost signal did not announce."""
        async with trio.open_nursery() as nursery:
            self._links.attach(nursery)
            await self._signals.listen(self)
            task_status.started()
            while True:
                await trio.sleep(self.heartbeat_interval / 2)
                with error_boundary(log, "the node sweep"):
                    await self.sweep()

    async def sweep(self) -> None:
        now = self._clock.now()
        for node in await self._store.expire_presence(now):
            failed = await self._store.release_commands(node.node_id, None, now, fail_unqueued=True)
            for command in failed:
                await self._signals.command_finished(command.command_id)
            await self._presence.offline(node, now)
        for command in await self._store.expire_commands(now):
            await self._signals.command_finished(command.command_id)
        self._links.wake()
